"""Crash safety of ``thoracic predict``: kill -9 mid-run, ``--resume``, nothing lost, nothing twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import FIXTURES, read_rows

from thoracic._fs import sidecar_path
from thoracic.cli.predict import main
from thoracic.models.registry import model_path

JLS = FIXTURES / "RG1_JLSN.dcm"  # slow to decode (~0.3 s): the kill lands mid-run
DICOM = FIXTURES / "nih_dx_implicit_le.dcm"


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


@pytest.fixture
def folder(tmp_path, chest_png) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        shutil.copy(JLS, d / f"jls{i}.dcm")
        shutil.copy(chest_png if i % 2 else DICOM, d / (f"png{i}.png" if i % 2 else f"dcm{i}.dcm"))
    return d


def _models(detector_onnx) -> list[str]:
    return [] if detector_onnx == model_path("detector") else ["--models", str(detector_onnx)]


def test_kill_9_then_resume_loses_nothing_and_duplicates_nothing(folder, detector_onnx, tmp_path):
    out = tmp_path / "run" / "preds.csv"
    side = sidecar_path(out)
    args = [str(folder), "--out", str(out), *_models(detector_onnx), "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "thoracic", "predict", *args, "--readers", "1", "--workers", "1"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _lines(side) < 1 + 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-500:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done_before = read_rows(side)
    assert 3 <= len(done_before) < 12
    # a kill can also land inside a write: leave torn last lines in both files (no line end)
    with out.open("a", newline="") as fh:
        fh.write(f"{done_before[0]['image_id']},Aortic enlargement,0.5,1")
    with side.open("a", newline="") as fh:
        fh.write("jls5,/x/jls5.dcm,o")
    first_rows = out.read_text().splitlines()[1:]

    assert main([*args, "--resume", "--readers-in", "processes"]) == 0
    images = read_rows(side)
    assert Counter(r["image_id"] for r in images) == Counter({p.name.rsplit(".", 1)[0]: 1 for p in folder.iterdir()})
    assert {r["status"] for r in images} == {"ok"}
    preds = out.read_text().splitlines()[1:]
    assert len(preds) == len(set(preds))  # no row twice (every row has a distinct score or box)
    done_ids = {r["image_id"] for r in done_before}
    kept = [line for line in first_rows if line.split(",", 1)[0] in done_ids and line.count(",") == 6]
    assert preds[: len(kept)] == kept  # the images done before the kill were kept, not predicted again

    # the result equals one uninterrupted run, row for row
    clean = tmp_path / "clean" / "preds.csv"
    assert main([str(folder), "--out", str(clean), *_models(detector_onnx), "-q"]) == 0
    assert sorted(preds) == sorted(clean.read_text().splitlines()[1:])
    assert Counter(r["image_id"] for r in read_rows(sidecar_path(clean))) == Counter(r["image_id"] for r in images)


def test_resume_drops_a_torn_quoted_field_and_failed_images(detector_onnx, chest_png, tmp_path):
    out = tmp_path / "p.csv"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    args = [str(chest_png), str(bad), "--out", str(out), *_models(detector_onnx), "-q"]
    assert main(args) == 1
    side = sidecar_path(out)
    assert [r["status"] for r in read_rows(side)] == ["ok", "failed"]
    with side.open("a", newline="") as fh:  # killed inside a quoted error message
        fh.write('other,/x/other.png,failed,"UnsupportedFormatError: half a mess')
    bad.write_bytes(chest_png.read_bytes())  # the file was fixed meanwhile
    assert main([*args, "--resume"]) == 0
    rows = read_rows(side)
    assert [(r["image_id"], r["status"]) for r in rows] == [(chest_png.stem, "ok"), ("bad", "ok")]


def test_resume_predicts_again_an_image_whose_rows_are_missing(detector_onnx, chest_png, tmp_path):
    out = tmp_path / "p.csv"
    dicom = tmp_path / "d.dcm"
    shutil.copy(DICOM, dicom)
    args = [str(chest_png), str(dicom), "--out", str(out), *_models(detector_onnx), "-q"]
    assert main(args) == 0
    full = out.read_text().splitlines()
    # the sidecar says done, but the prediction rows of one image are gone (a lost or edited file)
    out.write_text("\n".join(line for line in full if not line.startswith("d,")) + "\n")
    assert main([*args, "--resume"]) == 0
    assert sorted(out.read_text().splitlines()) == sorted(full)
    assert [r["image_id"] for r in read_rows(sidecar_path(out))] == [chest_png.stem, "d"]
