"""No patient data in anything the batch commands print, log or write (issue 9).

``thoracic -vv predict``, ``convert`` and ``segment`` run on a folder of DICOMs whose headers
carry a patient name, id, birth date and accession number (some of them with values that break
their VR's rules), plus inputs that fail (a CT, a truncated file, a multi-frame, a damaged header
element). stdout, stderr, every log record at DEBUG and every byte of every file the commands
write (tables, settings, PNGs, overlays) are scanned for the identifying values, in process and in
a real ``python -m thoracic`` process.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fuzz_cases import chest_image, dicom_bytes

from thoracic.cli.main import main

NAME = "Quixote^Alonzo^Mancha"
PATIENT_ID = "PID-50417741"
BIRTH = "19370412"
ACCESSION = "ACC-66120734"
PHI = {"PatientName": NAME, "PatientID": PATIENT_ID, "PatientBirthDate": BIRTH, "AccessionNumber": ACCESSION}
#: The same patient as a sloppy exporter writes it: a birth date and an accession number that
#: break the DA and SH rules (editing such a header, pydicom logs "Invalid value for VR DA: '...'").
PHI_INVALID = {
    "PatientName": NAME,
    "PatientID": PATIENT_ID,
    "PatientBirthDate": "1937-04-12",
    "AccessionNumber": ACCESSION + "\x07",
}
#: What may not appear anywhere (case-insensitive). Long enough never to occur by chance in a score
#: column or in compressed PNG bytes.
FRAGMENTS = ("Quixote", "Alonzo", "Mancha", PATIENT_ID, "50417741", BIRTH, "1937-04-12", ACCESSION, "66120734")


def _leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    low = text.lower()
    return [f for f in FRAGMENTS if f.lower() in low]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phi-in")
    g8 = chest_image(256, 208)
    g16 = (g8.astype(np.uint16) * 16 + 5).astype(np.uint16)
    files = {
        "a.dcm": dicom_bytes(g16, bits_stored=12, phi=PHI, WindowCenter=2048, WindowWidth=4000),
        "b.dcm": dicom_bytes(g8, photometric="MONOCHROME1", phi=PHI_INVALID),
        "ct.dcm": dicom_bytes(g16, bits_stored=12, phi=PHI, Modality="CT"),
        "frames.dcm": dicom_bytes(g8, phi=PHI, NumberOfFrames="2"),
    }
    full = dicom_bytes(g16, bits_stored=12, phi=PHI_INVALID)
    files["cut.dcm"] = full[: len(full) - 5000]
    for name, element in (("vr.dcm", b"\x10\x00\x20\x00LO"), ("rows.dcm", b"\x28\x00\x10\x00US")):
        damaged = bytearray(dicom_bytes(g8, phi=PHI_INVALID))
        pos = bytes(damaged).find(element)  # Patient ID (dropped) or Rows (fatal): an unknown VR
        damaged[pos + 4 : pos + 6] = b"QI"
        files[name] = bytes(damaged)
    for name, data in files.items():
        (folder / name).write_bytes(data)
        if name != "cut.dcm":
            assert _leaks(data), name  # the scanner sees the PHI where it is
    return folder


def _scan_outputs(out: Path) -> dict[str, list[str]]:
    found = {}
    for f in sorted(out.rglob("*")):
        if f.is_file():
            leaks = _leaks(f.read_bytes())
            if leaks:
                found[str(f.relative_to(out))] = leaks
    return found


def _run(argv: list[str], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):  # as -vv asks for: every logger, DEBUG and up
        code = main(["-vv", *argv])
    out, err = capsys.readouterr()
    records = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    return code, "\n".join([out, err, records])


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "--out", "{out}/preds.csv", "--overlays", "{out}/overlays", "--threads", "1", "-q"],
        ["convert", "--out", "{out}/png", "--workers", "1", "-q"],
        ["segment", "--out", "{out}/lungs", "--overlays", "--crops", "--threads", "1", "-q"],
    ],
    ids=["predict", "convert", "segment"],
)
def test_batch_commands_keep_phi_out_of_logs_and_outputs(
    command: list[str], inputs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [command[0], str(inputs), *(a.replace("{out}", str(tmp_path)) for a in command[1:])]
    code, text = _run(argv, caplog, capsys)
    assert code == 1  # the CT, the cut, the multi-frame and the damaged Rows fail; the rest worked
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(written) >= 4  # table(s), settings and images or overlays of a.dcm and b.dcm
    tables = "\n".join(f.read_text() for f in written if f.suffix in (".csv", ".json"))
    for name in ("ct.dcm", "cut.dcm", "frames.dcm", "rows.dcm"):
        assert f"{name}: " in text + tables  # each failure is reported with its file ...
    assert "thoracic.io.read DEBUG" in text  # -vv: a line per image read was captured and scanned
    assert _leaks(text) == []  # ... without a word of what is inside it
    assert _scan_outputs(tmp_path) == {}


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "--out", "{out}/png", "--workers", "2", "-q"],
        ["predict", "--out", "{out}/preds.csv", "-q"],
        ["segment", "--out", "{out}/lungs", "-q"],
    ],
    ids=["convert", "predict", "segment"],
)
def test_cli_stderr_of_a_real_process(command: list[str], inputs: Path, tmp_path: Path) -> None:
    """The console as a user sees it: the root handler that ``-vv`` installs, worker processes
    and threads included."""
    argv = [command[0], str(inputs), *(a.replace("{out}", str(tmp_path)) for a in command[1:])]
    proc = subprocess.run(
        [sys.executable, "-m", "thoracic", "-vv", *argv],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "4 failed" in proc.stdout + proc.stderr
    assert "DEBUG thoracic.io.read" in proc.stderr  # -vv talked (one line per image read) ...
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == [], proc.stderr
    assert _scan_outputs(tmp_path) == {}


def test_pydicom_value_warnings_are_not_logged_with_the_value(caplog: pytest.LogCaptureFixture) -> None:
    """pydicom logs an invalid value in full when a header holding it is edited or written, as the
    DICOM outputs do when they copy the patient module ("Invalid value for VR DA: '1937-04-12'").
    Once thoracic is imported those records keep the VR and the rule but lose the value."""
    import warnings

    from pydicom.dataset import Dataset

    import thoracic.io  # noqa: F401 - installs the filter

    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = Dataset()
        ds.PatientBirthDate = PHI_INVALID["PatientBirthDate"]
    assert ds.PatientBirthDate == "1937-04-12"  # the value itself is kept as it is
    texts = [r.getMessage() for r in caplog.records if r.name.startswith("pydicom")]
    assert any("VR DA" in t for t in texts)  # the record is still there
    assert _leaks("\n".join(texts)) == []
    assert _leaks("\n".join(str(w.message) for w in caught))  # the warnings keep it: never logged by thoracic
