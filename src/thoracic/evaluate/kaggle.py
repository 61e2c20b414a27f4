"""The VinBigData competition metric: mean of PASCAL VOC 2010 all-point AP at IoU > 0.4.

Boxes are float ``xyxy`` in pixels of the original image, ``(x_min, y_min, x_max, y_max)``;
labels are class names (``"Aortic enlargement"``, ``"Nodule/Mass"``, ``"No finding"``, ...).
"No finding" needs no special code: the competition's format writes it as the box ``0 0 1 1``, and
as long as truth and predictions both carry it that way it is scored like any other class (the box
has IoU 1 with itself, and a "No finding" prediction on an abnormal image is a false positive).

Differences from ``map-boxes`` 1.0.6, the reference the competitors used:

- predictions are matched in descending score order (ties keep their input order), so the result
  does not depend on how the rows are ordered; ``map-boxes`` matches them in the order given;
- a match needs IoU strictly greater than the threshold (the competition's "> 0.4");
  ``map-boxes`` counts IoU equal to the threshold as a match;
- coordinates and scores are float64; ``map-boxes`` casts them to float32.

On input sorted by descending score, with no score ties and no IoU equal to the threshold, both
give the same numbers up to float32 rounding (the tests check this to 1e-6).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from thoracic.errors import ConfigError

__all__ = [
    "KAGGLE_IOU_THRESHOLD",
    "MapResult",
    "average_precision",
    "iou_matrix",
    "kaggle_map",
]

#: The competition's IoU threshold (a match needs IoU strictly above it).
KAGGLE_IOU_THRESHOLD = 0.4

_Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class MapResult:
    """The result of :func:`kaggle_map`.

    Attributes
    ----------
    map:
        Mean of ``ap`` over the classes present in the truth.
    ap:
        Average precision of every class that has at least one truth box, by class name.
    n_truth:
        Number of truth boxes of each class in ``ap``.
    ignored_predictions:
        Predictions on images absent from the truth (not scored). Predictions of classes absent
        from the truth are not counted here; they have no AP to change.
    iou:
        The IoU threshold used; a match needed IoU strictly greater than it.
    """

    map: float
    ap: Mapping[str, float]
    n_truth: Mapping[str, int]
    ignored_predictions: int
    iou: float


def iou_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Areas use the continuous formula ``(x_max - x_min) * (y_max - y_min)`` (no ``+ 1``). Pairs
    whose union is empty (two degenerate boxes) have IoU 0.

    Parameters
    ----------
    a, b:
        ``(N, 4)`` and ``(M, 4)`` ``xyxy`` boxes.

    Returns
    -------
    numpy.ndarray
        ``(N, M)`` float64 IoUs in ``[0, 1]``.

    Examples
    --------
    >>> iou_matrix([[0, 0, 10, 10]], [[0, 0, 4, 10], [5, 0, 15, 10], [20, 20, 30, 30]]).tolist()
    [[0.4, 0.3333333333333333, 0.0]]
    """
    a, b = _boxes(a, "a"), _boxes(b, "b")
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou


def average_precision(scores: npt.ArrayLike, matched: npt.ArrayLike, n_truth: int) -> float:
    """PASCAL VOC 2010 all-point interpolated average precision of one class.

    Predictions are ranked by descending score; ties keep their given order (a stable sort).
    Precision is made monotone (each point takes the highest precision at any greater recall),
    and AP is the area under that envelope, summed over the steps where recall increases.

    Parameters
    ----------
    scores:
        ``(K,)`` finite scores of the class's predictions (any range).
    matched:
        ``(K,)`` booleans: whether each prediction is a true positive.
    n_truth:
        Number of truth boxes of the class; at least ``matched.sum()``.

    Returns
    -------
    float
        AP in ``[0, 1]``; 0 when there are no predictions. With ``n_truth == 0`` AP is undefined
        and the result is ``nan`` (:func:`kaggle_map` averages only classes with truth boxes).

    Examples
    --------
    Two truth boxes; ranked hits are [miss, hit, hit]: precision 0, 1/2, 2/3 at recall 0, 1/2, 1,
    so the envelope is 2/3 at both recall steps and AP = 1/2 * 2/3 + 1/2 * 2/3 = 2/3.

    >>> round(average_precision([0.9, 0.8, 0.7], [False, True, True], n_truth=2), 6)
    0.666667
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(matched)
    m = m.astype(bool) if m.size == 0 else m  # an empty list is float64 to NumPy
    if s.ndim != 1 or m.shape != s.shape:
        raise ConfigError(f"scores and matched must be 1-D of equal length, got {s.shape} and {m.shape}")
    if m.dtype != np.bool_:
        raise ConfigError(f"matched must be booleans, got dtype {m.dtype}")
    if not np.isfinite(s).all():
        raise ConfigError("scores must be finite (no NaN or infinity)")
    if isinstance(n_truth, bool) or int(n_truth) != n_truth or n_truth < 0:
        raise ConfigError(f"n_truth must be a non-negative integer, got {n_truth!r}")
    if m.sum() > n_truth:
        raise ConfigError(f"{int(m.sum())} matched predictions but only {n_truth} truth boxes")
    if n_truth == 0:
        return math.nan
    hits = m[np.argsort(-s, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, hits.size + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    # Recall rises by 1 / n_truth at each hit and nowhere else.
    return float(envelope[hits].sum() / n_truth)


def kaggle_map(
    truth: Iterable[Sequence[Any]],
    preds: Iterable[Sequence[Any]],
    iou_threshold: float = KAGGLE_IOU_THRESHOLD,
) -> MapResult:
    """The VinBigData mAP: mean over truth classes of VOC 2010 AP at IoU > ``iou_threshold``.

    Only images present in the truth are scored: a truth image without predictions counts its
    boxes as misses, and predictions on other images are counted in ``ignored_predictions`` and
    otherwise ignored. Predictions of a class absent from the truth do not change the result.

    Each class is matched image by image in VOC's greedy way: predictions in descending score
    order (ties keep their input order), each taking the truth box of its image and class with
    the highest IoU (the first such box on a tie); it is a true positive if that IoU is strictly
    greater than ``iou_threshold`` and the box is not yet taken, otherwise a false positive.

    Parameters
    ----------
    truth:
        Rows ``(image_id, label, x_min, y_min, x_max, y_max)``; at least one. Image ids are any
        hashable values, compared by equality (``"1"`` and ``1`` are different images).
    preds:
        Rows ``(image_id, label, score, x_min, y_min, x_max, y_max)``; scores must be finite.
        Any iterable of rows works (lists of tuples, an ``(N, 7)`` object array, a structured
        array with the fields in this order).
    iou_threshold:
        In ``[0, 1]``; the competition used 0.4.

    Returns
    -------
    MapResult

    Raises
    ------
    ConfigError
        A row of the wrong length, a label that is not a string, a non-numeric or non-finite
        value (NaN or infinite coordinates or scores), a box with
        ``x_max < x_min`` or ``y_max < y_min``, a bad threshold, or an empty truth.

    Examples
    --------
    One "Nodule/Mass" truth box; the highest-scored prediction misses it (IoU 0), the second hits
    it (IoU 0.5): precision 1/2 at recall 1, so AP 0.5. "No finding" on the other image is right.

    >>> truth = [("a", "Nodule/Mass", 10, 10, 20, 20), ("b", "No finding", 0, 0, 1, 1)]
    >>> preds = [
    ...     ("a", "Nodule/Mass", 0.9, 50, 50, 60, 60),
    ...     ("a", "Nodule/Mass", 0.6, 10, 10, 20, 15),
    ...     ("b", "No finding", 0.8, 0, 0, 1, 1),
    ...     ("c", "No finding", 0.8, 0, 0, 1, 1),
    ... ]
    >>> result = kaggle_map(truth, preds)
    >>> result.ap
    {'No finding': 1.0, 'Nodule/Mass': 0.5}
    >>> result.map, result.ignored_predictions
    (0.75, 1)
    """
    threshold = float(iou_threshold)
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ConfigError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")

    gt: dict[tuple[Any, str], list[_Box]] = defaultdict(list)
    n_truth: Counter[str] = Counter()
    for i, row in enumerate(truth):
        image, label, _, box = _row(row, i, "truth", has_score=False)
        gt[image, label].append(box)
        n_truth[label] += 1
    if not n_truth:
        raise ConfigError("the truth is empty: nothing to score")
    images = {image for image, _ in gt}

    groups: dict[tuple[Any, str], list[int]] = defaultdict(list)
    scores: list[float] = []
    boxes: list[_Box] = []
    labels: list[str] = []
    ignored = 0
    for i, row in enumerate(preds):
        image, label, score, box = _row(row, i, "preds", has_score=True)
        if image not in images:
            ignored += 1
            continue
        groups[image, label].append(len(scores))
        scores.append(score)
        boxes.append(box)
        labels.append(label)

    s = np.asarray(scores, dtype=np.float64)
    matched = np.zeros(s.size, dtype=bool)
    for key, idx in groups.items():
        if key not in gt:
            continue
        order = np.asarray(idx)[np.argsort(-s[idx], kind="stable")]
        ious = iou_matrix([boxes[k] for k in order], gt[key])
        best = ious.argmax(axis=1)
        taken = np.zeros(len(gt[key]), dtype=bool)
        for k, j, iou in zip(order, best, ious[np.arange(order.size), best]):
            if iou > threshold and not taken[j]:
                taken[j] = matched[k] = True

    by_label = np.asarray(labels, dtype=object)
    ap: dict[str, float] = {}
    for label, n in sorted(n_truth.items()):
        sel = by_label == label  # keeps the input order, the tie-break of average_precision
        ap[label] = average_precision(s[sel], matched[sel], n)
    return MapResult(
        map=float(np.mean(list(ap.values()))),
        ap=ap,
        n_truth=dict(sorted(n_truth.items())),
        ignored_predictions=ignored,
        iou=threshold,
    )


def _boxes(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{name} must be numeric (N, 4) xyxy boxes: {err}") from err
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ConfigError(f"{name} must be (N, 4) xyxy boxes, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr[:, 2:] < arr[:, :2]).any():
        raise ConfigError(f"{name} must hold finite xyxy boxes with x_min <= x_max and y_min <= y_max")
    return arr


_TRUTH_FIELDS = ("image_id", "label", "x_min", "y_min", "x_max", "y_max")
_PRED_FIELDS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")


def _row(row: Sequence[Any], i: int, what: str, *, has_score: bool) -> tuple[Any, str, float, _Box]:
    """Check one input row; returns ``(image_id, label, score, box)`` (score 0 for truth rows)."""
    fields = _PRED_FIELDS if has_score else _TRUTH_FIELDS
    try:
        length = len(row)
    except TypeError as err:
        raise ConfigError(f"{what} row {i} is not a sequence of ({', '.join(fields)})") from err
    if length != len(fields):
        raise ConfigError(f"{what} row {i} has {length} fields, expected ({', '.join(fields)})")
    image, label, *rest = row
    if not isinstance(label, str):
        raise ConfigError(f"{what} row {i}: the label must be a class name string, got {label!r}")
    try:
        values = [float(v) for v in rest]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} row {i}: score and coordinates must be numbers ({err})") from err
    if not all(map(math.isfinite, values)):
        raise ConfigError(f"{what} row {i}: score and coordinates must be finite, got {values}")
    score = values.pop(0) if has_score else 0.0
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise ConfigError(f"{what} row {i}: need x_min <= x_max and y_min <= y_max, got {values}")
    return image, str(label), score, (x0, y0, x1, y1)
