"""Weighted box fusion and NMS: equal to ensemble-boxes, hand-computed cases, contract errors."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import require
from hypothesis import given, settings
from hypothesis import strategies as st

from thoracic.boxes import CONF_TYPES, box_iou, nms, weighted_boxes_fusion
from thoracic.errors import ConfigError


def _ensemble_boxes():
    return require("ensemble_boxes")


@st.composite
def models(draw):
    w = draw(st.integers(50, 3000))
    h = draw(st.integers(50, 3000))
    n_models = draw(st.integers(1, 4))
    boxes, scores, labels = [], [], []
    for _ in range(n_models):
        n = draw(st.integers(0, 7))
        b = []
        for _ in range(n):
            x0 = draw(st.floats(0, w - 2, allow_nan=False))
            y0 = draw(st.floats(0, h - 2, allow_nan=False))
            x1 = draw(st.floats(x0 + 1, w, allow_nan=False))
            y1 = draw(st.floats(y0 + 1, h, allow_nan=False))
            b.append([x0, y0, x1, y1])
        boxes.append(np.array(b, dtype=np.float64).reshape(-1, 4))
        scores.append(np.array(draw(st.lists(st.sampled_from([1.0, 0.9, 0.5, 0.3]) | st.floats(0.01, 1.0), min_size=n, max_size=n))))
        labels.append(np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))))
    weights = draw(st.none() | st.lists(st.sampled_from([1.0, 2.0, 0.5, 3.0]), min_size=n_models, max_size=n_models))
    return (w, h), boxes, scores, labels, weights


def _compare(ours, theirs, size):
    b, s, lab = ours
    tb, ts, tl = theirs
    w, h = size
    assert b.shape == np.asarray(tb).reshape(-1, 4).shape
    np.testing.assert_allclose(b / [w, h, w, h], np.asarray(tb).reshape(-1, 4), atol=1e-6, rtol=0)
    np.testing.assert_allclose(s, ts, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(lab, np.asarray(tl).astype(int))


@settings(max_examples=200)
@given(models(), st.sampled_from(CONF_TYPES), st.sampled_from([0.3, 0.4, 0.55, 0.7]), st.sampled_from([0.0, 0.2, 0.6]),
       st.booleans())
def test_wbf_equals_ensemble_boxes(case, conf_type, iou_thr, skip, overflow):
    eb = _ensemble_boxes()
    size, boxes, scores, labels, weights = case
    w, h = size
    ours = weighted_boxes_fusion(boxes, scores, labels, size, weights=weights, iou_thr=iou_thr, skip_box_thr=skip,
                                 conf_type=conf_type, allows_overflow=overflow)
    theirs = eb.weighted_boxes_fusion([b / [w, h, w, h] for b in boxes], scores, labels, weights=weights, iou_thr=iou_thr,
                                      skip_box_thr=skip, conf_type=conf_type, allows_overflow=overflow)
    _compare(ours, theirs, size)


@settings(max_examples=40)
@given(models(), st.sampled_from([0.3, 0.5, 0.7]))
def test_nms_equals_ensemble_boxes(case, iou_thr):
    eb = _ensemble_boxes()
    size, boxes, scores, labels, weights = case
    if sum(len(b) for b in boxes) == 0:
        return  # ensemble-boxes' nms cannot concatenate nothing
    # numba's argsort breaks ties in another order than NumPy's: compare on distinct scores
    offset = 0
    distinct = []
    for sc in scores:
        distinct.append(np.round(sc, 2) * 0.5 + 1e-3 * (offset + np.arange(len(sc))))
        offset += len(sc)
    scores = distinct
    w, h = size
    ours = nms(boxes, scores, labels, size, weights=weights, iou_thr=iou_thr)
    theirs = eb.nms([b / [w, h, w, h] for b in boxes], [s.copy() for s in scores], labels, weights=weights, iou_thr=iou_thr)
    _compare(ours, theirs, size)


def test_wbf_hand_computed():
    # readers A and B agree (IoU 0.8), C draws elsewhere; all boxes score 1 (human readers)
    b, s, lab = weighted_boxes_fusion(
        [[[10, 10, 50, 50]], [[14, 10, 54, 50]], [[60, 60, 80, 90]]], [[1], [1], [1]], [[3], [3], [3]], (100, 100), iou_thr=0.4
    )
    np.testing.assert_allclose(b, [[12, 10, 52, 50], [60, 60, 80, 90]], atol=1e-4)
    np.testing.assert_allclose(s, [2 / 3, 1 / 3], atol=1e-7)
    assert lab.tolist() == [3, 3]
    # scores weight the coordinates: (0.9 * 10 + 0.3 * 20) / 1.2 = 12.5
    b, s, _ = weighted_boxes_fusion([[[10, 0, 50, 40]], [[20, 0, 60, 40]]], [[0.9], [0.3]], [[0], [0]], (100, 100), iou_thr=0.5)
    np.testing.assert_allclose(b, [[12.5, 0, 52.5, 40]], atol=1e-4)
    np.testing.assert_allclose(s, [0.6], atol=1e-7)  # mean score 0.6 * min(2 models, 2 boxes) / 2
    # different labels never fuse; 'max' takes the best score
    b, s, lab = weighted_boxes_fusion([[[10, 10, 50, 50]], [[10, 10, 50, 50]]], [[0.8], [0.6]], [[1], [2]], (100, 100))
    assert sorted(lab.tolist()) == [1, 2] and len(b) == 2
    _, s, _ = weighted_boxes_fusion([[[10, 10, 50, 50]], [[10, 10, 50, 50]]], [[0.8], [0.6]], [[1], [1]], (100, 100), conf_type="max")
    np.testing.assert_allclose(s, [0.8], atol=1e-7)


def test_wbf_empty_and_skip():
    b, s, lab = weighted_boxes_fusion([np.zeros((0, 4))], [[]], [[]], (10, 10))
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)
    b, _, _ = weighted_boxes_fusion([[[1, 1, 5, 5]]], [[0.1]], [[0]], (10, 10), skip_box_thr=0.2)
    assert len(b) == 0


def test_contract_errors():
    with pytest.raises(ConfigError, match="outside"):
        weighted_boxes_fusion([[[0, 0, 120, 50]]], [[1.0]], [[0]], (100, 100))
    b, _, _ = weighted_boxes_fusion([[[0, 0, 120, 50]]], [[1.0]], [[0]], (100, 100), clip=True)
    np.testing.assert_allclose(b, [[0, 0, 100, 50]])
    with pytest.raises(ConfigError, match="x_min <= x_max"):
        weighted_boxes_fusion([[[50, 0, 10, 50]]], [[1.0]], [[0]], (100, 100))
    with pytest.raises(ConfigError, match="did you mean 'avg'"):
        weighted_boxes_fusion([[[0, 0, 10, 10]]], [[1.0]], [[0]], (100, 100), conf_type="av")
    with pytest.raises(ConfigError, match="one weight per"):
        weighted_boxes_fusion([[[0, 0, 10, 10]]], [[1.0]], [[0]], (100, 100), weights=[1, 2])
    with pytest.raises(ConfigError, match="image_size"):
        nms([[[0, 0, 10, 10]]], [[1.0]], [[0]], (0, 100))


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10], [0, 0, 0, 0]], [[5, 0, 15, 10], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou, [[1 / 3, 1.0], [0.0, 0.0]])


def test_nms_matches_a_hand_computed_case():
    from thoracic.boxes import nms_xyxy

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms_xyxy(boxes, scores, 0.5).tolist() == [3, 2]
