"""The node's persistent queue, without any network."""

from __future__ import annotations

import os
import stat

import pytest

from thoracic.node.queue import STATES, JobQueue, job_key

MODELS = ("a" * 64, "b" * 64)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def add(q: JobQueue, uid: str, data: bytes = b"DICM-ish", models=MODELS):
    return q.add(job_key(uid, models), data, sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
                 calling_ae="MODALITY")


def test_job_key_is_the_uid_and_the_model_hashes():
    assert job_key("1.2.3", MODELS) == job_key(" 1.2.3 ", MODELS[::-1])
    assert job_key("1.2.3", MODELS) != job_key("1.2.4", MODELS)
    assert job_key("1.2.3", MODELS) != job_key("1.2.3", (MODELS[0], "c" * 64))  # new models: new job
    assert len(job_key("1.2.3", MODELS)) == 64


def test_a_received_image_is_on_disk_and_survives_a_reopen(tmp_path):
    with JobQueue(tmp_path, 4) as q:
        r = add(q, "1.2.3", b"pixels")
        assert r.outcome == "queued" and r.job_id == 1 and r.pending == 1
        job = q.jobs()[0]
        assert job.input_path.read_bytes() == b"pixels"
        assert stat.S_IMODE(os.stat(job.input_path).st_mode) == 0o600  # patient data: owner only
        assert stat.S_IMODE(os.stat(tmp_path / "in").st_mode) == 0o700
    with JobQueue(tmp_path, 4) as q:  # a restart
        assert q.counts() == {"received": 1, "analyzing": 0, "sending": 0, "done": 0, "failed": 0}
        assert q.claim().input_path.read_bytes() == b"pixels"


def test_one_process_per_spool(tmp_path):
    with JobQueue(tmp_path, 4):
        with pytest.raises(RuntimeError, match="in use by another process"):
            JobQueue(tmp_path, 4)
    JobQueue(tmp_path, 4).close()  # free again once closed


def test_the_queue_is_bounded_by_pending_jobs(tmp_path):
    with JobQueue(tmp_path, 2) as q:
        assert add(q, "1.1").outcome == "queued"
        assert add(q, "1.2").outcome == "queued"
        full = add(q, "1.3")
        assert full.outcome == "full" and full.pending == 2
        assert not q.input_path(job_key("1.3", MODELS)).exists()  # nothing written for a refused image
        job = q.claim()
        q.to_sending(job.id, [])
        q.done(job.id)
        assert add(q, "1.3").outcome == "queued"  # a finished job frees a place
        assert q.pending() == 2


def test_the_same_image_is_queued_once(tmp_path):
    with JobQueue(tmp_path, 4) as q:
        first = add(q, "1.2.3")
        again = add(q, "1.2.3")
        assert again.outcome == "duplicate" and again.job_id == first.job_id and again.state == "received"
        job = q.claim()
        q.to_sending(job.id, [{"kind": "sr", "sop_instance_uid": "9.9"}])
        q.done(job.id)
        assert add(q, "1.2.3").outcome == "duplicate"  # done: not analyzed twice
        other_models = add(q, "1.2.3", models=("c" * 64,))
        assert other_models.outcome == "queued"  # new models analyze it again
        assert len(q.jobs()) == 2


def test_a_failed_job_is_queued_again_when_the_image_is_sent_again(tmp_path):
    with JobQueue(tmp_path, 4) as q:
        add(q, "1.2.3", b"old")
        job = q.claim()
        q.fail(job.id, "NotChestRadiographError: ...")
        assert q.counts()["failed"] == 1 and q.pending() == 0
        again = add(q, "1.2.3", b"new")
        assert again.outcome == "queued" and again.job_id == job.id
        retried = q.claim()
        assert (retried.state, retried.attempts, retried.error) == ("analyzing", 1, "")
        assert retried.input_path.read_bytes() == b"new"


def test_state_machine_and_retries(tmp_path):
    clock = Clock()
    with JobQueue(tmp_path, 4, clock=clock) as q:
        add(q, "1.1")
        add(q, "1.2")
        job = q.claim()
        assert (job.id, job.state, job.attempts) == (1, "analyzing", 1)
        assert q.claim().id == 2  # a claimed job is not handed out twice
        assert q.claim() is None
        q.retry(1, "OSError: disk", 30)  # back to received, later
        assert q.get(1).state == "received" and q.get(1).error == "OSError: disk"
        assert q.claim() is None
        assert q.next_ready_in() == pytest.approx(30)
        clock.now += 30
        job = q.claim()
        assert (job.id, job.attempts) == (1, 2)
        q.to_sending(1, [{"kind": "sr", "file": "x.dcm"}])
        q.release(1)
        job = q.claim()  # sending jobs go first; attempts count the sending tries now
        assert (job.id, job.state, job.attempts, job.outputs) == (1, "sending", 1, ({"kind": "sr", "file": "x.dcm"},))
        q.mark_sent(1, "cstore:PACS@h:1")
        q.mark_sent(1, "cstore:PACS@h:1")
        assert q.get(1).sent == ("cstore:PACS@h:1",)
        q.done(1)
        assert q.counts() == {"received": 0, "analyzing": 1, "sending": 0, "done": 1, "failed": 0}
        assert set(q.counts()) == set(STATES)


def test_recover_after_a_crash(tmp_path):
    q = JobQueue(tmp_path, 8)
    for uid in ("1.1", "1.2", "1.3"):
        add(q, uid)
    a, b, c = q.claim(), q.claim(), q.claim()
    q.to_sending(b.id, [{"kind": "sr", "file": "x.dcm"}])
    b.results_dir.mkdir()
    (b.results_dir / "x.dcm").write_bytes(b"result")
    q.to_sending(c.id, [])
    q.done(c.id)
    (tmp_path / "in" / "orphan.dcm").write_bytes(b"never answered")  # written, C-STORE never answered
    (tmp_path / "in" / ".x.dcm.1.2.tmp").write_bytes(b"half written")
    # a crash: the process dies without closing anything
    q._lockfile.close()
    q2 = JobQueue(tmp_path, 8)
    assert q2.recover() == 1  # the job being analyzed goes back to received
    assert q2.get(a.id).state == "received"
    assert q2.get(b.id).state == "sending" and (b.results_dir / "x.dcm").read_bytes() == b"result"
    assert q2.get(c.id).state == "done" and not c.input_path.exists()  # done jobs leave no files
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == sorted([a.input_path.name, b.input_path.name])
    claimed = {q2.claim().id, q2.claim().id}
    assert claimed == {a.id, b.id}
    q2.close()
    q._db.close()


def test_reanalyze_when_results_are_gone(tmp_path):
    with JobQueue(tmp_path, 4) as q:
        add(q, "1.1")
        job = q.claim()
        q.to_sending(job.id, [{"kind": "sr", "file": "x.dcm"}])
        q.mark_sent(job.id, "stowrs:http://x")
        q.reanalyze(job.id, "result files missing")
        job = q.get(job.id)
        assert (job.state, job.sent, job.outputs) == ("received", (), ())
