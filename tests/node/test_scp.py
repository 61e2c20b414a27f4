"""The C-STORE SCP in-process (no models), with dcmtk's storescu/echoscu as the modality."""

from __future__ import annotations

import logging
import shutil
import subprocess

import pydicom
import pytest
from node_helpers import MODALITY_AE, NODE_AE, make_copy, store_responses
from pydicom.uid import CTImageStorage

from thoracic.errors import ConfigError
from thoracic.node.config import CStoreDestination, NodeConfig, StowRsDestination
from thoracic.node.queue import job_key

MODELS = ("0" * 64,)


@pytest.fixture
def images(tmp_path, radiographs):
    return [make_copy(src, tmp_path / "send" / f"{i}.dcm") for i, src in enumerate(radiographs)]


def _ct(tmp_path, src):
    path = make_copy(src, tmp_path / "ct.dcm", Modality="CT", SOPClassUID=CTImageStorage)
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.save_as(path, enforce_file_format=True)
    return path


def _statuses(runs) -> list[str]:
    """storescu's "Received Store Response (...)" lines, in order."""
    return [status for run in runs for status in store_responses(run.stderr)]


def _uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_radiographs_are_spooled_before_success(scp, storescu, images):
    config, queue = scp()
    runs = storescu(config.port, images)
    assert _statuses(runs) == ["Success"] * len(images), [r.stderr for r in runs]
    assert all(r.returncode == 0 for r in runs)
    jobs = queue.jobs()
    assert [j.state for j in jobs] == ["received"] * len(images)
    got = {_uid(j.input_path): j for j in jobs}
    assert set(got) == {_uid(p) for p in images}
    for path in images:  # the spooled file is the sent data set, with its own transfer syntax
        job = got[_uid(path)]
        assert job.key == job_key(_uid(path), MODELS)
        sent, spooled = pydicom.dcmread(path), pydicom.dcmread(job.input_path)
        assert spooled.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert spooled.PixelData == sent.PixelData and spooled.PatientName == sent.PatientName
        assert job.calling_ae == MODALITY_AE


def test_the_same_image_twice_is_queued_once(scp, storescu, images, radiographs):
    config, queue = scp()
    storescu(config.port, images[:2])
    runs = storescu(config.port, images[:2])
    assert _statuses(runs) == ["Success", "Success"]
    assert len(queue.jobs()) == 2
    # two of the repo's files carry the same SOP Instance UID: one instance for DICOM, one job
    siim, fake = radiographs[0], radiographs[4]
    assert _uid(siim) == _uid(fake)
    assert _statuses(storescu(config.port, [siim, fake])) == ["Success", "Success"]
    assert len(queue.jobs()) == 3


def test_non_radiographs_are_refused_and_the_node_keeps_running(scp, storescu, images, tmp_path, radiographs, caplog):
    caplog.set_level(logging.INFO, logger="thoracic")
    config, queue = scp()
    ct = _ct(tmp_path, radiographs[1])
    screenshot = make_copy(radiographs[1], tmp_path / "ot.dcm", Modality="OT")  # Secondary Capture, not CR/DX
    runs = storescu(config.port, [ct, screenshot, images[1]])
    assert _statuses(runs) == ["Refused: SOPClassNotSupported", "Refused: SOPClassNotSupported", "Success"], \
        [r.stderr for r in runs]
    assert [_uid(j.input_path) for j in queue.jobs()] == [_uid(images[1])]
    refusals = [r.getMessage() for r in caplog.records if "refused C-STORE" in r.getMessage()]
    assert any("CT Image Storage is not a projection radiograph" in m for m in refusals), refusals
    assert any("Secondary Capture image of modality 'OT'" in m for m in refusals), refusals
    assert _statuses(storescu(config.port, [images[0]])) == ["Success"]  # still serving


def test_secondary_capture_can_be_refused(scp, storescu, images):
    config, queue = scp(accept_secondary_capture=False)
    sc, cr = images[1], images[2]  # nih_dx_implicit_le is a DX Secondary Capture, RG1 a CR
    assert pydicom.dcmread(sc, stop_before_pixels=True).SOPClassUID.name == "Secondary Capture Image Storage"
    assert _statuses(storescu(config.port, [sc, cr])) == ["Refused: SOPClassNotSupported", "Success"]


def test_allowlist_of_calling_ae_titles(scp, storescu, images, caplog):
    caplog.set_level(logging.INFO, logger="thoracic")
    config, queue = scp(allow_ae=(MODALITY_AE, "OTHER"))
    [refused] = storescu(config.port, images[:1], aet="INTRUDER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    assert queue.jobs() == []
    assert any("'INTRUDER'" in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records)
    [wrong_called] = storescu(config.port, images[:1], aec="NOT-US")
    assert "Called AE Title Not Recognized" in wrong_called.stderr and queue.jobs() == []
    assert _statuses(storescu(config.port, images[:1])) == ["Success"]
    assert _statuses(storescu(config.port, images[1:2], aet="OTHER")) == ["Success"]
    assert len(queue.jobs()) == 2


def test_a_full_queue_answers_out_of_resources_and_keeps_what_it_accepted(scp, storescu, tmp_path, radiographs, caplog):
    caplog.set_level(logging.INFO, logger="thoracic")
    config, queue = scp(queue_size=2)
    same_syntax = [make_copy(radiographs[1], tmp_path / "dx" / f"{i}.dcm") for i in range(4)]
    runs = storescu(config.port, same_syntax)
    assert _statuses(runs) == ["Success", "Success", "Refused: OutOfResources", "Refused: OutOfResources"], \
        [r.stderr for r in runs]
    jobs = queue.jobs()
    assert [_uid(j.input_path) for j in jobs] == [_uid(p) for p in same_syntax[:2]]
    assert sorted(p.name for p in (config.spool / "in").iterdir()) == sorted(j.input_path.name for j in jobs)
    assert any("queue full (2 pending of 2)" in r.getMessage() and "0xA700" in r.getMessage() for r in caplog.records)
    job = queue.claim()  # one job finishes: room for one more
    queue.to_sending(job.id, [])
    queue.done(job.id)
    assert _statuses(storescu(config.port, same_syntax[2:])) == ["Success", "Refused: OutOfResources"]


def test_echo(scp):
    echoscu = shutil.which("echoscu")
    if echoscu is None:
        pytest.skip("dcmtk is not installed")
    config, _ = scp(allow_ae=(MODALITY_AE,))
    ok = subprocess.run([echoscu, "-aet", MODALITY_AE, "-aec", NODE_AE, "127.0.0.1", str(config.port)],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(ae_title="A" * 17), "not a valid AE title"),
        (dict(ae_title="BAD\\AE"), "not a valid AE title"),
        (dict(allow_ae=("",)), "allowed AE title"),
        (dict(destinations=()), "no destination"),
        (dict(queue_size=0), "queue size"),
        (dict(port=70000), "TCP port"),
        (dict(destinations=(StowRsDestination("http://x/dw"), StowRsDestination("http://x/dw/"))), "twice"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path, kwargs, match):
    settings = dict(spool=tmp_path, destinations=(CStoreDestination("PACS", "127.0.0.1", 4242),))
    settings.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        NodeConfig(**settings)


def test_stowrs_names_carry_no_credentials():
    dest = StowRsDestination("https://user:secret@pacs.example/dicom-web/", token=None)
    assert dest.name == "stowrs:https://pacs.example/dicom-web"
    assert "tok" not in repr(StowRsDestination("https://pacs.example/dw", token="tok"))
    with pytest.raises(ConfigError, match="http"):
        StowRsDestination("ftp://pacs")
