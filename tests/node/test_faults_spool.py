"""Faults of the spool's database without the network: damaged, missing, locked by a real
``sqlite3`` process, refusing writes; the repair command; the worker surviving a database that
refuses writes. The node-level faults (a PACS down, slow or refusing, a full disk, SIGTERM) are in
``test_faults.py``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
import pytest
from helpers import require_tool
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from thoracic.node.queue import (
    DATABASE,
    JobQueue,
    SpoolDamagedError,
    SpoolInUseError,
    SpoolIOError,
    SpoolLockedError,
    job_key,
)
from thoracic.node.spool import read_status, repair_spool

MODELS = ("a" * 64,)
_KIND_CLASS = {"sr": ("SR", "1.2.840.10008.5.1.4.1.1.88.34"), "gsps": ("PR", "1.2.840.10008.5.1.4.1.1.11.1"),
               "seg": ("SEG", "1.2.840.10008.5.1.4.1.1.66.4")}


def _dicom(path: Path, modality: str, sop_class: str) -> Path:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, generate_uid(), modality
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _add(q: JobQueue, tmp: Path, name: str) -> tuple[str, str]:
    """Queue a (tiny, real DICOM) image; returns its key and SOP Instance UID."""
    image = _dicom(tmp / "src" / f"{name}.dcm", "CR", "1.2.840.10008.5.1.4.1.1.1")
    uid = str(pydicom.dcmread(image).SOPInstanceUID)
    key = job_key(uid, MODELS)
    assert q.add(key, image.read_bytes(), sop_instance_uid=uid, sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
                 calling_ae="CR1").outcome == "queued"
    return key, uid


def _save_results(q: JobQueue, key: str) -> list[dict[str, str]]:
    """What the worker saves for a job: SR, GSPS and SEG files named by their UIDs."""
    outputs = []
    for kind, (modality, sop_class) in _KIND_CLASS.items():
        tmp = _dicom(q.results_dir(key) / "x.dcm", modality, sop_class)
        uid = str(pydicom.dcmread(tmp).SOPInstanceUID)
        tmp.rename(tmp.with_name(f"{uid}.dcm"))
        outputs.append({"kind": kind, "file": f"{uid}.dcm", "sop_class_uid": sop_class, "sop_instance_uid": uid})
    return outputs


@pytest.fixture
def spool_with_jobs(tmp_path):
    """A spool left by a stopped node: one job received, one sending (results saved), one done
    (files deleted, as the worker does), one failed (its image kept)."""
    spool = tmp_path / "spool"
    with JobQueue(spool, 10) as q:
        received, _ = _add(q, tmp_path, "received")
        sending, _ = _add(q, tmp_path, "sending")
        done, _ = _add(q, tmp_path, "done")
        failed, _ = _add(q, tmp_path, "failed")
        jobs = {}
        while (job := q.claim()) is not None:
            jobs[job.key] = job
        q.release(jobs[received].id)
        outputs = _save_results(q, sending)
        q.to_sending(jobs[sending].id, outputs)
        q.retry(jobs[sending].id, "sending to cstore:PACS@127.0.0.1:104: SendError: ...", 0)
        q.to_sending(jobs[done].id, _save_results(q, done))
        q.done(jobs[done].id)
        q.input_path(done).unlink()
        shutil.rmtree(q.results_dir(done))
        q.fail(jobs[failed].id, "NotChestRadiographError: lateral view")
    return spool, {"received": received, "sending": sending, "done": done, "failed": failed, "outputs": outputs}


def _damage_header(spool: Path) -> bytes:
    path = spool / DATABASE
    data = bytearray(path.read_bytes())
    data[:100] = b"\xa5" * 100  # SQLite's header: "file is not a database"
    path.write_bytes(bytes(data))
    return bytes(data)


def _tree(spool: Path) -> dict[str, bytes]:
    return {str(p.relative_to(spool)): p.read_bytes() for p in sorted(spool.rglob("*")) if p.is_file()
            and p.name != ".lock"}


def test_a_damaged_database_stops_the_queue_and_changes_nothing(spool_with_jobs):
    spool, _ = spool_with_jobs
    _damage_header(spool)
    before = _tree(spool)
    with pytest.raises(SpoolDamagedError) as err:
        JobQueue(spool, 10)
    message = str(err.value)
    assert "the queue database is damaged (file is not a database)" in message
    assert f"thoracic dicom-node --spool {spool} --repair-spool" in message and "never deleted" in message
    assert _tree(spool) == before  # not reset, no file removed
    with pytest.raises(SpoolDamagedError, match="--repair-spool"):
        read_status(spool)  # --status says so too
    assert _tree(spool) == before


def test_a_database_that_fails_sqlites_check_is_refused_and_its_rows_are_salvaged(tmp_path):
    spool = tmp_path / "spool"
    with JobQueue(spool, 500) as q:
        for i in range(200):  # enough rows for several pages
            _add(q, tmp_path, f"{i}")
            job = q.claim()
            q.to_sending(job.id, [{"kind": "sr", "file": "x.dcm", "sop_instance_uid": "9" * 60}])
            q.done(job.id)
    path = spool / DATABASE
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # one page near the end overwritten (an index page here)
        fh.seek(size - 3 * 4096)
        fh.write(bytes(range(256)) * 16)
    with pytest.raises(SpoolDamagedError, match=r"damaged \(SQLite's check: .*repair-spool"):
        JobQueue(spool, 500)
    report = repair_spool(spool)
    assert (report.salvaged, report.rebuilt_received, report.rebuilt_sending) == (200, 0, 0)
    assert report.counts["done"] == 200  # the done history is kept: a resent image is not analyzed again
    with JobQueue(spool, 500) as q:
        assert q.counts()["done"] == 200


def test_a_missing_database_beside_spooled_images_is_not_a_fresh_start(spool_with_jobs):
    spool, _ = spool_with_jobs
    (spool / DATABASE).unlink()
    before = _tree(spool)
    with pytest.raises(SpoolDamagedError, match=r"missing, but the spool holds 3 received image\(s\) and 1 result"):
        JobQueue(spool, 10)
    assert _tree(spool) == before and not (spool / DATABASE).exists()  # no empty database left behind
    report = repair_spool(spool)
    assert report.moved_to is None and report.salvaged == 0
    assert (report.rebuilt_sending, report.rebuilt_received) == (1, 2)


def test_the_repair_moves_the_database_aside_and_rebuilds_every_pending_job(spool_with_jobs, tmp_path):
    spool, keys = spool_with_jobs
    damaged = _damage_header(spool)
    report = repair_spool(spool)
    assert not report.healthy and report.salvaged == 0  # the header is gone: nothing readable
    assert report.moved_to is not None and report.moved_to.parent == spool
    assert (report.moved_to / DATABASE).read_bytes() == damaged  # kept as it was
    assert (report.rebuilt_sending, report.rebuilt_received, report.set_aside) == (1, 2, ())
    with JobQueue(spool, 10) as q:
        jobs = {j.key: j for j in q.jobs()}
        assert set(jobs) == {keys["received"], keys["sending"], keys["failed"]}  # the done job's record is lost
        sending = jobs[keys["sending"]]
        assert sending.state == "sending" and sending.sent == ()  # sent again: the same files, the same UIDs
        assert sorted(sending.outputs, key=lambda o: o["kind"]) == sorted(keys["outputs"], key=lambda o: o["kind"])
        assert jobs[keys["received"]].state == "received" and jobs[keys["failed"]].state == "received"
        assert q.recover() == 0
        assert all(j.input_path.exists() for j in jobs.values())  # recovery keeps every rebuilt job's files
        assert sending.results_dir.is_dir()
    assert repair_spool(spool).healthy  # a sound database is left alone


def test_unreadable_spooled_files_are_set_aside_not_deleted(spool_with_jobs):
    spool, keys = spool_with_jobs
    (spool / "in" / f"{keys['received']}.dcm").write_bytes(b"not dicom")
    (spool / DATABASE).unlink()
    report = repair_spool(spool)
    assert report.set_aside == (f"in/{keys['received']}.dcm",)
    assert (report.moved_to / f"in-{keys['received']}.dcm").read_bytes() == b"not dicom"
    assert report.rebuilt_received == 1  # the failed job's image


def test_the_repair_refuses_while_a_node_holds_the_spool(spool_with_jobs):
    spool, _ = spool_with_jobs
    with JobQueue(spool, 10), pytest.raises(SpoolInUseError):
        repair_spool(spool)


class _Sqlite3Shell:
    """A real ``sqlite3`` process holding a write transaction open on the queue database."""

    def __init__(self, path: Path):
        exe = require_tool("sqlite3", "sqlite3")
        self.proc = subprocess.Popen([exe, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("BEGIN IMMEDIATE; UPDATE jobs SET error = error; SELECT 'holding';\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "holding"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("ROLLBACK;\n.quit\n")
        self.proc.stdin.close()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_a_locked_database_is_a_clear_error_at_start(spool_with_jobs):
    spool, _ = spool_with_jobs
    shell = _Sqlite3Shell(spool / DATABASE)
    try:
        start = time.monotonic()
        with pytest.raises(SpoolLockedError) as err:
            JobQueue(spool, 10, lock_timeout=0.5)
        assert time.monotonic() - start < 5
        assert f"fuser -v {spool / DATABASE}" in str(err.value) and "nothing in the spool was changed" in str(err.value)
        assert read_status(spool).counts["sending"] == 1  # --status still reads it
        with pytest.raises(SpoolLockedError):
            repair_spool(spool)  # nor is a locked database moved aside
    finally:
        shell.close()
    JobQueue(spool, 10).close()  # free once the other process ends


def test_a_refused_write_keeps_nothing_of_the_image_and_the_next_one_goes_through(spool_with_jobs, tmp_path):
    spool, _ = spool_with_jobs
    with JobQueue(spool, 10, write_timeout=0.2) as q:
        shell = _Sqlite3Shell(spool / DATABASE)
        try:
            image = _dicom(tmp_path / "late.dcm", "CR", "1.2.840.10008.5.1.4.1.1.1")
            key = job_key("1.2.3.4.5", MODELS)
            with pytest.raises(SpoolIOError, match="locked by another process"):
                q.add(key, image.read_bytes(), sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2", calling_ae="CR1")
            assert not q.input_path(key).exists()  # no orphan spooled image
        finally:
            shell.close()
        assert q.add(key, image.read_bytes(), sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2",
                     calling_ae="CR1").outcome == "queued"


def test_the_status_command_names_retries_and_failures_without_patient_data(spool_with_jobs):
    spool, keys = spool_with_jobs
    out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(spool), "--status"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:6] == ["received\t1", "analyzing\t0", "sending\t1", "done\t1", "failed\t1", "node\tnot running"]
    retrying = lines[lines.index("retrying:") + 1]
    assert retrying.startswith(f"  job 2 [{keys['sending'][:10]}]\tsending\tattempts 1\tnext try now\tsending to")
    failed = lines[lines.index("failed:") + 1]
    assert failed.endswith("\tsend the image again to retry\tNotChestRadiographError: lateral view")
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in (spool / "in").iterdir()]
    assert len(uids) == 3 and not any(uid in out.stdout for uid in uids)


@pytest.mark.parametrize("fault", ["locked", "full"])
def test_the_worker_outlives_a_database_that_refuses_writes(tmp_path, analyzer, radiographs, fault, caplog):
    """The job in hand keeps its committed state, the worker thread lives on, and the job completes
    once the database takes writes again."""
    import logging

    from node_helpers import NODE_AE, make_copy

    from thoracic.node.config import NodeConfig, StowRsDestination
    from thoracic.node.worker import Worker

    config = NodeConfig(spool=tmp_path / "spool", destinations=(StowRsDestination("http://127.0.0.1:9/dw"),),
                        ae_title=NODE_AE, backoff=0.05, max_backoff=0.2, max_attempts=50)
    image = make_copy(radiographs[1], tmp_path / "cr.dcm")
    uid = str(pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID)
    models = [m.sha256 for m in analyzer.models]
    q = JobQueue(config.spool, 10, write_timeout=0.1)
    q.add(job_key(uid, models), image.read_bytes(), sop_instance_uid=uid, sop_class_uid="1.2", calling_ae="CR1")
    refuse = threading.Event()
    original_to_sending = q.to_sending
    shell: list[_Sqlite3Shell] = []

    def to_sending(job_id, outputs):  # the database starts refusing right when the results are recorded
        if fault == "locked":
            shell.append(_Sqlite3Shell(config.spool / DATABASE))
        refuse.set()
        if fault == "full":
            raise SpoolIOError("the queue database refused the operation (database or disk is full)")
        return original_to_sending(job_id, outputs)

    q.to_sending = to_sending  # type: ignore[method-assign]
    worker = Worker(config, q, analyzer)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="thoracic"):
        thread.start()
        try:
            assert refuse.wait(60)
            time.sleep(0.5)  # a few failed writes
            assert thread.is_alive()
            q.to_sending = original_to_sending  # type: ignore[method-assign]
            for s in shell:
                s.close()
            deadline = time.monotonic() + 60
            while q.jobs()[0].state != "sending" and time.monotonic() < deadline:  # analyzed again, then recorded
                time.sleep(0.05)
        finally:
            worker.stopping.set()
            q.changed.set()
            thread.join(60)
    job = q.jobs()[0]
    assert job.state == "sending" and len(job.outputs) == 3  # sending to the dead destination now
    said = [r.getMessage() for r in caplog.records]
    assert any("nothing committed is lost, trying again in" in m for m in said)
    assert any("the queue takes writes again" in m for m in said)
    q.close()
