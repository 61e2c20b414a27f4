"""Detection, classification and bootstrap metrics: hand-computed cases and reference libraries."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import numpy as np
import pytest

from thoracic.data import Annotations, ImageInfo
from thoracic.errors import ConfigError
from thoracic.evaluate import (
    average_precision,
    best_f1,
    bootstrap_intervals,
    class_confusion,
    coco_map,
    froc,
    image_matrix,
    kaggle_map,
    match,
    pr_curve,
    prf,
    resample_weights,
    roc_auc,
    roc_curve,
)
from thoracic.evaluate.bootstrap import weighted_ap, weighted_auc, weighted_froc
from thoracic.evaluate.coco import coco_inputs

BOX = (10.0, 10.0, 20.0, 20.0)


def table(image, label, boxes, scores=None, images=None) -> Annotations:
    """Truth (no ``scores``) or predictions as a table; its images are ``images`` or those of its rows."""
    ids = sorted(set(images or []) | set(image))
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    return Annotations({i: ImageInfo(i) for i in ids}, image, label, boxes, None, scores)


# --- precision / recall / F1 -------------------------------------------------------------------
def test_prf_hand_computed():
    # scores 0.9 hit, 0.6 miss, 0.3 hit; 3 truth boxes. At 0.5: TP 1, FP 1, FN 2.
    out = prf([0.9, 0.6, 0.3], [True, False, True], 3, 0.5)
    assert out == {"threshold": 0.5, "tp": 1, "fp": 1, "fn": 2, "precision": 0.5, "recall": 1 / 3, "f1": 0.4}
    # At 0: TP 2, FP 1, FN 1: P 2/3, R 2/3, F1 2/3. The threshold is inclusive.
    out = prf([0.9, 0.6, 0.3], [True, False, True], 3, 0.3)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 1)
    assert out["f1"] == pytest.approx(2 / 3)


def test_prf_undefined_ratios_are_none():
    assert prf([], [], 2, 0.5) == {"threshold": 0.5, "tp": 0, "fp": 0, "fn": 2, "precision": None, "recall": 0.0, "f1": 0.0}
    none = prf([], [], 0, 0.5)
    assert none["precision"] is None and none["recall"] is None and none["f1"] is None
    assert prf([0.7], [False], 0, 0.5)["f1"] == 0.0


def test_best_f1_threshold():
    # Ranked hit(0.9) miss(0.8) hit(0.7) miss(0.6), 2 truth: F1 = 2/3, 1/2, 4/5, 2/3 -> 0.7.
    out = best_f1([0.6, 0.9, 0.7, 0.8], [False, True, True, False], 2)
    assert out["threshold"] == 0.7 and out["f1"] == pytest.approx(0.8)
    assert (out["tp"], out["fp"], out["fn"]) == (2, 1, 0)


def test_best_f1_ties_and_empty():
    # Tied scores are one threshold: a cut cannot separate them.
    out = best_f1([0.5, 0.5], [True, False], 1)
    assert out["threshold"] == 0.5 and out["f1"] == pytest.approx(2 / 3)
    assert best_f1([], [], 3)["threshold"] is None
    # Equal F1 at two thresholds: the higher one wins.
    assert best_f1([0.9, 0.8], [True, False], 2)["threshold"] == 0.9


def test_pr_curve_points():
    c = pr_curve([0.9, 0.8, 0.8, 0.1], [True, False, True, False], 4)
    np.testing.assert_allclose(c["threshold"], [0.9, 0.8, 0.1])
    np.testing.assert_allclose(c["precision"], [1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(c["recall"], [0.25, 0.5, 0.5])


# --- FROC --------------------------------------------------------------------------------------
def test_froc_hand_computed():
    # 4 truth boxes on 2 images. Ranked: hit, miss, hit, miss, miss, hit.
    # FP/image after each: 0, .5, .5, 1, 1.5, 1.5; sensitivity .25, .25, .5, .5, .5, .75.
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    hits = [True, False, True, False, False, True]
    out = froc(scores, hits, 4, 2, rates=[0.125, 0.5, 1, 2, 8])
    assert out["sensitivity"] == [0.25, 0.5, 0.5, 0.75, 0.75]
    assert out["mean"] == pytest.approx(2.75 / 5)


def test_froc_first_prediction_already_too_many_false_positives():
    out = froc([0.9, 0.8], [False, True], 1, 1, rates=[0.5, 1])
    assert out["sensitivity"] == [0.0, 1.0]
    assert froc([0.9], [False], 0, 1)["mean"] is None
    with pytest.raises(ConfigError):
        froc([0.9], [True], 1, 0)


# --- matching ----------------------------------------------------------------------------------
def _random_case(rng: np.random.Generator, n_images: int = 6, n_truth: int = 25, n_preds: int = 60):
    labels = np.array(["Aortic enlargement", "Cardiomegaly", "Nodule/Mass", "No finding"], dtype=object)
    ti = rng.integers(0, n_images, n_truth)
    tl = labels[rng.integers(0, 4, n_truth)]
    xy = rng.integers(0, 30, (n_truth, 2)).astype(float)
    tb = np.c_[xy, xy + rng.integers(2, 12, (n_truth, 2))]
    # predictions: jittered truth boxes or random ones
    src = rng.integers(0, n_truth, n_preds)
    pi = np.where(rng.random(n_preds) < 0.8, ti[src], rng.integers(0, n_images, n_preds))
    pl = np.where(rng.random(n_preds) < 0.8, tl[src], labels[rng.integers(0, 4, n_preds)])
    pb = tb[src] + rng.integers(-2, 3, (n_preds, 4))
    pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
    ps = rng.permutation(n_preds) / n_preds + 0.001
    img = np.array([f"i{k}" for k in range(n_images)], dtype=object)
    return img[ti], tl, tb, img[pi], pl, ps, pb


@pytest.mark.parametrize("seed", range(8))
def test_match_gives_the_kaggle_ap(seed):
    ti, tl, tb, pi, pl, ps, pb = _random_case(np.random.default_rng(seed))
    truth, preds = table(ti, tl, tb), table(pi, pl, pb, ps)
    matched, taken = match(truth, preds, 0.4)
    ref = kaggle_map(truth, preds)
    for lab, ap in ref.ap.items():
        sel = pl == lab
        assert average_precision(ps[sel], matched[sel], ref.n_truth[lab]) == pytest.approx(ap, abs=1e-12)
    # each truth box taken at most once, by a prediction of its own image and class
    got = taken[taken >= 0]
    assert got.size == np.unique(got).size == matched.sum()
    assert (ti[got] == pi[matched]).all() and (tl[got] == pl[matched]).all()


def test_match_greedy_takes_best_iou():
    truth = table(["a", "a"], ["Nodule/Mass"] * 2, [[0, 0, 10, 10], [4, 0, 14, 10]])
    preds = table(["a", "a"], ["Nodule/Mass"] * 2, [[0, 0, 10, 10], [1, 0, 11, 10]], [0.9, 0.8])
    matched, taken = match(truth, preds, 0.4)
    assert matched.tolist() == [True, False] and taken.tolist() == [0, -1]


def test_class_confusion_counts():
    labels = [A, B] = ["Atelectasis", "Cardiomegaly"]
    # truth: A and B on image x; preds: B on the A box (confused), B on the B box (right),
    # A on empty space (background), and a low-scored A ignored by the score threshold.
    cm = class_confusion(
        table(["x", "x", "y"], [A, B, A], [[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 5, 5]]),
        table(["x", "x", "x", "x"], [B, B, A, A],
              [[0, 0, 10, 10], [50, 50, 60, 60], [100, 100, 110, 110], [0, 0, 5, 5]], [0.9, 0.8, 0.7, 0.1]),
        0.4, 0.5, labels,
    )
    # rows truth A, B, background; columns predicted A, B, missed
    assert cm.tolist() == [[0, 1, 1], [0, 1, 0], [1, 0, 0]]


# --- ROC-AUC -----------------------------------------------------------------------------------
def test_roc_auc_hand_computed_with_ties():
    # positives 0.9, 0.5; negatives 0.5, 0.1: pairs >, >, =, > -> 3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == 0.875
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([1, 0], [0.2, 0.8]) == 0.0
    assert roc_auc([1, 0, 1, 0], [0.3] * 4) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_roc_auc_equals_sklearn(require):
    metrics = require("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(2, 200))
        y = rng.random(n) < rng.uniform(0.1, 0.9)
        if y.all() or not y.any():
            continue
        s = rng.integers(0, 10, n) / 10  # many ties
        assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
        w = rng.integers(0, 4, n)
        if w[y].sum() and w[~y].sum():
            assert roc_auc(y, s, w) == pytest.approx(metrics.roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        c = roc_curve(y, s)
        fpr, tpr, _ = metrics.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(c["fpr"], fpr)
        np.testing.assert_allclose(c["tpr"], tpr)


def test_roc_auc_bad_input():
    with pytest.raises(ConfigError):
        roc_auc([1, 0], [0.5])
    with pytest.raises(ConfigError):
        roc_auc([1, 0], [0.5, math.nan])


def test_image_matrix():
    X, Y = "ILD", "Infiltration"
    rows = table(["a", "a", "b", "zz"], [X, X, Y, X], [BOX] * 4, [0.2, 0.7, 0.4, 0.9])
    assert image_matrix(rows, ["a", "b"], [X, Y]).tolist() == [[0.7, 0.0], [0.0, 0.4]]
    assert image_matrix(rows, ["a", "b"], [X, Y], presence=True).tolist() == [[1, 0], [0, 1]]
    assert image_matrix(table(["a"], [Y], [BOX]), ["a", "b"], [X, Y], presence=True).tolist() == [[0, 1], [0, 0]]


# --- bootstrap ---------------------------------------------------------------------------------
def test_resample_weights_reproducible():
    a = np.vstack(list(resample_weights(20, 120, seed=3)))
    b = np.vstack(list(resample_weights(20, 120, seed=3)))
    c = np.vstack(list(resample_weights(20, 120, seed=4)))
    assert a.shape == (120, 20) and (a.sum(axis=1) == 20).all()
    assert (a == b).all() and not (a == c).all()


@pytest.mark.parametrize("seed", range(5))
def test_weighted_metrics_equal_repeated_rows(seed):
    """A weight of k on an image gives the same number as its rows repeated k times."""
    rng = np.random.default_rng(seed)
    n_img, k = 8, 30
    img = rng.integers(0, n_img, k)
    s = rng.permutation(k) / k
    hits = rng.random(k) < 0.5
    truth_img = np.r_[img[hits], rng.integers(0, n_img, 3)]  # a truth box under every hit, and misses
    w = rng.integers(0, 3, (4, n_img))
    order = np.argsort(-s, kind="stable")
    ap = weighted_ap(w[:, img[order]], hits[order], w @ np.bincount(truth_img, minlength=n_img))
    y = rng.random(n_img) < 0.5
    y[:2] = [True, False]
    sc = rng.integers(0, 5, n_img) / 5
    auc = weighted_auc(w, y, sc)
    ends = np.r_[np.flatnonzero(np.diff(s[order]) != 0), k - 1]
    fr = weighted_froc(w[:, img[order]], hits[order], ends, w @ np.bincount(truth_img, minlength=n_img), n_img, [0.5, 1, 2])
    for b in range(w.shape[0]):
        rep = np.repeat(np.arange(k), w[b, img])  # rows repeated by their image's weight, kept in input order
        nt = int(w[b, truth_img].sum())
        want = average_precision(s[rep], hits[rep], nt) if nt else math.nan
        assert ap[b] == pytest.approx(want, abs=1e-12, nan_ok=True)
        ri = np.repeat(np.arange(n_img), w[b])
        want_auc = roc_auc(y[ri], sc[ri])
        assert auc[b] == pytest.approx(want_auc, abs=1e-12, nan_ok=True)
        want_fr = froc(s[rep], hits[rep], nt, n_img, [0.5, 1, 2])["mean"] if nt else math.nan
        assert fr[b] == pytest.approx(math.nan if want_fr is None else want_fr, abs=1e-12, nan_ok=True)


def test_bootstrap_intervals_contain_the_estimate_and_are_reproducible():
    rng = np.random.default_rng(0)
    n = 300
    y = rng.random(n) < 0.4
    s = np.where(y, rng.normal(1, 1, n), rng.normal(0, 1, n))

    def stat(w):
        return {"auc": weighted_auc(w, y, s), "never": np.full(w.shape[0], np.nan)}

    a = bootstrap_intervals(n, stat, resamples=400, seed=7)
    assert a == bootstrap_intervals(n, stat, resamples=400, seed=7)
    assert a != bootstrap_intervals(n, stat, resamples=400, seed=8)
    lo, hi = a["auc"]
    assert lo < roc_auc(y, s) < hi and hi - lo < 0.2
    assert a["never"] is None
    with pytest.raises(ConfigError):
        bootstrap_intervals(n, stat, resamples=10, level=1.5)


# --- COCO --------------------------------------------------------------------------------------
COCO_TRUTH = table(
    ["a", "a", "b", "c"],
    ["Cardiomegaly", "Nodule/Mass", "Nodule/Mass", "No finding"],
    [[100, 100, 300, 250], [10, 10, 40, 40], [50, 60, 70, 90], [0, 0, 1, 1]],
)
COCO_PREDS = table(
    ["a", "a", "a", "b", "b", "c", "c", "zz"],
    ["Cardiomegaly", "Nodule/Mass", "Nodule/Mass", "Nodule/Mass", "Cardiomegaly", "Nodule/Mass", "No finding", "Nodule/Mass"],
    [[105, 95, 310, 250], [12, 10, 40, 44], [200, 200, 230, 230], [50, 62, 72, 88], [0, 0, 50, 50],
     [5, 5, 30, 30], [0, 0, 1, 1], [10, 10, 40, 40]],
    [0.9, 0.8, 0.3, 0.6, 0.4, 0.7, 0.9, 0.99],
)


def test_coco_equals_plain_pycocotools(require):
    require("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ours = coco_map(COCO_TRUTH, COCO_PREDS)
    # The same data written by hand in COCO's format, evaluated the documented way.
    gt = {
        "images": [{"id": 1}, {"id": 2}, {"id": 3}],
        "categories": [{"id": i + 1, "name": str(i)} for i in range(14)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [100, 100, 200, 150], "area": 30000, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [50, 60, 20, 30], "area": 600, "iscrowd": 0},
        ],
    }
    dets = [
        {"image_id": 1, "category_id": 4, "bbox": [105, 95, 205, 155], "score": 0.9},
        {"image_id": 1, "category_id": 9, "bbox": [12, 10, 28, 34], "score": 0.8},
        {"image_id": 1, "category_id": 9, "bbox": [200, 200, 30, 30], "score": 0.3},
        {"image_id": 2, "category_id": 9, "bbox": [50, 62, 22, 26], "score": 0.6},
        {"image_id": 2, "category_id": 4, "bbox": [0, 0, 50, 50], "score": 0.4},
        {"image_id": 3, "category_id": 9, "bbox": [5, 5, 25, 25], "score": 0.7},
    ]
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert ours["map50"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert ours["ar100"] == pytest.approx(ev.stats[8], abs=1e-9)
    assert 0 < ours["map"] < ours["map50"] <= 1


def test_coco_inputs_leave_out_no_finding_and_unknown_images():
    gt, dets = coco_inputs(COCO_TRUTH, COCO_PREDS)
    assert len(gt["annotations"]) == 3 and len(gt["categories"]) == 14
    assert len(dets) == 6  # no "No finding", nothing on "zz"
    assert gt["annotations"][0]["bbox"] == [100.0, 100.0, 200.0, 150.0]


def test_coco_without_finding_truth(require):
    require("pycocotools")
    out = coco_map(table(["c"], ["No finding"], [[0, 0, 1, 1]]), table([], [], np.zeros((0, 4)), []))
    assert out["map"] is None
