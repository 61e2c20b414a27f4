"""The worker in-process with the shipped models: permanent failures, retries, exhausted retries."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest
from node_helpers import NODE_AE, free_port, make_copy

from thoracic.node.config import CStoreDestination, NodeConfig
from thoracic.node.queue import JobQueue, job_key
from thoracic.node.worker import Worker


@pytest.fixture
def setup(tmp_path, analyzer):
    down = CStoreDestination("DOWN", "127.0.0.1", free_port())  # nothing listens there
    config = NodeConfig(spool=tmp_path / "spool", destinations=(down,), ae_title=NODE_AE, max_attempts=2,
                        backoff=0.0, max_backoff=0.0)
    queue = JobQueue(config.spool, 10)
    yield config, queue, Worker(config, queue, analyzer)
    queue.close()


def _add(queue, path, models):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return queue.add(job_key(ds.SOPInstanceUID, models), path.read_bytes(), sop_instance_uid=ds.SOPInstanceUID,
                     sop_class_uid=ds.SOPClassUID, calling_ae="MODALITY").job_id


def test_images_that_cannot_be_analyzed_fail_at_once(setup, tmp_path, radiographs, analyzer, caplog):
    config, queue, worker = setup
    models = [m.sha256 for m in analyzer.models]
    lateral = make_copy(radiographs[1], tmp_path / "lateral.dcm", ViewPosition="LL")
    data = radiographs[1].read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(make_copy(radiographs[1], tmp_path / "t.dcm").read_bytes()[: len(data) // 2])
    ids = [_add(queue, lateral, models), _add(queue, truncated, models)]
    with caplog.at_level(logging.INFO, logger="thoracic"):
        for _ in ids:
            worker.process(queue.claim())
    jobs = [queue.get(i) for i in ids]
    assert [j.state for j in jobs] == ["failed", "failed"]
    assert jobs[0].error.startswith("NotChestRadiographError") and "lateral" in jobs[0].error
    assert jobs[1].error.startswith("CorruptFileError")
    assert all(j.input_path.exists() and not j.results_dir.exists() for j in jobs)  # kept for a look
    said = [r.getMessage() for r in caplog.records]
    assert sum("refused, not a frontal chest radiograph" in m for m in said) == 1  # no SR for it: logged, counted
    assert sum("the image cannot be analyzed" in m for m in said) == 1
    assert queue.claim() is None  # nothing retried


# pynetdicom 3.0.4 leaves the socket of a refused TCP connection open (a ResourceWarning at exit)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_destination_down_is_retried_then_the_job_fails_with_its_results_kept(setup, tmp_path, radiographs, analyzer):
    config, queue, worker = setup
    image = make_copy(radiographs[0], tmp_path / "cr.dcm")
    job_id = _add(queue, image, [m.sha256 for m in analyzer.models])
    worker.process(queue.claim())  # analyzed, saved, first send fails
    job = queue.get(job_id)
    assert (job.state, job.attempts) == ("sending", 1) and job.error.startswith("sending to cstore:DOWN")
    assert sorted(o["kind"] for o in job.outputs) == ["gsps", "seg", "sr"]
    saved = sorted(p.name for p in job.results_dir.iterdir())
    assert saved == sorted(o["file"] for o in job.outputs)
    again = queue.claim()
    assert (again.id, again.state, again.attempts) == (job_id, "sending", 2)
    worker.process(again)  # the second (last) attempt fails: the job fails, nothing analyzed again
    job = queue.get(job_id)
    assert job.state == "failed" and sorted(p.name for p in job.results_dir.iterdir()) == saved
    # the operator sends the image again: the saved results are sent, not new ones
    retried = _add(queue, image, [m.sha256 for m in analyzer.models])
    assert retried == job_id and queue.get(job_id).state == "sending"
    assert queue.get(job_id).outputs == job.outputs


def test_an_image_refused_by_its_pixels_gets_no_sr_and_is_logged_and_counted(setup, tmp_path, analyzer, caplog):
    """A header that says CR chest PA over pixels that are not a chest film: refused by the pixel check."""
    from helpers import dicom_dataset
    from pydicom.uid import generate_uid

    _, queue, worker = setup
    yy, xx = np.mgrid[0:512, 0:512]
    board = (((yy // 64) + (xx // 64)) % 2 * 255).astype(np.uint8)
    path = tmp_path / "board.dcm"
    dicom_dataset(board, uids=(generate_uid(), generate_uid(), generate_uid())).save_as(path, enforce_file_format=True)
    job_id = _add(queue, path, [m.sha256 for m in analyzer.models])
    with caplog.at_level(logging.INFO, logger="thoracic"):
        worker.process(queue.claim())
    job = queue.get(job_id)
    assert job.state == "failed" and job.error.startswith("NotChestRadiographError") and "pixels" in job.error
    assert job.outputs == () and not job.results_dir.exists()  # no SR, GSPS or SEG
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("refused, not a frontal chest radiograph" in m for m in said) == 1
    assert not any("allow-non-chest" in m or "allow_non_chest" in m for m in said)  # the node has no override
    assert "allow" not in job.error
    assert queue.counts()["failed"] == 1 and queue.claim() is None  # counted, never retried
