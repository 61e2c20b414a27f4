"""Image-level metrics: ROC-AUC (Mann-Whitney, ties counted half), ROC curves, accuracy.

An image's score for a class is the highest score of that class's boxes on the image (0 if none);
its truth is whether any truth box of the class is on it. Abnormal vs normal uses
``1 - score("No finding")`` against "has any finding box".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError

__all__ = [
    "image_matrix",
    "roc_auc",
    "roc_curve",
]


def roc_auc(y_true: npt.ArrayLike, scores: npt.ArrayLike, weights: npt.ArrayLike | None = None) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic with ties counted half.

    ``AUC = P(score of a random positive > score of a random negative) + 1/2 P(equal)``, which is
    the trapezoidal area under the ROC curve (scikit-learn's ``roc_auc_score``).

    Parameters
    ----------
    y_true:
        ``(N,)`` booleans (or 0/1).
    scores:
        ``(N,)`` finite scores.
    weights:
        Optional ``(N,)`` non-negative sample weights (integer counts in the bootstrap).

    Returns
    -------
    float
        In ``[0, 1]``; ``nan`` when there are no positives or no negatives (AUC is undefined).

    Examples
    --------
    >>> roc_auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1])  # pairs: >, >, =, > -> (3 + 0.5) / 4
    0.875
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ConfigError(f"y_true and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    if not np.isfinite(s).all():
        raise ConfigError("scores must be finite")
    w = np.ones(s.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    wp, wn = float(w[y].sum()), float(w[~y].sum())
    if wp == 0 or wn == 0:
        return math.nan
    order = np.argsort(s, kind="stable")
    s, y, w = s[order], y[order], w[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    neg = np.add.reduceat(np.where(y, 0.0, w), starts)
    pos = np.add.reduceat(np.where(y, w, 0.0), starts)
    below = np.cumsum(neg) - neg
    return float(((below + 0.5 * neg) * pos).sum() / (wp * wn))


def roc_curve(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, np.ndarray]:
    """False and true positive rates at every distinct score (descending), from (0, 0).

    Returns ``fpr``, ``tpr``, ``threshold`` (``inf`` for the first point); rates are ``nan``
    when a class is absent.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.zeros(0, dtype=int)
    tp = np.r_[0, np.cumsum(y)[last]].astype(np.float64)
    fp = np.r_[0, np.cumsum(~y)[last]].astype(np.float64)
    npos, nneg = tp[-1], fp[-1]
    return {
        "fpr": fp / nneg if nneg else np.full(fp.shape, np.nan),
        "tpr": tp / npos if npos else np.full(tp.shape, np.nan),
        "threshold": np.r_[np.inf, s[last]],
    }


def image_matrix(
    table: Annotations, images: Sequence[object], labels: Sequence[str], *, presence: bool = False
) -> np.ndarray:
    """Per image and class: the highest score of the table's rows (0 if none), or 0/1 presence.

    Parameters
    ----------
    table:
        Boxes, e.g. predictions (with scores) or truth.
    images, labels:
        The rows and columns of the matrix; rows of other images or labels are ignored.
    presence:
        Ignore the scores: 1 where the image has a row of the class (for the truth).

    Returns
    -------
    numpy.ndarray
        ``(len(images), len(labels))`` float64.
    """
    img_index = {k: i for i, k in enumerate(images)}
    lab_index = {k: i for i, k in enumerate(labels)}
    out = np.zeros((len(images), len(labels)), dtype=np.float64)
    ri = np.fromiter((img_index.get(k, -1) for k in table.image_id.tolist()), dtype=np.int64, count=len(table))
    rl = np.fromiter((lab_index.get(k, -1) for k in table.label.tolist()), dtype=np.int64, count=len(table))
    vals = np.ones(ri.size) if presence else table.score
    ok = (ri >= 0) & (rl >= 0)
    np.maximum.at(out, (ri[ok], rl[ok]), vals[ok])
    return out
