"""The researcher's path of docs/vindr.md, run command by command on a small VinDr-layout folder.

The commands are read from the document (between its ``vindr-path`` markers), so the document and
this test cannot drift apart. Only sizes are changed: options appended to a command override the
document's (argparse keeps the last), e.g. 1 epoch at 64 px instead of 30 at 512.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, read_rows, vindr_standin

from thoracic.labels import NO_FINDING

DOC = ROOT / "docs" / "vindr.md"
SHARED_WEIGHTS = ROOT.parent / "shared" / "weights" / "yolov5n-coco.pt"
#: Appended to the documented commands: the same path, small and on this CPU.
SMALL = {
    ("train", "cv"): ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--mosaic", "0", "--device", "cpu",
                      "--threads", "1", "--bootstrap", "20", "--export-workers", "1"],
    ("train", "detector"): ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--mosaic", "0", "--device", "cpu",
                            "--threads", "1"],
    ("dataset", "export"): ["--workers", "1", "--quiet"],
    ("evaluate",): ["--bootstrap", "20"],
    ("predict",): ["--quiet"],
}


def documented_commands() -> list[list[str]]:
    """The ``thoracic ...`` lines of the fenced blocks between the document's markers."""
    text = DOC.read_text()
    part = text.split("<!-- vindr-path: begin -->", 1)[1].split("<!-- vindr-path: end -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", part, flags=re.DOTALL)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.startswith("thoracic ")]


def _small(argv: list[str], pretrained: bool) -> list[str]:
    for key, extra in SMALL.items():
        if tuple(argv[1:1 + len(key)]) == key:
            argv = [*argv, *extra]
    if not pretrained and "--pretrained" in argv:  # no COCO weights on this machine: from scratch
        i = argv.index("--pretrained")
        argv = argv[:i] + argv[i + 2:]
    return argv


def test_the_document_names_every_step():
    steps = [" ".join(c[1:3]) for c in documented_commands()]
    for step in ("dataset check", "dataset stats", "dataset fuse", "train cv", "dataset export", "train detector",
                 "predict vinbigdata/train", "evaluate --pred", "predict vinbigdata/test"):
        assert any(s.startswith(step.split()[0]) and step.split()[1] in " ".join(c) for s, c in
                   zip(steps, documented_commands(), strict=True)), step
    assert any(c[1] == "export-detector" for c in documented_commands())


@pytest.mark.slow
def test_vindr_path_as_documented(tmp_path, require):
    require("torch")
    require("ultralytics")
    root = tmp_path
    train_csv = vindr_standin(root / "vinbigdata", 20)
    (root / "vinbigdata" / "test").mkdir()
    for dcm in sorted((root / "vinbigdata" / "train").glob("*.dicom"))[:3]:
        shutil.copy(dcm, root / "vinbigdata" / "test" / dcm.name)
    pretrained = SHARED_WEIGHTS.is_file()
    if pretrained:
        (root / "weights").mkdir()
        shutil.copy(SHARED_WEIGHTS, root / "weights" / "yolov5n-coco.pt")
    env = {**os.environ, "YOLO_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    for argv in documented_commands():
        argv = _small(argv, pretrained)
        run = subprocess.run([sys.executable, "-m", "thoracic", *argv[1:]], cwd=root, env=env, capture_output=True,
                             text=True, timeout=600, check=False)
        assert run.returncode == 0, f"{shlex.join(argv)}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        assert "Traceback" not in run.stderr, run.stderr

    # check, stats, fuse
    assert (root / "vinbigdata" / ".thoracic-sizes-train.csv").is_file()
    assert (root / "fused.csv").is_file() and any((root / "stats").iterdir())
    # cross-validation: four CV folds, fold 0 held out, scores with an interval
    cv = json.loads((root / "cv" / "cv.json").read_text())
    assert [f["fold"] for f in cv["folds"]] == [1, 2, 3, 4]
    assert cv["pooled"]["ci"]["kaggle_map"] is not None
    with open(root / "cv" / "folds.csv", newline="") as fh:
        folds = {r["image_id"]: int(r["fold"]) for r in csv.DictReader(fh)}
    test_fold = sorted(i for i, f in folds.items() if f == 0)
    assert (root / "cv" / "test_images.txt").read_text().split() == test_fold
    assert {r["image_id"] for r in read_rows(root / "cv" / "oof.images.csv")} == set(folds) - set(test_fold)
    # one model by hand
    assert (root / "fold1.onnx").is_file()
    # the ensemble on the test fold: exactly its images, only classes the models were trained on
    preds = read_rows(root / "test" / "preds.csv")
    assert sorted({r["image_id"] for r in preds}) == test_fold
    trained = {r["class_name"] for r in read_rows(train_csv)} - {NO_FINDING}
    assert {r["label"] for r in preds} - {NO_FINDING} <= trained
    metrics = json.loads((root / "test" / "eval" / "metrics.json").read_text())
    assert metrics["images"] == len(test_fold)
    assert (root / "test" / "eval" / "report.html").is_file()
    # the submission: one row per test image
    sub = read_rows(root / "submission.csv")
    assert sorted(r["image_id"] for r in sub) == sorted(p.stem for p in (root / "vinbigdata" / "test").iterdir())
    assert all(r["PredictionString"].strip() for r in sub)
