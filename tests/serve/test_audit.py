"""The audit trail of ``thoracic serve`` (``--audit-log``): one JSON line per analysis request, with
the token's id, a digest of the image, the models and the outcome, and no patient data."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import subprocess
import sys
import threading

import pydicom
import pytest
from helpers import ROOT, SAMPLES
from serve_helpers import AUTH, PHI, PHI_FILENAME, TOKEN, dicom_bytes, need, phi_needles

from thoracic.errors import ConfigError
from thoracic.serve.audit import AuditLog, subject
from thoracic.serve.config import ServeConfig
from thoracic.serve.limits import token_id

need("fastapi")

OTHER = "audit-second-token-4d0f"
FIELDS = ["time", "token", "subject", "sha256", "models", "outcome", "type", "status", "seconds", "id"]


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="ascii").splitlines()]


def _uid_digest(dicom: bytes) -> str:
    uid = str(pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True).SOPInstanceUID)
    return hashlib.sha256(uid.encode()).hexdigest()


def test_one_line_per_analysis_request_without_patient_data(make_client, tmp_path, phi_dicom, chest_png, require):
    require("highdicom")
    audit = tmp_path / "audit.jsonl"
    client = make_client(tokens=(OTHER,), rate_limit="6/min", audit_log=str(audit))
    lateral = dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", ViewPosition="LL", **PHI)
    other = {"Authorization": f"Bearer {OTHER}"}
    sent = [  # (body, headers, query, expected status)
        (phi_dicom, AUTH, "?outputs=sr,gsps,seg", 200),
        (chest_png, other, "", 200),
        (lateral, AUTH, "", 422),
        (phi_dicom[: len(phi_dicom) // 3], AUTH, "", 400),
        (phi_dicom, {"Authorization": f"Bearer {PHI['PatientName']}"}, "", 401),
        (b"", AUTH, "", 400),
    ]
    answers = []
    for body, headers, query, status in sent:
        r = client.post(f"/v1/analyze{query}", files={"file": (PHI_FILENAME, body, "application/dicom")}, headers=headers)
        assert r.status_code == status, r.text
        answers.append(r.json())
    assert [client.get("/v1/models", headers=AUTH).status_code for _ in range(3)] == [200, 200, 429]  # budget: 6
    r = client.post("/v1/analyze", content=phi_dicom, headers=AUTH)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limited"

    lines = _lines(audit)
    assert len(lines) == len(sent) + 1  # one per analysis request, none for /v1/models
    for line in lines:
        assert list(line) == FIELDS
        when = dt.datetime.fromisoformat(line["time"])  # Python 3.11 reads the Z
        assert when.utcoffset() == dt.timedelta(0) and abs(dt.datetime.now(dt.UTC) - when).total_seconds() < 300
        assert line["seconds"] >= 0
    ok, png, refused, corrupt, wrong, empty, limited = lines
    assert ok["token"] == token_id(TOKEN) and png["token"] == token_id(OTHER)
    assert (ok["subject"], ok["sha256"]) == ("sop_instance_uid", _uid_digest(phi_dicom))
    assert (png["subject"], png["sha256"]) == ("upload", hashlib.sha256(chest_png).hexdigest())
    assert ok["id"] == answers[0]["id"] and png["id"] == answers[1]["id"]
    assert ok["models"] == [f"{m['role']}:{m['sha256'][:12]}" for m in answers[0]["models"]]
    assert {m.split(":")[0] for m in ok["models"]} == {"detector", "classifier", "lungs"}
    assert [(x["outcome"], x["type"], x["status"]) for x in (ok, png)] == [("ok", None, 200)] * 2
    assert (refused["outcome"], refused["status"], refused["type"]) == ("refused", 422, answers[2]["error"]["type"])
    assert refused["subject"] == "sop_instance_uid" and refused["models"] == ok["models"]  # a refused DICOM too
    assert refused["sha256"] == _uid_digest(lateral)
    assert (corrupt["outcome"], corrupt["status"], corrupt["subject"]) == ("refused", 400, "upload")
    assert corrupt["sha256"] == hashlib.sha256(phi_dicom[: len(phi_dicom) // 3]).hexdigest()
    assert (wrong["token"], wrong["type"], wrong["subject"], wrong["sha256"], wrong["id"]) == (
        None, "unauthorized", None, None, None)  # refused before the upload was read
    assert (empty["type"], empty["subject"], empty["sha256"]) == ("empty_file", None, None)
    assert (limited["token"], limited["outcome"], limited["type"], limited["status"]) == (
        token_id(TOKEN), "refused", "rate_limited", 429)
    text = audit.read_text()
    leaks = [n for n in [*phi_needles(phi_dicom), *phi_needles(lateral), PHI_FILENAME, TOKEN, OTHER]
             if n.lower() in text.lower()]
    assert leaks == []


def test_an_audit_log_that_cannot_be_written_stops_the_answer(make_client, chest_png, caplog):
    client = make_client(audit_log="/dev/full")  # every write: ENOSPC
    r = client.post("/v1/analyze", content=chest_png, headers=AUTH)
    assert r.status_code == 503 and r.json()["error"]["type"] == "audit_log_unavailable"
    assert r.headers["Retry-After"] == "60"
    assert "cannot write the audit log (OSError: No space left on device); answered 503" in caplog.text


def test_a_short_write_leaves_no_torn_line(tmp_path):
    """A file size limit (RLIMIT_FSIZE) cuts a write short: the partial line is cut back off."""
    path = tmp_path / "audit.jsonl"
    script = f"""
import json, os, resource, signal, sys
sys.path.insert(0, {str(ROOT / 'src')!r})
from thoracic.serve.audit import AuditLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
log = AuditLog({str(path)!r})
log.write({{"n": 1}})
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize({str(path)!r}) + 40, resource.RLIM_INFINITY))
try:
    log.write({{"n": 2, "pad": "x" * 200}})
except OSError as err:
    print("refused", err.errno)
log.write({{"n": 3}})
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "refused"
    assert path.read_text() == '{"n":1}\n{"n":3}\n'


def test_lines_from_many_threads_stay_whole(tmp_path):
    log = AuditLog(str(tmp_path / "audit.jsonl"))

    def write(t: int) -> None:
        for i in range(200):
            log.write({"thread": t, "i": i, "pad": "y" * (t * 97)})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = _lines(tmp_path / "audit.jsonl")
    assert sorted((x["thread"], x["i"]) for x in lines) == [(t, i) for t in range(8) for i in range(200)]


def test_subjects(cr_dicom, chest_png):
    assert subject(cr_dicom) == ("sop_instance_uid", _uid_digest(cr_dicom))
    assert subject(chest_png) == ("upload", hashlib.sha256(chest_png).hexdigest())
    junk = b"\x00" * 300
    assert subject(junk) == ("upload", hashlib.sha256(junk).hexdigest())


def test_an_audit_log_that_cannot_be_opened_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot append to the audit log"):
        ServeConfig(token=TOKEN, audit_log=str(tmp_path))  # a folder
    with pytest.raises(ConfigError, match="cannot append to the audit log"):
        ServeConfig(token=TOKEN, audit_log=str(tmp_path / "missing" / "audit.jsonl"))
    made = tmp_path / "audit.jsonl"
    ServeConfig(token=TOKEN, audit_log=str(made))
    assert made.read_bytes() == b"" and oct(made.stat().st_mode & 0o777) == "0o600"
