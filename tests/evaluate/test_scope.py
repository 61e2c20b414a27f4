"""Which truth images ``evaluate`` scores: the predicted ones (of a fold), unless ``--all-truth``."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from helpers import read_rows, vindr_standin

from thoracic.data import Annotations, ImageInfo
from thoracic.data.selection import ImageSelection
from thoracic.errors import ConfigError
from thoracic.evaluate.scope import score_scope

PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")


def cli(*argv: str) -> int:
    from thoracic.cli.evaluate import add_parser

    parser = argparse.ArgumentParser(prog="thoracic")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _table(ids, rows=(), scored=False):
    rows = [(*r, "", 0.5) if scored else r for r in rows]
    return Annotations.from_rows([ImageInfo(i) for i in ids], rows)


def _nf(i):
    return (i, "No finding", 0, 0, 1, 1)


def test_scope_keeps_the_predicted_truth_images():
    truth = _table("abcd", [_nf(i) for i in "abcd"])
    preds = _table("ab", [_nf("a"), _nf("b")], scored=True)
    scope = score_scope(truth, preds)
    assert sorted(scope.truth.images) == ["a", "b"] and len(scope.truth) == 2
    assert scope.not_predicted == 2 and scope.notes == (
        "2 truth image(s) were not predicted; scored 2; --all-truth scores them as misses",)
    everything = score_scope(truth, preds, all_truth=True)
    assert sorted(everything.truth.images) == list("abcd") and everything.not_predicted == 2
    assert "scored 4, these as misses (--all-truth)" in everything.notes[0]
    # an image listed (sidecar) but without rows, e.g. one predict failed on, is scored, as a miss
    listed = _table("abc", [_nf("a"), _nf("b")], scored=True)
    assert sorted(score_scope(truth, listed).truth.images) == ["a", "b", "c"]


def test_scope_of_a_fold_and_predictions_elsewhere():
    truth = _table("abcdef", [_nf(i) for i in "abcdef"])
    preds = _table(["a", "b", "c", "e", "zz"], [_nf(i) for i in ("a", "b", "c", "e", "zz")], scored=True)
    fold = ImageSelection(("a", "b", "d"), "fold 0 of folds.csv")
    scope = score_scope(truth, preds, selection=fold)
    assert sorted(scope.truth.images) == ["a", "b"] and scope.outside == 3 and scope.not_predicted == 1
    # c and e are in the truth but not in the fold: dropped; zz is not in the truth: kept, with a warning
    assert sorted(scope.preds.images) == ["a", "b", "zz"] and scope.dropped == 2 and scope.unknown == ("zz",)
    assert scope.notes == ("fold 0 of folds.csv: 3 of the 6 truth images",
                           "1 truth image(s) were not predicted; scored 2; --all-truth scores them as misses",
                           "predictions of 2 image(s) outside fold 0 of folds.csv ignored")
    warning = ("1 of the 5 predicted image(s) are not in the truth, e.g. zz; their predictions are ignored "
               "(listed as 'unknown image' problems)")
    assert scope.warnings == (warning,)
    assert sorted(score_scope(truth, preds, selection=fold, all_truth=True).truth.images) == ["a", "b", "d"]


def test_scope_errors():
    truth = _table("ab", [_nf("a"), _nf("b")])
    other = _table(["x", "y"], [_nf("x"), _nf("y")], scored=True)
    with pytest.raises(ConfigError, match=r"none of the 2 predicted image\(s\) is in the truth .*nothing to score"):
        score_scope(truth, other)
    assert "every image scores as a miss" in score_scope(truth, other, all_truth=True).warnings[0]
    with pytest.raises(ConfigError, match=r"2 of the 3 image\(s\) of val.txt are not in the truth, e\.g\. p, q"):
        score_scope(truth, other, selection=ImageSelection(("a", "p", "q"), "val.txt"))
    mine = _table("a", [_nf("a")], scored=True)
    with pytest.raises(ConfigError, match=r"none of the 1 predicted image\(s\) is in the 1 image\(s\) of fold 1"):
        score_scope(truth, mine, selection=ImageSelection(("b",), "fold 1 of f.csv"))


# --- the researcher's path: a fold predicted, scored against the full train.csv -------------------
@pytest.fixture(scope="module")
def fold_files(tmp_path_factory):
    """A VinBigData stand-in, a CRLF+BOM folds file, predictions of fold 0 only, and fold 0's truth by hand."""
    root = tmp_path_factory.mktemp("vindr")
    train = vindr_standin(root, n=12)
    rows = read_rows(train)
    ids = sorted({r["image_id"] for r in rows})
    fold = {iid: k % 2 for k, iid in enumerate(ids)}
    folds = root / "folds.csv"
    folds.write_bytes(("\ufeffimage_id,group,fold\r\n" + "".join(f" {i} ,image:{i},{f}\r\n" for i, f in fold.items())
                       + "\r\n").encode("utf-8"))
    fold0 = [i for i in ids if fold[i] == 0]
    rng = np.random.default_rng(0)
    preds = []
    for iid in fold0:  # one reader's boxes, jittered, with random scores; a "No finding" row per image
        mine = [r for r in rows if r["image_id"] == iid]
        first = mine[0]["rad_id"]
        normal = mine[0]["class_name"] == "No finding"
        for r in mine:
            if r["rad_id"] == first and r["class_name"] != "No finding":
                box = np.array([float(r[c]) for c in PRED_COLUMNS[3:]]) + rng.normal(0, 3, 4)
                preds.append([iid, r["class_name"], f"{rng.uniform(0.2, 1):.3f}", *(f"{v:.1f}" for v in box)])
        preds.append([iid, "No finding", f"{rng.uniform(0.4, 1) if normal else rng.uniform(0, 0.7):.3f}", 0, 0, 1, 1])
        preds.append([iid, "Nodule/Mass", "0.95", 10, 10, 40, 40])  # a false positive
    pred = root / "preds.csv"
    with pred.open("w", newline="") as fh:
        csv.writer(fh).writerows([PRED_COLUMNS, *preds])
    subset = root / "truth_fold0.csv"  # what the researcher built by hand
    with subset.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["image_id"] in set(fold0))
    return {"train": train, "folds": folds, "pred": pred, "subset": subset, "fold0": fold0, "n": len(ids)}


def _map(tmp_path, name, *args: str) -> dict:
    out = tmp_path / name
    assert cli("evaluate", *args, "--out", str(out), "--bootstrap", "0", "--no-coco") == 0
    return json.loads((out / "metrics.json").read_text())


def test_partial_predictions_score_as_the_hand_built_subset(fold_files, tmp_path, capsys):
    f = fold_files
    n0, n = len(f["fold0"]), f["n"]
    by_hand = _map(tmp_path, "hand", "--pred", str(f["pred"]), "--truth", str(f["subset"]))
    capsys.readouterr()
    scoped = _map(tmp_path, "scoped", "--pred", str(f["pred"]), "--truth", str(f["train"]))
    err = capsys.readouterr().err
    assert f"{n - n0} truth image(s) were not predicted; scored {n0}; --all-truth scores them as misses" in err
    assert scoped["images"] == by_hand["images"] == n0
    assert scoped["map"] == pytest.approx(by_hand["map"]) and 0 < scoped["map"] < 1
    assert scoped["ap"] == pytest.approx(by_hand["ap"])
    assert any("were not predicted" in note for note in scoped["notes"])
    # the old number: the other folds' images count as misses
    old = _map(tmp_path, "all", "--pred", str(f["pred"]), "--truth", str(f["train"]), "--all-truth")
    assert old["images"] == n and old["map"] < scoped["map"]
    assert "these as misses (--all-truth)" in capsys.readouterr().err
    # the fold named: the same images and number; with --all-truth, still only the fold
    fold = ("--folds", str(f["folds"]), "--fold", "0")
    assert _map(tmp_path, "fold", "--pred", str(f["pred"]), "--truth", str(f["train"]), *fold)["map"] == pytest.approx(
        by_hand["map"])
    assert f"fold 0 of folds.csv: {n0} of the {n} truth images" in capsys.readouterr().err
    whole = _map(tmp_path, "fold_all", "--pred", str(f["pred"]), "--truth", str(f["train"]), *fold, "--all-truth")
    assert whole["images"] == n0 and whole["map"] == pytest.approx(by_hand["map"])


def test_fold_of_predictions_elsewhere_and_bad_selections(fold_files, tmp_path, capsys):
    f = fold_files
    # fold 1 was not predicted at all: an error, exit 2
    args = ("--pred", str(f["pred"]), "--truth", str(f["train"]), "--out", str(tmp_path / "o"), "--bootstrap", "0",
            "--no-coco")
    assert cli("evaluate", *args, "--folds", str(f["folds"]), "--fold", "1") == 2
    assert "nothing to score" in capsys.readouterr().err
    assert cli("evaluate", *args, "--fold", "1") == 2
    assert "--folds FILE and --fold K go together" in capsys.readouterr().err
    # an image list with an id the truth does not have
    listed = tmp_path / "val.txt"
    listed.write_text("\n".join([*f["fold0"], "0123456789abcdef"]) + "\n")
    assert cli("evaluate", *args, "--image-list", str(listed)) == 2
    assert "1 of the" in capsys.readouterr().err
    # predictions on an image the truth lacks: a warning, and the score is unchanged
    extra = tmp_path / "extra.csv"
    extra.write_text(f["pred"].read_text() + "not-in-truth,No finding,0.5,0,0,1,1\n")
    m = _map(tmp_path, "extra", "--pred", str(extra), "--truth", str(f["subset"]))
    assert "warning: 1 of the" in capsys.readouterr().err
    assert m["map"] == pytest.approx(_map(tmp_path, "plain", "--pred", str(f["pred"]), "--truth", str(f["subset"]))["map"])
    assert m["problem_counts"].get("unknown image") == 1
