"""Reading prediction/truth tables, evaluate(), metrics.json, the CLI and the HTML report."""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from thoracic.data import Annotations, ImageInfo, read_image_sizes
from thoracic.errors import ConfigError, ReadError
from thoracic.evaluate import (
    METRICS_KEYS,
    EvaluationConfig,
    evaluate,
    evaluate_difference,
    evaluate_mean,
    kaggle_map,
    markdown_summary,
    read_predictions,
    read_truth,
    write_results,
)
from thoracic.evaluate.bootstrap import resample_weights
from thoracic.evaluate.tables import problem_kind, read_label_map, unknown_labels
from thoracic.report import SECTIONS, render_report

PRED_HEADER = "image_id,label,score,x_min,y_min,x_max,y_max\n"
TRUTH_HEADER = "image_id,label,x_min,y_min,x_max,y_max\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def kinds(table_or_problems) -> dict[str, int]:
    problems = getattr(table_or_problems, "problems", table_or_problems)
    out: dict[str, int] = {}
    for p in problems:
        out[problem_kind(p)] = out.get(problem_kind(p), 0) + 1
    return out


# --- reading -----------------------------------------------------------------------------------
def test_read_predictions_lists_bad_rows(tmp_path):
    path = write(
        tmp_path / "preds.csv",
        PRED_HEADER
        + "a,Cardiomegaly,0.9,10,10,20,20\n"
        + "a,Cardiomegaly,0.9,10,10,20,20\n"  # duplicate row: kept, listed
        + "a,No finding,0.1,0,0,1,1\n"
        + "a,Heart attack,0.5,10,10,20,20\n"  # unknown label: dropped, listed
        + "b,Nodule/Mass,high,10,10,20,20\n"  # bad score
        + "b,Nodule/Mass,0.4,30,10,20,20\n"  # inverted box
        + "b,Nodule/Mass,0.4,90,90,120,120\n"  # outside the 100x100 image (sidecar): kept
        + "b,No finding,0.6,0,0,1,1\n"
        + "c,Nodule/Mass,0.4,1,1,5,5\n",  # c has no "No finding" row
    )
    write(tmp_path / "preds.images.csv", "image_id,source,status,error,width,height\nb,/x/b.png,ok,,100,100\n")
    t = read_predictions(path)
    assert len(t) == 6
    assert kinds(t) == {"unknown label": 1, "bad score": 1, "bad box": 1, "duplicate row": 1,
                        "box outside image": 1, "no finding count": 1}
    assert t.images["b"].source == "/x/b.png" and t.images["b"].width == 100
    bad = next(p for p in t.problems if problem_kind(p) == "unknown label")
    assert bad.line == 5 and bad.image_id == "a" and "Heart attack" in bad.message


def test_a_label_map_renames_or_drops_labels_before_the_checks(tmp_path):
    rows = ("a,Effusion,10,10,20,20\na,Effusion,30,30,40,40\nb,Other disease,1,1,5,5\nb,Nodule/Mass,1,1,5,5\n"
            "c,Heart attack,1,1,2,2\n")
    truth = write(tmp_path / "truth.csv", TRUTH_HEADER + rows)
    plain = read_truth(truth)
    assert unknown_labels(plain) == {"Effusion": 2, "Other disease": 1, "Heart attack": 1}
    assert set(plain.images) == {"a", "b", "c"}  # images of refused rows stay images
    label_map = read_label_map(write(tmp_path / "map.csv", "from , to\nEffusion,Pleural effusion\n"
                                     "Other disease,\nNodule/Mass,Nodule/Mass\n"))
    assert label_map == {"Effusion": "Pleural effusion", "Other disease": None, "Nodule/Mass": "Nodule/Mass"}
    mapped = read_truth(truth, label_map=label_map)
    assert mapped.label.tolist() == ["Pleural effusion", "Pleural effusion", "Nodule/Mass"]
    assert unknown_labels(mapped) == {"Heart attack": 1}  # not in the map: still unknown
    assert kinds(mapped) == {"dropped by label map": 1, "unknown label": 1}
    preds = write(tmp_path / "preds.csv", PRED_HEADER + "a,Effusion,0.5,10,10,20,20\na,No finding,0.5,0,0,1,1\n")
    assert read_predictions(preds, label_map=label_map).label.tolist() == ["Pleural effusion", "No finding"]


@pytest.mark.parametrize(("text", "match"), [
    ("from,to\nEffusion,Pleural efusion\n", (r"map.csv:2: 'Effusion' is mapped to an unknown label 'Pleural efusion'; "
                                              r"did you mean 'Pleural effusion'\?")),
    ("from,to\n,Cardiomegaly\n", "needs a 'from' label"),
    ("from,to\nMass,Nodule/Mass\nMass,\n", r"map.csv:3: 'Mass' is mapped twice \('Nodule/Mass' and None\)"),
    ("source,target\nMass,Nodule/Mass\n", "from"),
])
def test_a_wrong_label_map_is_refused(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        read_label_map(write(tmp_path / "map.csv", text))


def test_read_truth_both_layouts(tmp_path):
    plain = write(tmp_path / "truth.csv", TRUTH_HEADER + "a,Cardiomegaly,10,10,20,20\nb,No finding,,,,\nc,No finding,0,0,1,1\n")
    t = read_truth(plain)
    assert t.label.tolist() == ["Cardiomegaly", "No finding", "No finding"]
    assert t.boxes[1].tolist() == [0, 0, 1, 1] and not t.problems
    kaggle = write(
        tmp_path / "train.csv",
        "image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max\n"
        "a,Cardiomegaly,3,R1,10,10,20,20\n"
        "a,No finding,14,R2,,,,\n"
        "a,Aortic enlargement,5,R3,1,1,2,2\n"  # class id mismatch: listed, label kept
        "a,Cardiomegaly,3,R1,,,,\n"  # a finding without a box: dropped
        "b,Nodule/Mass,8,R1,10,10,20,20\n"
        "b,No finding,14,R1,,,,\n",  # R1 says both: contradictory
    )
    k = read_truth(kaggle, sizes={"a": (15, 15)})
    assert k.reader.tolist() == ["R1", "R2", "R3", "R1", "R1"]
    assert kinds(k) == {"class id mismatch": 1, "bad box": 1, "contradictory truth": 1, "box outside image": 1}


def test_an_image_written_without_rows_reads_back_without_rows_and_evaluate_scores_the_table(tmp_path, capsys):
    """``write_csv`` lists an image without rows on a row with neither label nor box (the paper
    table's truth: NIH images whose findings have no boxes); ``evaluate`` read that as an unknown
    label '' and refused the table."""
    from thoracic.cli.evaluate import add_parser
    from thoracic.data import write_csv
    from thoracic.evaluate.kaggle import kaggle_map

    truth = Annotations.from_rows([ImageInfo("a", 100, 100), ImageInfo("b", 100, 100), ImageInfo("c", 100, 100)],
                                  [("a", "Cardiomegaly", 10, 10, 50, 50), ("b", "No finding", 0, 0, 1, 1)])
    path = write_csv(truth, tmp_path / "truth.csv")
    assert ",,,,,," in path.read_text()  # c: listed without rows
    back = read_truth(path)
    assert sorted(back.images) == ["a", "b", "c"] and back.image_id.tolist() == ["a", "b"] and not back.problems
    pred = write(tmp_path / "pred.csv", "image_id,label,score,x_min,y_min,x_max,y_max\n"
                 "a,Cardiomegaly,0.9,10,10,50,50\nb,No finding,0.8,0,0,1,1\nc,Cardiomegaly,0.7,10,10,50,50\n")
    parser = argparse.ArgumentParser(prog="thoracic")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--pred", str(pred), "--truth", str(path), "--all-truth", "--no-coco",
                              "--bootstrap", "0", "--out", str(tmp_path / "eval")])
    assert args.func(args) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # c has no truth rows: the Kaggle mAP does not score its prediction (a perfect 1.0)
    assert metrics["map"] == pytest.approx(kaggle_map(back, read_predictions(pred)).map) == pytest.approx(1.0)


def test_read_errors(tmp_path):
    with pytest.raises(ConfigError, match="missing column"):
        read_predictions(write(tmp_path / "p.csv", "image_id,label,x_min\n"))
    with pytest.raises(ConfigError, match="empty file"):
        read_truth(write(tmp_path / "t.csv", ""))
    with pytest.raises(ReadError):
        read_truth(tmp_path / "absent.csv")


def test_read_sizes_duplicates(tmp_path):
    sizes, problems = read_image_sizes(write(tmp_path / "s.csv", "image_id,width,height\na,10,20\na,11,20\nb,x,2\n"))
    assert sizes == {"a": (10, 20)}
    assert kinds(problems) == {"duplicate image id": 1, "bad size": 1}


# --- evaluate ----------------------------------------------------------------------------------
def table(rows, images=None, scored=False):
    ids = images or sorted({r[0] for r in rows})
    if scored:  # (image, label, score, box) -> Annotations row order
        rows = [(i, lab, *box, "", s) for i, lab, s, *box in rows]
    return Annotations.from_rows([ImageInfo(i) for i in ids], rows)


TRUTH = [
    ("a", "Cardiomegaly", 100, 100, 300, 250),
    ("a", "Nodule/Mass", 10, 10, 40, 40),
    ("b", "Nodule/Mass", 50, 60, 70, 90),
    ("c", "No finding", 0, 0, 1, 1),
    ("d", "No finding", 0, 0, 1, 1),
]
PREDS = [
    ("a", "Cardiomegaly", 0.9, 105, 95, 310, 250),
    ("a", "Nodule/Mass", 0.8, 12, 10, 40, 44),
    ("a", "No finding", 0.2, 0, 0, 1, 1),
    ("b", "Nodule/Mass", 0.3, 200, 200, 230, 230),
    ("b", "No finding", 0.6, 0, 0, 1, 1),
    ("c", "Nodule/Mass", 0.7, 5, 5, 30, 30),
    ("c", "No finding", 0.4, 0, 0, 1, 1),
    ("zz", "Nodule/Mass", 0.99, 10, 10, 40, 40),
]  # "d" has no predictions


def test_evaluate_hand_computed():
    result = evaluate(table(TRUTH), table(PREDS, scored=True), EvaluationConfig(bootstrap=0, coco=False))
    m = result.metrics
    assert tuple(m) == METRICS_KEYS
    assert m["images"] == 4 and m["image_counts"]["without_predictions"] == 1
    # Nodule/Mass: 2 truth; ranked 0.8 hit, 0.7 miss (c), 0.3 miss (b): AP 1/2.
    # No finding: 2 truth (c, d); ranked 0.6 (b) miss, 0.4 (c) hit, 0.2 (a) miss: AP 1/2 * 1/2.
    assert m["ap"] == {"Cardiomegaly": 1.0, "No finding": 0.25, "Nodule/Mass": 0.5}
    assert m["map"] == pytest.approx((1 + 0.25 + 0.5) / 3)
    assert m["findings_map"] == pytest.approx((1 + 0.5) / 2)  # "No finding" left out
    ref = kaggle_map(table(TRUTH), table(PREDS, scored=True))
    assert m["map"] == ref.map and m["image_counts"]["ignored_predictions"] == ref.ignored_predictions == 1
    # at 0.5: Nodule/Mass TP 1 (0.8), FP 1 (0.7), FN 1
    nm = m["prf"]["at_threshold"]["Nodule/Mass"]
    assert (nm["tp"], nm["fp"], nm["fn"], nm["precision"], nm["recall"]) == (1, 1, 1, 0.5, 0.5)
    assert m["prf"]["best_f1"]["Nodule/Mass"]["threshold"] == 0.8
    # P(abnormal): a 0.8, b 0.4, c 0.6, d 0 (no prediction: note). Truth abnormal: a, b.
    # Called abnormal at 0.5: a, c -> right on a, d: accuracy 2/4. AUC: (a > c, a > d, b < c, b > d) = 3/4.
    assert m["accuracy"]["abnormal"] == 0.5
    assert m["auc"]["abnormal"] == 0.75
    # Nodule/Mass image scores a .8, b .3, c .7, d 0; positives a, b: pairs (a>c, a>d, b<c, b>d) -> 3/4
    assert m["auc"]["per_class"]["Nodule/Mass"] == 0.75
    assert m["auc"]["per_class"]["Cardiomegaly"] == 1.0
    # FROC over the 3 finding boxes on 4 images; ranked hit .9, hit .8, miss .7, miss .3
    assert m["froc"]["sensitivity"][:3] == [2 / 3, 2 / 3, 2 / 3]
    assert m["problem_counts"] == {"unknown image": 1}
    assert m["problems"][0]["image_id"] == "zz"
    assert any("no 'No finding' prediction" in n for n in m["notes"])
    assert m["distribution"]["Nodule/Mass"] == {"truth_boxes": 2, "predicted_boxes": 2, "truth_images": 2, "predicted_images": 2}


def test_evaluate_perfect_predictions_and_json_is_strict():
    preds = [(i, lab, 1.0 if lab != "No finding" else 0.0, *box) for i, lab, *box in TRUTH if lab != "No finding"]
    preds += [(i, "No finding", 1.0, 0, 0, 1, 1) for i in "cd"] + [(i, "No finding", 0.0, 0, 0, 1, 1) for i in "ab"]
    result = evaluate(table(TRUTH), table(preds, scored=True), EvaluationConfig(bootstrap=50, coco=False))
    m = result.metrics
    assert m["map"] == 1.0 and m["auc"]["abnormal"] == 1.0 and m["accuracy"]["abnormal"] == 1.0
    assert m["accuracy"]["exact_match"] == 1.0
    assert m["ci95"]["map"] == [1.0, 1.0]
    text = result.to_json()
    json.loads(text)  # strict JSON: no NaN
    assert "NaN" not in text
    # an AUC that is undefined is null with a note
    assert m["auc"]["per_class"]["Cardiomegaly"] == 1.0


def test_undefined_numbers_are_null_with_a_note():
    truth = [("a", "Cardiomegaly", 0, 0, 10, 10), ("b", "Cardiomegaly", 0, 0, 10, 10)]
    preds = [("a", "Cardiomegaly", 0.9, 0, 0, 10, 10)]
    m = evaluate(table(truth), table(preds, scored=True), EvaluationConfig(bootstrap=20, coco=False)).metrics
    assert m["auc"]["per_class"]["Cardiomegaly"] is None
    assert m["auc"]["abnormal"] is None
    assert any("Cardiomegaly" in n and "null" in n for n in m["notes"])
    assert m["ci95"]["auc"]["per_class"]["Cardiomegaly"] is None


def test_bootstrap_in_evaluate_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(5)
    truth, preds = [], []
    for k in range(120):
        img = f"i{k}"
        if rng.random() < 0.5:
            truth.append((img, "No finding", 0, 0, 1, 1))
            preds.append((img, "No finding", float(rng.beta(5, 2)), 0, 0, 1, 1))
            continue
        box = (50.0, 50.0, 150.0, 150.0)
        truth.append((img, "Nodule/Mass", *box))
        if rng.random() < 0.8:
            preds.append((img, "Nodule/Mass", float(rng.beta(4, 2)), 52.0, 50.0, 150.0, 148.0))
        preds.append((img, "Nodule/Mass", float(rng.beta(2, 4)), 300.0, 300.0, 350.0, 350.0))
        preds.append((img, "No finding", float(rng.beta(2, 5)), 0, 0, 1, 1))
    cfg = EvaluationConfig(bootstrap=300, seed=1, coco=False)
    a = evaluate(table(truth), table(preds, scored=True), cfg).metrics
    b = evaluate(table(truth), table(preds, scored=True), cfg).metrics
    assert a["ci95"] == b["ci95"]
    lo, hi = a["ci95"]["map"]
    assert lo <= a["map"] <= hi and hi - lo < 0.3
    lo, hi = a["ci95"]["auc"]["abnormal"]
    assert lo <= a["auc"]["abnormal"] <= hi
    lo, hi = a["ci95"]["froc_mean"]
    assert lo <= a["froc"]["mean"] <= hi
    c = evaluate(table(truth), table(preds, scored=True), EvaluationConfig(bootstrap=300, seed=2, coco=False)).metrics
    assert c["ci95"]["map"] != a["ci95"]["map"]


def _random_case(seed: int, n: int = 40):
    """Truth and predictions of ``n`` images: "No finding", Nodule/Mass and Cardiomegaly, continuous scores."""
    rng = np.random.default_rng(seed)
    truth, preds = [], []
    for k in range(n):
        img = f"i{k}"
        if rng.random() < 0.4:
            truth.append((img, "No finding", 0, 0, 1, 1))
            preds.append((img, "No finding", float(rng.random()), 0, 0, 1, 1))
            preds.append((img, "Nodule/Mass", float(rng.random()), 300.0, 300.0, 350.0, 350.0))
            continue
        label = "Nodule/Mass" if rng.random() < 0.6 else "Cardiomegaly"
        truth.append((img, label, 50.0, 50.0, 150.0, 150.0))
        if rng.random() < 0.7:
            preds.append((img, label, float(rng.random()), 52.0, 50.0, 150.0, 148.0))
        preds.append((img, label, float(rng.random()), 300.0, 300.0, 350.0, 350.0))
        preds.append((img, "No finding", float(rng.random()), 0, 0, 1, 1))
    return truth, preds


def _repeated(rows, weights, images, scored=False):
    """The table with image ``images[i]`` repeated ``weights[i]`` times (copies renamed ``<id>#<r>``)."""
    index = {im: i for i, im in enumerate(images)}
    out = [(f"{r[0]}#{c}", *r[1:]) for r in rows if r[0] in index for c in range(int(weights[index[r[0]]]))]
    ids = [f"{im}#{c}" for i, im in enumerate(images) for c in range(int(weights[i]))]
    return table(out, images=ids, scored=scored)


def _percentile_interval(values):
    v = np.asarray([x for x in values if np.isfinite(x)])
    return float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))


def _findings_mean(ap):
    v = [a for lab, a in ap.items() if lab != "No finding"]
    return float(np.mean(v)) if v else math.nan


def test_findings_map_and_its_interval_equal_the_metric_on_resampled_images():
    truth, preds = _random_case(3)
    images = sorted({r[0] for r in truth})
    cfg = EvaluationConfig(bootstrap=60, seed=4, coco=False)
    m = evaluate(table(truth, images), table(preds, scored=True), cfg).metrics
    assert m["findings_map"] == pytest.approx((m["ap"]["Cardiomegaly"] + m["ap"]["Nodule/Mass"]) / 2)
    assert m["findings_map"] != pytest.approx(m["map"])
    # the same resamples by brute force: each image's rows repeated as often as it was drawn
    brute = []
    for w in np.vstack(list(resample_weights(len(images), cfg.bootstrap, cfg.seed))):
        brute.append(_findings_mean(kaggle_map(_repeated(truth, w, images), _repeated(preds, w, images, True)).ap))
    assert m["ci95"]["findings_map"] == pytest.approx(_percentile_interval(brute), abs=1e-9)
    lo, hi = m["ci95"]["findings_map"]
    assert lo <= m["findings_map"] <= hi
    assert "findings-only mAP" in markdown_summary(m)


def test_the_paired_difference_and_its_interval_equal_the_metric_on_resampled_images():
    """a minus the mean of b, every resample scoring all three tables: by brute force too."""
    truth, preds = _random_case(5)
    images = sorted({r[0] for r in truth})
    rng = np.random.default_rng(8)
    worse = [r for r in preds if rng.random() < 0.7]  # some hits dropped
    shuffled = [(*r[:2], float(rng.random()), *r[3:]) for r in preds]  # scores redrawn
    cfg = EvaluationConfig(bootstrap=40, seed=3, coco=False)
    t = table(truth, images)
    d = evaluate_difference(t, [table(preds, scored=True)], [table(worse, scored=True), table(shuffled, scored=True)], cfg)
    one = [evaluate(t, table(x, scored=True), EvaluationConfig(bootstrap=0, coco=False)).metrics for x in (preds, worse, shuffled)]
    assert d["map"]["a"] == pytest.approx(one[0]["map"])
    assert d["map"]["b"] == pytest.approx((one[1]["map"] + one[2]["map"]) / 2)
    assert d["map"]["difference"] == pytest.approx(d["map"]["a"] - d["map"]["b"])
    assert d["auc_abnormal"]["difference"] == pytest.approx(
        one[0]["auc"]["abnormal"] - (one[1]["auc"]["abnormal"] + one[2]["auc"]["abnormal"]) / 2)
    brute = []
    for w in np.vstack(list(resample_weights(len(images), cfg.bootstrap, cfg.seed))):
        maps = [kaggle_map(_repeated(truth, w, images), _repeated(x, w, images, True)).map for x in (preds, worse, shuffled)]
        brute.append(maps[0] - (maps[1] + maps[2]) / 2)
    assert d["ci95"]["map"] == pytest.approx(_percentile_interval(brute), abs=1e-9)
    assert d["ci95"]["resamples_above_zero"]["map"] == pytest.approx(np.mean(np.array(brute) > 0))
    with pytest.raises(ConfigError, match="on each side"):
        evaluate_difference(t, [], [table(preds, scored=True)], cfg)


def test_a_resample_without_a_rare_class_keeps_that_class_in_the_map():
    """The mAP averages over the classes of the whole truth. A resample that misses the one image of
    a rare class used to drop that class from its mean, so the interval moved up (a class with one
    box is missing from ~37 % of resamples, and such classes mostly score AP 0): here every
    Cardiomegaly box is found (AP 1) and the one Nodule/Mass box missed (AP 0), mAP 0.5 on every
    resample; the interval was [0.5, 1.0]."""
    images = [f"i{k}" for k in range(30)]
    truth = [(i, "Cardiomegaly", 10.0, 10.0, 60.0, 60.0) for i in images[:29]] + [("i29", "Nodule/Mass", 5.0, 5.0, 15.0, 15.0)]
    preds = [(i, "Cardiomegaly", 0.9, 10.0, 10.0, 60.0, 60.0) for i in images[:29]]
    preds.append(("i29", "Nodule/Mass", 0.8, 70.0, 70.0, 90.0, 90.0))
    m = evaluate(table(truth, images), table(preds, scored=True), EvaluationConfig(bootstrap=200, seed=1, coco=False)).metrics
    assert m["map"] == pytest.approx(0.5) and m["ap"]["Nodule/Mass"] == 0.0
    assert m["ci95"]["map"] == pytest.approx([0.5, 0.5])
    assert m["ci95"]["findings_map"] == pytest.approx([0.5, 0.5])


def test_the_map_interval_scores_only_images_with_truth_rows_as_the_map_does():
    """Images listed in the truth without any row (an image whose findings have no boxes) are not
    scored by the Kaggle mAP: predictions on them are ignored. The bootstrap did count them as
    false positives, so the interval lay below the estimate (on a real 4-fold CV: 0.1185 outside
    [0.0847, 0.1081]). Now every resample scores what the metric scores, by brute force too, and
    evaluate_mean's point values are evaluate's."""
    truth, preds = _random_case(11)
    scored_images = sorted({r[0] for r in truth})
    unscored = [f"u{k}" for k in range(12)]  # in the truth's image list, without rows
    rng = np.random.default_rng(2)
    for img in unscored:
        preds.append((img, "No finding", float(rng.random()), 0, 0, 1, 1))
        preds.append((img, "Nodule/Mass", float(rng.random()), 52.0, 50.0, 150.0, 148.0))
    images = scored_images + unscored
    cfg = EvaluationConfig(bootstrap=60, seed=4, coco=False)
    m = evaluate(table(truth, images), table(preds, scored=True), cfg).metrics
    brute = {"map": [], "findings_map": []}
    for w in np.vstack(list(resample_weights(len(images), cfg.bootstrap, cfg.seed))):
        ap = kaggle_map(_repeated(truth, w, images), _repeated(preds, w, images, True)).ap
        brute["map"].append(float(np.mean(list(ap.values()))))
        brute["findings_map"].append(_findings_mean(ap))
    for key, values in brute.items():
        assert m["ci95"][key] == pytest.approx(_percentile_interval(values), abs=1e-9), key
        lo, hi = m["ci95"][key]
        assert lo <= m[key] <= hi, key
    got = evaluate_mean(table(truth, images), [table(preds, scored=True)], cfg)
    assert got["map"]["values"] == pytest.approx([m["map"]])
    assert got["ap"]["No finding"]["values"] == pytest.approx([m["ap"]["No finding"]])


def test_findings_map_is_null_with_a_note_when_the_truth_has_no_finding():
    truth = [("a", "No finding", 0, 0, 1, 1), ("b", "No finding", 0, 0, 1, 1)]
    preds = [("a", "No finding", 0.9, 0, 0, 1, 1), ("b", "Cardiomegaly", 0.4, 0, 0, 10, 10)]
    m = evaluate(table(truth), table(preds, scored=True), EvaluationConfig(bootstrap=10, coco=False)).metrics
    assert m["findings_map"] is None and m["ci95"]["findings_map"] is None
    assert any(n.startswith("findings_map is null") for n in m["notes"])


def test_evaluate_mean_scores_each_member_as_evaluate_and_bootstraps_their_mean():
    truth, preds = _random_case(7)
    _, other = _random_case(8)  # another model's predictions: the scores and hits of seed 8 on the same images
    other = [r for r in other if r[0] in {t[0] for t in truth}]
    images = sorted({r[0] for r in truth})
    cfg = EvaluationConfig(bootstrap=40, seed=5, coco=False)
    members = [table(preds, scored=True), table(other, scored=True)]
    got = evaluate_mean(table(truth, images), members, cfg)
    each = [evaluate(table(truth, images), p, EvaluationConfig(bootstrap=0, coco=False)).metrics for p in members]
    assert got["members"] == 2 and got["images"] == len(images)
    for key, value in (("map", lambda x: x["map"]), ("findings_map", lambda x: x["findings_map"]),
                       ("auc_abnormal", lambda x: x["auc"]["abnormal"])):
        values = [value(x) for x in each]
        assert got[key]["values"] == pytest.approx(values)
        assert got[key]["mean"] == pytest.approx(np.mean(values))
        assert got[key]["sd"] == pytest.approx(np.std(values, ddof=1))
        assert (got[key]["min"], got[key]["max"]) == pytest.approx((min(values), max(values)))
    assert got["ap"]["Cardiomegaly"]["values"] == pytest.approx([x["ap"]["Cardiomegaly"] for x in each])
    # the interval of the mean: every resample scores both members
    brute = {"map": [], "findings_map": []}
    for w in np.vstack(list(resample_weights(len(images), cfg.bootstrap, cfg.seed))):
        t = _repeated(truth, w, images)
        aps = [kaggle_map(t, _repeated(rows, w, images, True)).ap for rows in (preds, other)]
        brute["map"].append(np.mean([np.mean(list(a.values())) for a in aps]))
        brute["findings_map"].append(np.mean([_findings_mean(a) for a in aps]))
    for key, values in brute.items():
        assert got["ci95"][key] == pytest.approx(_percentile_interval(values), abs=1e-9)
    # one member: the mean's interval is that member's own
    one = evaluate_mean(table(truth, images), members[:1], cfg)
    own = evaluate(table(truth, images), members[0], cfg).metrics["ci95"]
    assert one["ci95"]["map"] == pytest.approx(own["map"]) and one["map"]["sd"] is None
    assert one["ci95"]["findings_map"] == pytest.approx(own["findings_map"])
    assert one["ci95"]["auc_abnormal"] == pytest.approx(own["auc"]["abnormal"])
    assert one["ci95"]["ap"]["Nodule/Mass"] == pytest.approx(own["ap"]["Nodule/Mass"])
    json.dumps(got, allow_nan=False)


def test_evaluate_mean_refuses_no_members():
    with pytest.raises(ConfigError, match="at least one"):
        evaluate_mean(table(TRUTH), [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"iou": 1.5}, "iou"), ({"bootstrap": -1}, "bootstrap"), ({"level": 1.0}, "level"), ({"froc_rates": (0,)}, "froc")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        EvaluationConfig(**kwargs)


def test_empty_truth_is_an_error():
    with pytest.raises(ConfigError, match="nothing to score"):
        evaluate(table([], images=["a"]), table(PREDS, scored=True))


def test_coco_in_evaluate(require):
    require("pycocotools")
    m = evaluate(table(TRUTH), table(PREDS, scored=True), EvaluationConfig(bootstrap=0)).metrics
    assert 0 < m["coco"]["map"] <= m["coco"]["map50"] <= 1


# --- CLI and report ----------------------------------------------------------------------------
def cli(*argv: str) -> int:
    from thoracic.cli.evaluate import add_parser

    parser = argparse.ArgumentParser(prog="thoracic")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def files(tmp_path):
    truth = write(tmp_path / "truth.csv", "image_id,label,x_min,y_min,x_max,y_max,reader\n" + "".join(
        f"{i},{lab},{x0},{y0},{x1},{y1},{r}\n" for i, lab, x0, y0, x1, y1 in TRUTH for r in ("R1", "R2")))
    preds = write(tmp_path / "preds.csv", PRED_HEADER + "".join(",".join(map(str, p)) + "\n" for p in PREDS)
                  + "a,Not a label,0.5,1,1,2,2\n")
    return truth, preds


def test_cli_evaluate_writes_metrics_and_report(files, tmp_path, capsys, require):
    require("matplotlib")
    truth, preds = files
    out = tmp_path / "out"
    # a label outside the schema: nothing is scored until --label-map maps or drops it
    assert cli("evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(out), "--no-coco") == 2
    err = capsys.readouterr().err
    assert "1 label(s) outside the schema" in err and "'Not a label' (predictions 1 rows)" in err, err
    assert "map them with --label-map FILE" in err and not out.exists()
    mapped = ["--label-map", str(write(tmp_path / "map.csv", "from,to\nNot a label,\n"))]
    rc = cli("evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(out), "--bootstrap", "30",
             "--no-coco", "--report", *mapped)
    assert rc == 0
    printed = capsys.readouterr()
    assert "Kaggle mAP@0.4" in printed.out and "dropped by label map 1" in printed.err
    # "d" was not predicted: left out (--all-truth scores it as a miss); "zz" is not in the truth
    assert "1 truth image(s) were not predicted; scored 3; --all-truth scores them as misses" in printed.err
    assert "warning: 1 of the 4 predicted image(s) are not in the truth, e.g. zz" in printed.err
    m = json.loads((out / "metrics.json").read_text())
    for key in ("iou", "images", "map", "ap", "coco", "prf", "auc", "froc", "ci95", "problems"):
        assert key in m
    # two identical readers fused with WBF: the same truth as one reader
    predicted = [r for r in TRUTH if r[0] != "d"]
    assert m["map"] == pytest.approx(kaggle_map(table(predicted), table(PREDS, scored=True)).map)
    assert "truth of 2 readers fused with wbf" in m["notes"]
    assert (out / "metrics.md").read_text().startswith("# Evaluation (3 images")
    assert_self_contained((out / "report.html").read_text())
    assert cli("evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(tmp_path / "every"), "--bootstrap",
               "0", "--no-coco", "--all-truth", *mapped) == 0
    every = json.loads((tmp_path / "every" / "metrics.json").read_text())
    assert every["images"] == 4
    assert every["map"] == pytest.approx(kaggle_map(table(TRUTH), table(PREDS, scored=True)).map)
    # unfused: every reader's box counts, so recall halves
    rc = cli("evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(tmp_path / "raw"), "--bootstrap", "0",
             "--no-coco", "--fusion", "none", *mapped)
    assert rc == 0
    raw = json.loads((tmp_path / "raw" / "metrics.json").read_text())
    assert raw["ap"]["Cardiomegaly"] == 0.5


def test_cli_refuses_labels_outside_the_schema_and_counts_them(tmp_path, capsys):
    from thoracic.cli.main import main

    truth = write(tmp_path / "truth.csv", TRUTH_HEADER + "a,Effusion,10,10,20,20\na,Effusion,30,30,40,40\n"
                  "b,No finding,,,,\nc,Mass,1,1,5,5\n")
    preds = write(tmp_path / "preds.csv", PRED_HEADER + "a,Effusion,0.9,10,10,20,20\na,No finding,0.1,0,0,1,1\n"
                  "b,No finding,0.9,0,0,1,1\nc,Nodule/Mass,0.8,1,1,5,5\nc,No finding,0.2,0,0,1,1\n")
    out = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(out), "--no-coco"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("error: 2 label(s) outside the schema (the 14 VinDr findings and 'No finding'): 'Effusion' "
                    "(truth 2, predictions 1 rows), 'Mass' (truth 1 rows); map them with --label-map FILE (a CSV "
                    "from,to; an empty 'to' drops a label; see docs/evaluation/README.md)")]
    assert not out.exists()
    label_map = write(tmp_path / "map.csv", "from,to\nEffusion,Pleural effusion\nMass,Nodule/Mass\n")
    assert main(["evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(out), "--no-coco",
                 "--bootstrap", "0", "--label-map", str(label_map)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_truth"]["Pleural effusion"] == 2 and m["ap"]["Nodule/Mass"] == 1.0
    assert "unknown label" not in m["problem_counts"]


def test_cli_bad_input_exits_2(tmp_path, capsys):
    bad = write(tmp_path / "bad.csv", "image_id,foo\n")
    rc = cli("evaluate", "--pred", str(bad), "--truth", str(bad), "--out", str(tmp_path / "o"))
    assert rc == 2
    assert "missing column" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="2"):  # no such metrics: a usage error (tests/cli/test_args.py)
        cli("report", "--metrics", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.html"))
    (tmp_path / "bad.json").write_text("{not json")
    assert cli("report", "--metrics", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r.html")) == 2


def test_cli_report_from_metrics_dir_with_overlays(files, tmp_path, require, capsys):
    require("matplotlib")
    from PIL import Image

    truth, preds = files
    out = tmp_path / "out"
    mapped = ["--label-map", str(write(tmp_path / "map.csv", "from,to\nNot a label,\n"))]
    assert cli("evaluate", "--pred", str(preds), "--truth", str(truth), "--out", str(out), "--bootstrap", "0", "--no-coco",
               *mapped) == 0
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.tile(np.arange(320, dtype=np.uint8)[None, :] // 2, (320, 1))).save(images / "a.png")
    html = tmp_path / "report.html"
    report = ["report", "--metrics", str(out), "--pred", str(preds), "--truth", str(truth), "--images", str(images),
              "--out", str(html)]
    capsys.readouterr()
    assert cli(*report) == 2  # the report's tables are read as evaluate reads them
    assert "'Not a label' (predictions 1 rows)" in capsys.readouterr().err and not html.exists()
    assert cli(*report, *mapped) == 0
    text = html.read_text()
    assert_self_contained(text)
    assert "<figcaption>a</figcaption>" in text


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("img", "script", "iframe") and "src" in a:
            self.srcs.append(a["src"] or "")
        if tag == "link":
            self.links.append(a.get("href") or "")
        if "id" in a and tag == "section":
            self.ids.append(a["id"] or "")


def assert_self_contained(text: str) -> None:
    p = _Collect()
    p.feed(text)
    assert p.ids == list(SECTIONS)
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert not p.links and "http://" not in text and "https://" not in text
    for s in p.srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_without_curves_or_images(require):
    require("matplotlib")
    m = evaluate(table(TRUTH), table(PREDS, scored=True), EvaluationConfig(bootstrap=0, coco=False)).metrics
    text = render_report(m)
    assert "No curve data" in text and "No overlays" in text


def test_write_results(tmp_path):
    result = evaluate(table(TRUTH), table(PREDS, scored=True), EvaluationConfig(bootstrap=0, coco=False))
    paths = write_results(result, tmp_path / "o")
    assert sorted(p.name for p in paths.values()) == ["curves.json", "metrics.json", "metrics.md"]
    curves = json.loads(paths["curves"].read_text())
    assert set(curves) >= {"pr", "roc", "roc_abnormal", "froc", "confusion", "scores", "p_abnormal", "bins"}


# --- real labels -------------------------------------------------------------------------------
def _vinbigdata_csv() -> Path | None:
    spec = importlib.util.find_spec("torchxrayvision")  # locates the package without importing torch
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "vinbigdata-train.csv.gz"
    return path if path.exists() else None


@pytest.fixture(scope="module")
def vinbigdata_subset(tmp_path_factory):
    import gzip
    import os

    src = _vinbigdata_csv()
    if src is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("torchxrayvision (with data/vinbigdata-train.csv.gz) is required in CI")
        pytest.skip("torchxrayvision is not installed")
    lines = gzip.decompress(src.read_bytes()).decode().splitlines()
    images = sorted({line.split(",", 1)[0] for line in lines[1:]})[:300]
    keep = set(images)
    path = tmp_path_factory.mktemp("vbd") / "train.csv"
    path.write_text("\n".join([lines[0], *(x for x in lines[1:] if x.split(",", 1)[0] in keep)]) + "\n")
    return path


def test_real_labels_one_reader_against_the_others(vinbigdata_subset, tmp_path):
    """Real VinBigData rows: one reader's boxes (score 1) scored against the others; the CLI runs."""
    t = read_truth(vinbigdata_subset)
    assert len(t.images) == 300 and set(t.reader.tolist()) > {"R8", "R9"}
    first = {}
    for image, reader in zip(t.image_id.tolist(), t.reader.tolist()):
        first.setdefault(image, reader)
    mine = np.array([first[i] == r for i, r in zip(t.image_id.tolist(), t.reader.tolist())])
    preds = t.subset(mine)
    preds = Annotations(preds.images, preds.image_id, preds.label, preds.boxes, None, np.ones(len(preds)))
    m = evaluate(t.subset(~mine), preds, EvaluationConfig(bootstrap=100, coco=False)).metrics
    assert 0.0 < m["map"] < 1.0
    assert 0.5 < m["prf"]["at_threshold"]["No finding"]["precision"] <= 1.0
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    assert not math.isnan(m["ci95"]["map"][0])


def test_report_overlays_on_the_bundled_nih_samples(samples_dir, tmp_path, require):
    """Real radiographs with their real NIH boxes: every sample is drawn, the page stays self-contained."""
    require("matplotlib")
    truth = read_truth(samples_dir / "boxes.csv")
    rows = [(i, lab, 0.8, *(box + 5)) for i, lab, box in zip(truth.image_id, truth.label, truth.boxes)]
    rows += [(i, "No finding", 0.1, 0, 0, 1, 1) for i in truth.images]
    preds = table(rows, images=sorted(truth.images), scored=True)
    result = evaluate(truth, preds, EvaluationConfig(bootstrap=0, coco=False))
    assert result.map == 1.0
    text = render_report(result.metrics, result.curves, truth, preds, samples_dir, samples=3)
    assert_self_contained(text)
    assert text.count("<figure>") == 3
