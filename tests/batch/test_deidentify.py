"""``thoracic deidentify``: de-identified copies of DICOM files with their de-identified results."""

from __future__ import annotations

import csv
import json

import pydicom
import pytest
from helpers import DEID_FRAGMENTS, ORIGINAL_UIDS, SAMPLES, phi_radiograph

from thoracic.cli.main import main


def _rows(folder):
    with (folder / "deidentify.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in" / "Doe_Jane"  # a patient-named folder: it must not reach the outputs
    folder.mkdir(parents=True)
    phi_radiograph(folder / "PID-31415926.dcm")
    ds = pydicom.dcmread(SAMPLES / "siim_cr_jpeg_baseline.dcm")
    ds.PatientName, ds.PatientID, ds.AccessionNumber = "Doe^Jane^Quincy", "PID-31415926", "ACC-2718281"
    ds.save_as(folder / "second.dcm")
    (folder / "junk.dcm").write_bytes(b"not a dicom file at all")
    return folder


def test_deidentify_with_results_keeps_no_phi_and_links_the_results(require, inputs, tmp_path, monkeypatch, capsys):
    require("highdicom")
    monkeypatch.setenv("THORACIC_DEID_SALT", "site secret")
    out = tmp_path / "out"
    assert main(["deidentify", str(inputs), "--out", str(out), "--results", "--min-score", "0.01", "-q"]) == 1  # the junk file
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]  # sorted: PID-..., junk, second
    assert rows[1]["error"].startswith("cannot read the DICOM file") and "Doe_Jane" not in rows[1]["error"]
    written = sorted(p for p in out.iterdir() if p.suffix == ".dcm")
    assert len(written) == 2 * 4  # image + SR + GSPS + SEG each
    for path in [*written, out / "deidentify.csv"]:
        data = path.read_bytes()
        leaked = [f for f in (*DEID_FRAGMENTS, *ORIGINAL_UIDS, "Doe_Jane") if f.encode() in data]
        assert leaked == [], (path.name, leaked)
    for row in (r for r in rows if r["status"] == "ok"):
        image = pydicom.dcmread(out / row["image"])
        assert image.PatientIdentityRemoved == "YES" and str(image.PatientID).startswith("ANON-")
        for kind in ("sr", "gsps", "seg"):
            obj = pydicom.dcmread(out / row[kind])
            assert obj.StudyInstanceUID == image.StudyInstanceUID and obj.PatientID == image.PatientID
            assert image.SOPInstanceUID in obj.to_json()  # the result refers to the de-identified image
    assert "within this run only" not in capsys.readouterr().err


def test_the_same_salt_gives_the_same_files_and_keep_uids_is_refused_with_results(require, inputs, tmp_path):
    require("highdicom")
    salt = tmp_path / "salt.txt"
    salt.write_text("another secret\n")
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["deidentify", str(inputs / "second.dcm"), "--out", str(out), "--salt-file", str(salt), "-q"]) == 0
    (a,), (b,) = (sorted(p.glob("*.dcm")) for p in (first, second))
    assert a.name == b.name and a.read_bytes() == b.read_bytes()
    assert main(["deidentify", str(inputs), "--out", str(tmp_path / "c"), "--results", "--keep-uids"]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["deidentify", str(inputs), "--out", str(tmp_path / "d"), "--salt-file", str(empty)]) == 2


def test_a_folder_de_identified_with_other_settings_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["deidentify", str(inputs / "second.dcm"), "--out", str(out), "-q"]
    assert main(argv) == 0
    assert main(argv) == 0  # the same settings: again
    capsys.readouterr()
    assert main([*argv, "--keep-uids"]) == 2
    err = capsys.readouterr().err
    assert "keep_uids was false, now true" in err and "deidentify.json" in err, err
    assert sorted(json.loads((out / "deidentify.json").read_text())["settings"]) == ["keep_uids", "min_score", "results"]
