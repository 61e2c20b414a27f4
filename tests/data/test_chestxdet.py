"""ChestX-Det's boxes as a second reader of NIH images: mapping, readers, fusion, folds, CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import write

from thoracic.cli.main import main
from thoracic.data import (
    CHESTXDET_TO_VINDR,
    CHESTXDET_WITHOUT_VINDR,
    FINDINGS,
    fuse_readers,
    kfold_split,
    load_chestxdet,
    load_nih,
)
from thoracic.labels import NO_FINDING

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "chestxdet"
SHARED_NIH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nih"


@pytest.fixture
def nih():
    return load_nih(FIX / "images.csv", FIX / "boxes.csv")


def test_mapping_names_vindr_classes():
    assert set(CHESTXDET_TO_VINDR.values()) <= set(FINDINGS)
    assert not set(CHESTXDET_TO_VINDR) & set(CHESTXDET_WITHOUT_VINDR)
    # the four classes only ChestX-Det has boxes for
    assert {"Consolidation", "Pleural thickening", "Pulmonary fibrosis", "Calcification"} <= set(CHESTXDET_TO_VINDR.values())


def test_two_readers_on_the_fixture(nih):
    ann = load_chestxdet(FIX / "chestxdet_boxes.csv", nih)
    assert not ann.problems
    assert set(ann.images) == set(nih.images)  # images and patients are NIH's
    assert set(ann.reader.tolist()) == {"nih", "chestxdet"}
    by = {(r, i, lab) for i, lab, *_, r, _ in ann.rows()}
    assert ("nih", "00000344_003", "Pleural effusion") in by
    assert ("chestxdet", "00000344_003", "Pulmonary fibrosis") in by
    assert ("chestxdet", "00009375_001", "Other lesion") in by  # Fracture
    assert ("chestxdet", "00000583_057", NO_FINDING) in by  # ChestX-Det read it as normal
    # Diffuse Nodule has no VinDr class: left out (its image keeps ChestX-Det's other boxes)
    assert sum(1 for i, *_ in ann.rows() if i == "00009375_001") == 3
    # 13 ChestX-Det rows: 1 "No finding", 1 Diffuse Nodule left out, 11 boxes; NIH: 2 boxes + 2 negatives
    assert (ann.reader == "chestxdet").sum() == 12 and (ann.reader == "nih").sum() == 4


def test_fusion_per_class(nih):
    ann = load_chestxdet(FIX / "chestxdet_boxes.csv", nih)
    fused = fuse_readers(ann)
    rows = [r for r in fused.rows() if r[0] == "00000398_003"]
    # both readers drew the heart (IoU ~0.42 > 0.4): one box, score 1.0; ChestX-Det's two consolidations: 0.5 each
    cardio = [r for r in rows if r[1] == "Cardiomegaly"]
    assert len(cardio) == 1 and cardio[0][7] == pytest.approx(1.0)
    cons = [r for r in rows if r[1] == "Consolidation"]
    assert len(cons) == 2 and all(r[7] == pytest.approx(0.5) for r in cons)
    # a fused box lies between the readers' boxes
    nih_box = nih.boxes[(nih.image_id == "00000398_003")][0]
    assert np.all(cardio[0][2:4] >= np.minimum(nih_box[:2], [421, 529]) - 1e-6)


def test_folds_are_nih_folds(nih):
    ann = load_chestxdet(FIX / "chestxdet_boxes.csv", nih)
    assert kfold_split(ann, 2, seed=0) == kfold_split(nih, 2, seed=0)


def test_bad_rows_are_problems(nih, tmp_path):
    bad = write(tmp_path / "cx.csv", """
image,finding,x_min,y_min,x_max,y_max
00000344_003.jpg,Tuberculosis,1,1,20,20
99999999_000.jpg,Effusion,1,1,20,20
00000344_003.jpg,Effusion,1,1,2000,20
00000344_003.jpg,Emphysema,1,1,20,20
00000002_000.jpg,No finding,,,,
00000002_000.jpg,Nodule,100,100,130,130
""")
    ann = load_chestxdet(bad, nih)
    msgs = [(p.line, p.message) for p in ann.problems]
    assert [line for line, _ in msgs] == [2, 3, 4, 6]
    assert "Tuberculosis" in msgs[0][1] and "not in the NIH table" in msgs[1][1] and "outside" in msgs[2][1]
    assert "No finding" in msgs[3][1]
    # the Nodule box stays; NIH's own "No finding" row is kept as NIH's reading
    assert {(i, lab, r) for i, lab, *_, r, _ in ann.rows() if i == "00000002_000"} == {
        ("00000002_000", "Nodule/Mass", "chestxdet"), ("00000002_000", NO_FINDING, "nih")}


def test_cli_check_and_fuse(tmp_path, capsys):
    base = ["--nih", str(FIX / "images.csv"), str(FIX / "boxes.csv"), "--chestxdet", str(FIX / "chestxdet_boxes.csv")]
    assert main(["dataset", "check", *base]) == 0
    assert "2 named readers" in capsys.readouterr().out
    out = tmp_path / "fused.csv"
    assert main(["dataset", "fuse", *base, "--out", str(out)]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["label"] for r in rows} >= {"Consolidation", "Pulmonary fibrosis", "Cardiomegaly", NO_FINDING}
    assert main(["dataset", "check", "--csv", str(out), "--chestxdet", str(FIX / "chestxdet_boxes.csv")]) == 2
    assert "--chestxdet goes with --nih" in capsys.readouterr().err


def test_real_table():
    """SHARED DATA: the 107 ChestX-Det rows on 40 NIH images load without a problem and keep NIH's folds."""
    shared = SHARED_NIH
    if not (shared / "chestxdet_boxes.csv").is_file():
        pytest.skip("needs ../shared/data/nih/chestxdet_boxes.csv beside the clone")
    nih_all = load_nih(shared / "images.csv", shared / "boxes.csv")
    ann = load_chestxdet(shared / "chestxdet_boxes.csv", nih_all)
    assert not ann.problems
    cx = ann.subset(ann.reader == "chestxdet")
    assert len(set(cx.image_id.tolist())) == 40
    # 107 rows: 3 "No finding", 1 Diffuse Nodule left out, 103 boxes
    assert cx.is_finding.sum() == 103 and (~cx.is_finding).sum() == 3
    assert kfold_split(ann, 5, seed=0) == kfold_split(nih_all, 5, seed=0)

