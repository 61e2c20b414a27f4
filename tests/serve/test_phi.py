"""No patient data in logs or error messages, with every logger at DEBUG (in-process)."""

from __future__ import annotations

import logging

from helpers import SAMPLES
from serve_helpers import AUTH, PHI, PHI_FILENAME, dicom_bytes, need, phi_needles

need("fastapi")


def _leaks(text: str, needles: list[str]) -> list[str]:
    return [needle for needle in needles if needle.lower() in text.lower()]


def test_phi_in_headers_and_file_names_never_reaches_logs_or_answers(client, phi_dicom, caplog, require):
    require("highdicom")

    caplog.set_level(logging.DEBUG)  # the root logger and everything below it
    answers = []
    r = client.post("/v1/analyze?outputs=sr,gsps,seg", files={"file": (PHI_FILENAME, phi_dicom, "application/dicom")},
                    headers=AUTH)
    assert r.status_code == 200, r.text
    answers.append(r.text)
    rid = r.json()["id"]
    for kind in ("sr", "gsps", "seg"):
        d = client.get(f"/v1/results/{rid}/{kind}", headers=AUTH)
        assert d.status_code == 200
        assert PHI["PatientID"].encode() in d.content  # the DICOM results do belong to the patient...
    # ...and failures quote no header either
    bad = [
        dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", ViewPosition="LL", **PHI),
        phi_dicom[: len(phi_dicom) // 3],
        phi_dicom.replace(b"DICM", b"DICX", 1),
    ]
    for body in bad:
        r = client.post("/v1/analyze", files={"file": (PHI_FILENAME, body)}, headers=AUTH)
        assert 400 <= r.status_code < 500
        answers.append(r.text)
    r = client.post("/v1/analyze", content=phi_dicom, headers={"Authorization": f"Bearer {PHI['PatientName']}"})
    assert r.status_code == 401
    answers.append(r.text)

    logged = "\n".join(f"{rec.name} {rec.levelname} {rec.getMessage()} {rec.args!r}" for rec in caplog.records)
    assert "POST /v1/analyze 200" in logged and f"id={rid}" in logged  # the request log was captured
    needles = phi_needles(phi_dicom)
    assert _leaks(logged, needles) == []
    assert _leaks("\n".join(answers), needles) == []
