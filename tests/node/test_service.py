"""The node as a real subprocess: storescu -> node -> Orthanc (C-STORE and STOW-RS), PHI-free logs,
and kill -9 in the middle of its work."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from node_helpers import MODALITY_AE, NodeProcess, free_port, make_copy, queue_counts, wait_until

#: Distinctive identifying values put into the headers of the images sent to the node.
PHI = {
    "PatientName": "Quixotic^Zebediah^Marmaduke",
    "PatientID": "PID-99518243",
    "PatientBirthDate": "19230417",
    "AccessionNumber": "ACC-77123459",
}
INVALID_PHI = {
    "PatientName": "Quixotic^Zebediah^" + "Marmaduke" * 8,  # a component over 64 characters
    "PatientID": "PID-99518243" * 6,  # over 64 characters
    "PatientBirthDate": "1923/04/17",  # not YYYYMMDD
    "AccessionNumber": "ACC-77123459" * 2,  # over 16 characters
}
#: Values that make building the DICOM results fail (the error messages quote them).
BROKEN_PHI = {**PHI, "PatientSex": "zebediah", "PatientBirthDate": "19231317"}
#: How each value may also appear in a log (DICOM's ^ separators turned into spaces, dates formatted).
PHI_FORMS = [*PHI.values(), "Quixotic", "Zebediah", "Marmaduke", "99518243", "77123459", "1923-04-17", "1923/04/17"]


class _Header:
    """The UIDs and patient id of a file we built (read without pydicom's warnings on invalid values)."""

    def __init__(self, path: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            self.SOPInstanceUID = str(ds.SOPInstanceUID)
            self.StudyInstanceUID = str(ds.StudyInstanceUID)
            self.PatientID = str(ds.PatientID)


_header = _Header


def _done_records(spool: Path) -> list[dict]:
    db = sqlite3.connect(f"file:{spool / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT sop_instance_uid, state, outputs, sent FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()
    return [{"source": r[0], "state": r[1], "outputs": json.loads(r[2]), "sent": json.loads(r[3])} for r in rows]


def _results_by_study(instances: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for tags in instances:
        if tags.get("Modality") in ("SR", "PR", "SEG"):
            out.setdefault(tags["StudyInstanceUID"], Counter())[tags["Modality"]] += 1
    return out


@pytest.fixture(scope="module")
def delivered(tmp_path_factory, orthanc_factory, storescu, radiographs):
    """One node run: 4 PHI-laden radiographs in, results out to one Orthanc by C-STORE and to another
    by STOW-RS, at DEBUG log level. Returns what the tests look at."""
    root = tmp_path_factory.mktemp("delivered")
    pacs = orthanc_factory("pacs")
    web = orthanc_factory("web")
    images = [make_copy(src, root / "send" / f"{i}.dcm", **PHI) for i, src in enumerate(radiographs)]
    # and one whose values are invalid for their VRs: pydicom quotes such values in its warnings
    images.append(make_copy(radiographs[1], root / "send" / "invalid.dcm", **INVALID_PHI))
    broken = make_copy(radiographs[0], root / "send" / "broken.dcm", **BROKEN_PHI)
    node = NodeProcess(root / "spool", root / "node.log", [
        "--log-level", "DEBUG", "--allow-ae", MODALITY_AE, "--workers", "2",
        "--dest-ae", pacs.aet, "--dest-host", "127.0.0.1", "--dest-port", str(pacs.dicom_port),
        "--stowrs", web.dicomweb,
    ])
    node.start()
    try:
        runs = storescu(node.port, [*images, broken])
        wait_until(lambda: queue_counts(node.spool).get("done", 0) >= len(images)
                   and sum(queue_counts(node.spool).get(s, 0) for s in ("done", "failed")) == len(images) + 1,
                   180, f"{len(images) + 1} jobs finished (log: {node.log_path})")
    finally:
        rc = node.stop()
    return {"pacs": pacs, "web": web, "images": images, "broken": broken, "node": node, "runs": runs, "rc": rc}


def _check_results(instances, images, spool):
    """Exactly one SR, GSPS and SEG in each image's study, and they are the node's recorded outputs."""
    sources = {_header(p).SOPInstanceUID for p in images}
    studies = {_header(p).StudyInstanceUID for p in images}
    records = [r for r in _done_records(spool) if r["source"] in sources]
    assert len(records) == len(images) and all(r["state"] == "done" for r in records)
    ours = [t for t in instances if t["StudyInstanceUID"] in studies]
    assert len(ours) == 3 * len(images)
    by_study = _results_by_study(ours)
    for path in images:
        assert by_study.get(_header(path).StudyInstanceUID) == Counter({"SR": 1, "PR": 1, "SEG": 1}), by_study
    assert {t["SOPInstanceUID"] for t in ours} == {o["sop_instance_uid"] for r in records for o in r["outputs"]}
    patient = {_header(p).StudyInstanceUID: _header(p).PatientID for p in images}
    for tags in ours:  # the results carry the source's patient (the PACS files them with it)
        assert tags["PatientID"] == patient[tags["StudyInstanceUID"]]
    return records


def test_results_arrive_by_cstore_in_the_source_study(delivered):
    assert all(r.returncode == 0 for r in delivered["runs"]), [r.stderr for r in delivered["runs"]]
    records = _check_results(delivered["pacs"].instances(), delivered["images"], delivered["node"].spool)
    assert all(len(r["outputs"]) == 3 and len(r["sent"]) == 2 for r in records)


def test_results_arrive_by_stowrs_in_the_source_study(delivered):
    web, images = delivered["web"], delivered["images"]
    _check_results(web.instances(), images, delivered["node"].spool)
    study = _header(images[0]).StudyInstanceUID  # and DICOMweb (QIDO-RS) sees them in the study
    found = web.http.get(f"/dicom-web/studies/{study}/instances").json()
    assert sorted(i["00080060"]["Value"][0] for i in found) == ["PR", "SEG", "SR"]


def test_the_node_stops_cleanly_and_leaves_no_patient_files(delivered):
    node = delivered["node"]
    assert delivered["rc"] == 0
    log = node.log_text()
    assert "SIGTERM received; stopping" in log and "DICOM node stopped" in log
    assert list((node.spool / "out").iterdir()) == []
    failed = [r for r in _done_records(node.spool) if r["state"] == "failed"]
    assert len(list((node.spool / "in").iterdir())) == len(failed)  # only failed images stay, for a look


def test_the_logs_carry_no_phi(delivered):
    log = delivered["node"].log_text()
    # the log is not empty: DEBUG lines of pynetdicom and every step of every job are there
    assert log.count(": done") >= 5 and "DEBUG pynetdicom" in log and "C-STORE" in log.upper()
    # pydicom's complaints about the invalid headers (raised while the results are built, outside
    # the reader's thoracic._warnings.quiet(), which silences only its own thread) reach the log
    # through the logging filters like everything else, redacted
    assert "py.warnings" in log
    assert "<value>" in log or "Invalid value" not in log
    leaked = [value for value in PHI_FORMS if value.lower() in log.lower()]
    assert leaked == []
    for path in [*delivered["images"], delivered["broken"]]:  # nor the UIDs of the images: digests stand for them
        assert _header(path).SOPInstanceUID not in log and _header(path).StudyInstanceUID not in log
    assert "uid#" in log


def test_kill_9_loses_nothing_and_duplicates_nothing(tmp_path, orthanc_factory, storescu, radiographs):
    pacs = orthanc_factory("crashpacs")
    n = 8
    fast = [radiographs[0], radiographs[1]]  # the 1024 x 1024 ones
    images = [make_copy(fast[i % 2], tmp_path / "send" / f"{i}.dcm") for i in range(n)]
    spool = tmp_path / "spool"
    args = ["--dest-ae", pacs.aet, "--dest-host", "127.0.0.1", "--dest-port", str(pacs.dicom_port), "--min-score", "0.5"]
    node = NodeProcess(spool, tmp_path / "node.log", args).start()
    runs = storescu(node.port, images)
    assert all(r.stderr.count("Received Store Response (Success)") for r in runs)
    accepted = sum(r.stderr.count("Received Store Response (Success)") for r in runs)
    assert accepted == n
    states_at_kill = []
    # kill -9 twice in the middle of the work (first while results are being sent if the poll catches
    # it, then while analyzing) and restart on the same spool each time
    for when in (lambda c: c.get("done", 0) >= 1 and (c.get("sending") or c.get("done", 0) >= 3),
                 lambda c: c.get("done", 0) >= 5):
        wait_until(lambda w=when: w(queue_counts(spool)), 180, "the moment to kill", interval=0.01)
        node.kill9()
        states_at_kill.append(queue_counts(spool))
        node = NodeProcess(spool, tmp_path / "node.log", args, port=node.port).start()
    assert any(c.get("done", 0) < n for c in states_at_kill), states_at_kill  # killed with work left
    wait_until(lambda: queue_counts(spool).get("done", 0) == n, 180, "all jobs done")
    # the same images again: already done, not analyzed or sent twice
    again = storescu(node.port, images)
    assert sum(r.stderr.count("Received Store Response (Success)") for r in again) == n
    node.stop()
    assert len(_done_records(spool)) == n  # 0 lost: every accepted image is one done job...
    instances = pacs.instances()
    assert len(instances) == 3 * n  # ...with one SR, GSPS and SEG in the PACS: 0 duplicates
    _check_results(instances, images, spool)
    log = node.log_text()
    assert log.count("received again (state done); not queued twice") == n


def test_results_wait_for_a_pacs_that_is_down_even_across_a_crash(tmp_path, orthanc_factory, storescu, radiographs):
    pacs_port = free_port()  # nothing listens there yet: the PACS is down
    images = [make_copy(radiographs[1], tmp_path / "send" / f"{i}.dcm") for i in range(2)]
    spool = tmp_path / "spool"
    args = ["--dest-ae", "LATEPACS", "--dest-host", "127.0.0.1", "--dest-port", str(pacs_port),
            "--backoff", "0.2", "--max-attempts", "100"]
    node = NodeProcess(spool, tmp_path / "node.log", args).start()
    storescu(node.port, images)
    wait_until(lambda: _attempts(spool) >= 3, 60, "sending retried")  # results saved, sending retried
    assert queue_counts(spool) == {"sending": 2}
    node.kill9()
    pacs = orthanc_factory("latepacs", dicom_port=pacs_port)
    node = NodeProcess(spool, tmp_path / "node.log", args, port=node.port).start()
    wait_until(lambda: queue_counts(spool).get("done", 0) == 2, 60, "delivered once the PACS is up")
    node.stop()
    _check_results(pacs.instances(), images, spool)
    log = node.log_text()
    assert "sending to cstore:LATEPACS@127.0.0.1:%d failed (SendError: association" % pacs_port in log
    assert "attempt 3 of 100, next in" in log


def _attempts(spool: Path) -> int:
    db = sqlite3.connect(f"file:{spool / 'queue.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT MIN(attempts) FROM jobs WHERE state = 'sending'").fetchone()
    finally:
        db.close()
    return row[0] or 0


def test_the_node_logs_where_it_listens_plainly_and_takes_a_lowercase_log_level(tmp_path):
    from node_helpers import NODE_AE

    node = NodeProcess(tmp_path / "spool", tmp_path / "node.log",
                       ["--host", "0.0.0.0", "--log-level", "debug", "--stowrs", "http://127.0.0.1:9/dicom-web"])
    node.start()
    assert node.stop() == 0
    log = node.log_text()
    assert f"INFO thoracic.node: listening on 0.0.0.0:{node.port} as AE {NODE_AE}; results to " in log
    assert "error: argument --log-level" not in log  # "debug" was taken
