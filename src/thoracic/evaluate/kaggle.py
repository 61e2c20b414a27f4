"""The VinBigData competition metric: mean of PASCAL VOC 2010 all-point AP at IoU > 0.4.

Truth and predictions are :class:`~thoracic.data.Annotations` (predictions with scores): boxes are
float ``xyxy`` in pixels of the original image, labels are class names (``"Aortic enlargement"``,
``"Nodule/Mass"``, ``"No finding"``, ...). Matching is :func:`~thoracic.evaluate.match`.
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
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError
from thoracic.evaluate.detection import match

__all__ = [
    "KAGGLE_IOU_THRESHOLD",
    "MapResult",
    "average_precision",
    "kaggle_map",
]

#: The competition's IoU threshold (a match needs IoU strictly above it).
KAGGLE_IOU_THRESHOLD = 0.4


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


def kaggle_map(truth: Annotations, preds: Annotations, iou_threshold: float = KAGGLE_IOU_THRESHOLD) -> MapResult:
    """The VinBigData mAP: mean over truth classes of VOC 2010 AP at IoU > ``iou_threshold``.

    Only images with truth rows are scored: a truth image without predictions counts its boxes
    as misses, and predictions on other images are counted in ``ignored_predictions`` and
    otherwise ignored. Predictions of a class absent from the truth do not change the result.

    Each class is matched image by image in VOC's greedy way (:func:`~thoracic.evaluate.match`):
    predictions in descending score order (ties keep their input order), each taking the truth box
    of its image and class with the highest IoU (the first such box on a tie); it is a true
    positive if that IoU is strictly greater than ``iou_threshold`` and the box is not yet taken,
    otherwise a false positive.

    Parameters
    ----------
    truth:
        Truth boxes (scores ignored); at least one row.
    preds:
        Predictions; scores must be finite.
    iou_threshold:
        In ``[0, 1]``; the competition used 0.4.

    Returns
    -------
    MapResult

    Raises
    ------
    ConfigError
        A non-finite score or coordinate, a box with ``x_max < x_min`` or ``y_max < y_min``, a bad
        threshold, or an empty truth.

    Examples
    --------
    One "Nodule/Mass" truth box; the highest-scored prediction misses it (IoU 0), the second hits
    it (IoU 0.5): precision 1/2 at recall 1, so AP 0.5. "No finding" on the other image is right.

    >>> from thoracic.data import Annotations, ImageInfo
    >>> truth = Annotations.from_rows([ImageInfo("a"), ImageInfo("b")],
    ...     [("a", "Nodule/Mass", 10, 10, 20, 20), ("b", "No finding", 0, 0, 1, 1)])
    >>> preds = Annotations.from_rows([ImageInfo("a"), ImageInfo("b"), ImageInfo("c")], [
    ...     ("a", "Nodule/Mass", 50, 50, 60, 60, "", 0.9),
    ...     ("a", "Nodule/Mass", 10, 10, 20, 15, "", 0.6),
    ...     ("b", "No finding", 0, 0, 1, 1, "", 0.8),
    ...     ("c", "No finding", 0, 0, 1, 1, "", 0.8),
    ... ])
    >>> result = kaggle_map(truth, preds)
    >>> result.ap
    {'No finding': 1.0, 'Nodule/Mass': 0.5}
    >>> result.map, result.ignored_predictions
    (0.75, 1)
    """
    threshold = float(iou_threshold)
    if not 0.0 <= threshold <= 1.0:  # also refuses NaN
        raise ConfigError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if not len(truth):
        raise ConfigError("the truth is empty: nothing to score")
    matched, _ = match(truth, preds, threshold)
    scored = set(truth.image_id.tolist())
    known = np.fromiter((i in scored for i in preds.image_id.tolist()), dtype=bool, count=len(preds))
    n_truth = Counter(str(label) for label in truth.label.tolist())
    ap: dict[str, float] = {}
    for label, n in sorted(n_truth.items()):
        sel = known & (preds.label == label)  # keeps the input order, the tie-break of average_precision
        ap[label] = average_precision(preds.score[sel], matched[sel], n)
    return MapResult(
        map=float(np.mean(list(ap.values()))),
        ap=ap,
        n_truth=dict(sorted(n_truth.items())),
        ignored_predictions=int((~known).sum()),
        iou=threshold,
    )
