"""The VinBigData metric: hand-computed cases, agreement with map-boxes 1.0.6, invariants."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import math
import os
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from thoracic.boxes import box_iou
from thoracic.data import Annotations, ImageInfo
from thoracic.errors import ConfigError
from thoracic.evaluate import MapResult, average_precision, kaggle_map

# Deterministic runs: the same examples every time, no example database.
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=100)

LABELS = ["Aortic enlargement", "Cardiomegaly", "Nodule/Mass", "No finding"]
ABSENT = "Pleural effusion"  # never in the generated truth
BOX = (10.0, 10.0, 20.0, 20.0)
N = "Nodule/Mass"


def tables(truth: list[tuple[Any, ...]], preds: list[tuple[Any, ...]]) -> tuple[Annotations, Annotations]:
    """Rows ``(image, label, *box)`` and ``(image, label, score, *box)`` as truth and prediction tables."""
    t = Annotations.from_rows([ImageInfo(i) for i in sorted({r[0] for r in truth})], truth)
    rows = [(i, lab, *box, "", s) for i, lab, s, *box in preds]
    return t, Annotations.from_rows([ImageInfo(i) for i in sorted({r[0] for r in preds})], rows)


def kaggle_rows(truth: list[tuple[Any, ...]], preds: list[tuple[Any, ...]], iou: float = 0.4) -> MapResult:
    """:func:`kaggle_map` of rows (see :func:`tables`)."""
    return kaggle_map(*tables(truth, preds), iou)


def _test_dependency(name: str) -> ModuleType:
    """Import a package only the tests need: skip without it locally, fail without it on CI."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # map-boxes prints about Cython and may warn on import
        if os.environ.get("CI") == "true":
            return importlib.import_module(name)
        return pytest.importorskip(name)


@pytest.fixture(scope="module")
def map_boxes() -> ModuleType:
    return _test_dependency("map_boxes")


def reference(map_boxes: ModuleType, truth: list[tuple[Any, ...]], preds: list[tuple[Any, ...]]):
    """map-boxes on score-sorted predictions; its columns put x_max before y_min."""
    ann = np.array([(i, lab, x0, x1, y0, y1) for i, lab, x0, y0, x1, y1 in truth], dtype=object)
    ranked = sorted(preds, key=lambda p: -p[2])
    det = np.array([(i, lab, s, x0, x1, y0, y1) for i, lab, s, x0, y0, x1, y1 in ranked], dtype=object)
    det = det.reshape(-1, 7)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return map_boxes.mean_average_precision_for_boxes(ann, det, iou_threshold=0.4, verbose=False)


# --- hand-computed cases -----------------------------------------------------------------------
def test_perfect_predictions_score_one():
    truth = [
        ("a", "Cardiomegaly", 100, 200, 300, 400),
        ("a", "Nodule/Mass", 10, 10, 20, 20),
        ("b", "Nodule/Mass", 5, 5, 50, 50),
        ("c", "No finding", 0, 0, 1, 1),
    ]
    preds = [(i, lab, 0.5, *box) for i, lab, *box in truth]
    result = kaggle_rows(truth, preds)
    assert result == MapResult(
        map=1.0,
        ap={"Cardiomegaly": 1.0, "No finding": 1.0, "Nodule/Mass": 1.0},
        n_truth={"Cardiomegaly": 1, "No finding": 1, "Nodule/Mass": 2},
        ignored_predictions=0,
        iou=0.4,
    )


def test_false_positive_ranked_above_the_hit():
    # Ranked: FP (0.9), TP (0.8); one truth box. Precision 0 then 1/2 at recall 1: AP = 1 * 1/2.
    truth = [("a", "Nodule/Mass", *BOX)]
    preds = [("a", "Nodule/Mass", 0.8, *BOX), ("a", "Nodule/Mass", 0.9, 100, 100, 110, 110)]
    assert kaggle_rows(truth, preds).ap == {"Nodule/Mass": 0.5}


def test_hit_miss_hit():
    # Two truth boxes; ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Envelope: 1 at recall 1/2, 2/3 at recall 1, so AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(5 / 6)


def test_duplicate_prediction_on_one_box_is_a_false_positive():
    # Truth boxes A and B. Two copies of A (0.9, 0.8), then B (0.7): TP, FP, TP -> AP 5/6 as above.
    # Counting the duplicate as a hit would give 1.
    a, b = BOX, (50.0, 50.0, 60.0, 60.0)
    truth = [("x", "Nodule/Mass", *a), ("x", "Nodule/Mass", *b)]
    preds = [("x", "Nodule/Mass", 0.9, *a), ("x", "Nodule/Mass", 0.8, *a), ("x", "Nodule/Mass", 0.7, *b)]
    assert kaggle_rows(truth, preds).map == pytest.approx(5 / 6)


def test_truth_image_without_predictions_counts_as_misses():
    # Two truth boxes on two images, one found: precision 1 up to recall 1/2, so AP = 1/2.
    truth = [("a", "Cardiomegaly", *BOX), ("b", "Cardiomegaly", *BOX)]
    result = kaggle_rows(truth, [("a", "Cardiomegaly", 0.9, *BOX)])
    assert result.ap == {"Cardiomegaly": 0.5}
    assert result.n_truth == {"Cardiomegaly": 2}


def test_predictions_on_unknown_images_are_ignored_and_counted():
    truth = [("a", "Cardiomegaly", *BOX)]
    preds = [
        ("zzz", "Cardiomegaly", 0.99, *BOX),  # would be a top-ranked FP if it were scored
        ("a", "Cardiomegaly", 0.5, *BOX),
        ("yyy", "No finding", 0.7, 0, 0, 1, 1),
    ]
    result = kaggle_rows(truth, preds)
    assert result.map == 1.0
    assert result.ignored_predictions == 2


def test_iou_exactly_at_the_threshold_is_not_a_match():
    # Intersection 4 * 10 = 40, union 100: IoU 0.4 exactly in float arithmetic.
    truth, pred = (0.0, 0.0, 10.0, 10.0), (0.0, 0.0, 4.0, 10.0)
    assert box_iou([truth], [pred])[0, 0] == 0.4
    result = kaggle_rows([("a", "Nodule/Mass", *truth)], [("a", "Nodule/Mass", 0.9, *pred)])
    assert result.map == 0.0
    looser = kaggle_rows([("a", "Nodule/Mass", *truth)], [("a", "Nodule/Mass", 0.9, *pred)], 0.39)
    assert looser.map == 1.0


def test_map_boxes_counts_iou_at_the_threshold(map_boxes):
    # The one documented disagreement: map-boxes tests IoU >= threshold.
    mean_ap, _ = reference(map_boxes, [("a", N, 0, 0, 10, 10)], [("a", N, 0.9, 0, 0, 4, 10)])
    assert mean_ap == 1.0


def test_no_finding_is_an_ordinary_box_class():
    # "No finding" on a normal image is right; on the abnormal image it is a FP of that class.
    # Ranked: FP (0.9), TP (0.6) -> AP 1/2; the finding is found -> AP 1; mean 3/4.
    truth = [("normal", "No finding", 0, 0, 1, 1), ("sick", "Cardiomegaly", *BOX)]
    preds = [
        ("sick", "No finding", 0.9, 0, 0, 1, 1),
        ("normal", "No finding", 0.6, 0, 0, 1, 1),
        ("sick", "Cardiomegaly", 0.8, *BOX),
    ]
    result = kaggle_rows(truth, preds)
    assert result.ap == {"Cardiomegaly": 1.0, "No finding": 0.5}
    assert result.map == 0.75


def test_mean_is_over_truth_classes_only():
    # An undetected truth class scores 0 and counts; a predicted class absent from the truth is
    # not in the mean: (1 + 0) / 2.
    truth = [("a", "Cardiomegaly", *BOX), ("a", "Nodule/Mass", 50, 50, 60, 60)]
    preds = [("a", "Cardiomegaly", 0.9, *BOX), ("a", ABSENT, 0.95, *BOX)]
    result = kaggle_rows(truth, preds)
    assert result.ap == {"Cardiomegaly": 1.0, "Nodule/Mass": 0.0}
    assert result.map == 0.5


def test_best_iou_box_taken_means_false_positive():
    # Truth boxes A (x 0..10) and B (x 4..14). The first prediction sits exactly on A; the second
    # (x 1..11) overlaps A best (IoU 90/110) and B with IoU 70/130 > 0.4, yet VOC does not fall
    # back to B: it is a FP. Ranked TP, FP with 2 truth boxes: AP = 1/2 * 1 = 1/2.
    truth = [("a", N, 0, 0, 10, 10), ("a", N, 4, 0, 14, 10)]
    preds = [("a", N, 0.9, 0, 0, 10, 10), ("a", N, 0.8, 1, 0, 11, 10)]
    np.testing.assert_allclose(box_iou([[1, 0, 11, 10]], [t[2:] for t in truth]), [[9 / 11, 7 / 13]])
    assert kaggle_rows(truth, preds).map == 0.5


def test_score_ties_keep_the_input_order():
    # Equal scores: a stable sort ranks them as given. Miss first -> AP 1/2; hit first -> AP 1.
    truth = [("a", N, *BOX)]
    miss, hit = ("a", N, 0.5, 100, 100, 110, 110), ("a", N, 0.5, *BOX)
    assert kaggle_rows(truth, [miss, hit]).map == 0.5
    assert kaggle_rows(truth, [hit, miss]).map == 1.0


def test_average_precision_edge_cases():
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.2], [False], 1) == 0.0
    assert math.isnan(average_precision([0.2], [False], 0))
    assert average_precision(np.array([-3.0, 7.0]), [True, True], 2) == 1.0  # any finite scores


def test_iou_matrix_shapes_and_degenerate_boxes():
    assert box_iou(np.zeros((0, 4)), [BOX]).shape == (0, 1)
    assert box_iou([BOX], []).shape == (1, 0)
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]]).tolist() == [[0.0]]  # empty union
    assert box_iou([BOX], [BOX]).tolist() == [[1.0]]


def test_result_is_frozen():
    result = kaggle_rows([("a", N, *BOX)], [])
    assert result.map == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.map = 1.0  # type: ignore[misc]


# --- bad input ---------------------------------------------------------------------------------
GOOD_TRUTH = [("a", N, *BOX)]


@pytest.mark.parametrize(
    ("truth", "preds", "match"),
    [
        ([("a", N, math.nan, 0, 10, 10)], [], "finite"),
        (GOOD_TRUTH, [("a", N, math.inf, 0, 0, 10, 10)], "finite"),
        (GOOD_TRUTH, [("a", N, math.nan, 0, 0, 10, 10)], "finite"),
        (GOOD_TRUTH, [("a", N, 0.5, 0, 0, math.inf, 10)], "finite"),
        ([("a", N, 10, 0, 5, 10)], [], "x_min <= x_max"),
        (GOOD_TRUTH, [("a", N, 0.5, 0, 10, 10, 5)], "y_min <= y_max"),
        ([], [("a", N, 0.5, *BOX)], "truth is empty"),
    ],
)
def test_bad_rows_raise_config_error(truth, preds, match):
    with pytest.raises(ConfigError, match=match):
        kaggle_rows(truth, preds)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan])
def test_bad_threshold(threshold):
    with pytest.raises(ConfigError, match="iou_threshold"):
        kaggle_rows(GOOD_TRUTH, [], threshold)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([0.5, 0.4], [True], 1), "equal length"),
        (([0.5], [1], 1), "booleans"),
        (([math.nan], [True], 1), "finite"),
        (([0.5], [True], -1), "non-negative integer"),
        (([0.5], [True], 1.5), "non-negative integer"),
        (([0.5, 0.4], [True, True], 1), "only 1 truth boxes"),
    ],
)
def test_bad_average_precision_arguments(args, match):
    with pytest.raises(ConfigError, match=match):
        average_precision(*args)


# --- random cases ------------------------------------------------------------------------------
@st.composite
def boxes(draw) -> tuple[float, float, float, float]:
    x, y = draw(st.integers(0, 24)), draw(st.integers(0, 24))
    w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return (float(x), float(y), float(x + w), float(y + h))


@st.composite
def cases(draw) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Truth on 1-4 images with 2-4 classes; predictions near the truth boxes or anywhere, also
    on an unknown image and of a class absent from the truth; distinct scores."""
    images = [f"img{i}" for i in range(draw(st.integers(1, 4)))]
    labels = LABELS[: draw(st.integers(2, 4))]
    truth = draw(st.lists(st.tuples(st.sampled_from(images), st.sampled_from(labels), boxes()), min_size=1, max_size=12))
    near = st.tuples(st.sampled_from(truth), st.integers(-2, 2), st.integers(-2, 2)).map(
        lambda t: (t[0][0], t[0][1], tuple(c + d for c, d in zip(t[0][2], (t[1], t[2], t[1], t[2]))))
    )
    anywhere = st.tuples(st.sampled_from([*images, "unknown"]), st.sampled_from([*labels, ABSENT]), boxes())
    preds = draw(st.lists(st.one_of(near, anywhere), max_size=20))
    scores = draw(st.lists(st.integers(1, 10**6), min_size=len(preds), max_size=len(preds), unique=True))
    return (
        [(i, lab, *box) for i, lab, box in truth],
        [(i, lab, k / 10**6, *box) for (i, lab, box), k in zip(preds, scores)],
    )


def near_threshold(truth: list[tuple[Any, ...]], preds: list[tuple[Any, ...]]) -> bool:
    """Whether any prediction overlaps a truth box of its image and class with IoU ~ 0.4."""
    for i, lab, _, *box in preds:
        same = [t[2:] for t in truth if t[:2] == (i, lab)]
        if same and np.isclose(box_iou([box], same), 0.4, rtol=0, atol=1e-6).any():
            return True
    return False


@PROPERTY
@given(cases())
def test_equals_map_boxes_on_score_sorted_input(map_boxes, case):
    truth, preds = case
    assume(not near_threshold(truth, preds))
    result = kaggle_rows(truth, preds)
    mean_ap, per_class = reference(map_boxes, truth, preds)
    assert result.map == pytest.approx(mean_ap, abs=1e-6)
    assert result.ap == pytest.approx({lab: ap for lab, (ap, _) in per_class.items()}, abs=1e-6)
    assert result.n_truth == {lab: int(n) for lab, (_, n) in per_class.items()}


@PROPERTY
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.booleans()), max_size=30), st.integers(0, 5))
def test_average_precision_is_in_unit_interval(rows, extra):
    scores, matched = [s for s, _ in rows], np.array([m for _, m in rows], dtype=bool)
    ap = average_precision(scores, matched, int(matched.sum()) + extra or 1)
    assert 0.0 <= ap <= 1.0


@PROPERTY
@given(cases())
def test_map_is_in_unit_interval(case):
    result = kaggle_rows(*case)
    assert all(0.0 <= v <= 1.0 for v in [result.map, *result.ap.values()])


@PROPERTY
@given(cases(), st.data())
def test_row_order_does_not_matter(case, data):
    truth, preds = case
    shuffled = data.draw(st.permutations(preds))
    assert kaggle_rows(truth, shuffled) == kaggle_rows(truth, preds)


@PROPERTY
@given(cases(), st.floats(0, 1), boxes())
def test_absent_class_prediction_changes_nothing(case, score, box):
    truth, preds = case
    extra = [*preds, (truth[0][0], ABSENT, score, *box)]
    before, after = kaggle_rows(truth, preds), kaggle_rows(truth, extra)
    assert after.map == before.map
    assert after.ap == before.ap
