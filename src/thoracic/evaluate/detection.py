"""Box-level detection metrics: VOC matching, precision/recall/F1, best-F1 threshold, FROC.

:func:`match` and :func:`class_confusion` take the truth and the predictions as
:class:`~thoracic.data.Annotations`; :func:`match` produces the true-positive flags that the others
take as plain arrays, so they compose and test easily. :func:`~thoracic.evaluate.kaggle_map` is
computed from :func:`match` (greedy in descending score order, ties in input order, each truth box
taken at most once, IoU strictly above the threshold). IoUs are :func:`thoracic.boxes.box_iou`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from thoracic.boxes import box_iou
from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError
from thoracic.labels import LABELS

__all__ = [
    "FROC_RATES",
    "best_f1",
    "check_scorable",
    "class_confusion",
    "froc",
    "match",
    "pr_curve",
    "prf",
]

#: False positives per image at which FROC sensitivity is reported.
FROC_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def check_scorable(table: Annotations, what: str, *, scored: bool) -> None:
    """Raise :class:`ConfigError` unless every box is finite ``xyxy`` (and, if ``scored``, every score finite).

    ``what`` names the table in the message (``"truth"``, ``"preds"``).
    """
    b = table.boxes
    bad = ~np.isfinite(b).all(axis=1)
    if scored:
        bad |= ~np.isfinite(table.score)
    for i in np.flatnonzero(bad)[:1].tolist():
        values = ([table.score[i]] if scored else []) + b[i].tolist()
        raise ConfigError(f"{what} row {i} ({table.image_id[i]}): score and coordinates must be finite, got {values}")
    for i in np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[:1].tolist():
        raise ConfigError(f"{what} row {i} ({table.image_id[i]}): need x_min <= x_max and y_min <= y_max, got {b[i].tolist()}")


def match(truth: Annotations, preds: Annotations, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Match predictions to truth boxes of the same image and class, VOC style.

    Parameters
    ----------
    truth:
        Truth boxes (scores ignored).
    preds:
        Predictions; scores must be finite.
    iou_threshold:
        A match needs IoU strictly above this.

    Returns
    -------
    matched:
        ``(K,)`` bool, whether each prediction (row of ``preds``) is a true positive.
    truth_index:
        ``(K,)`` int, the truth row each true positive took, ``-1`` for false positives.

    Raises
    ------
    ConfigError
        A box that is not finite ``xyxy`` with ``x_min <= x_max`` and ``y_min <= y_max``, or a
        prediction score that is not finite.
    """
    check_scorable(truth, "truth", scored=False)
    check_scorable(preds, "preds", scored=True)
    tb, pb, s = truth.boxes, preds.boxes, preds.score
    k = s.size
    matched = np.zeros(k, dtype=bool)
    taken_by = np.full(k, -1, dtype=np.int64)
    if k == 0 or tb.shape[0] == 0:
        return matched, taken_by
    codes: dict[tuple[object, object], int] = {}  # (image, label) -> group
    tcode = np.fromiter((codes.setdefault(key, len(codes)) for key in zip(truth.image_id.tolist(), truth.label.tolist())),
                        dtype=np.int64, count=len(truth))
    pcode = np.fromiter((codes.get(key, -1) for key in zip(preds.image_id.tolist(), preds.label.tolist())),
                        dtype=np.int64, count=k)
    torder = np.argsort(tcode, kind="stable")
    tstart = np.searchsorted(tcode[torder], np.arange(len(codes) + 1))
    sel = np.flatnonzero(pcode >= 0)
    # group by code, then descending score, then input order
    order = sel[np.lexsort((sel, -s[sel], pcode[sel]))]
    codes_sorted = pcode[order]
    bounds = np.flatnonzero(np.diff(codes_sorted)) + 1
    for group in np.split(order, bounds):
        if group.size == 0:
            continue
        c = pcode[group[0]]
        trows = torder[tstart[c] : tstart[c + 1]]
        ious = box_iou(pb[group], tb[trows])
        best = ious.argmax(axis=1)
        best_iou = ious[np.arange(group.size), best]
        taken = np.zeros(trows.size, dtype=bool)
        for p, j, v in zip(group.tolist(), best.tolist(), best_iou.tolist()):
            if v > iou_threshold and not taken[j]:
                taken[j] = matched[p] = True
                taken_by[p] = trows[j]
    return matched, taken_by


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _f1(tp: float, fp: float, fn: float) -> float | None:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def prf(scores: npt.ArrayLike, matched: npt.ArrayLike, n_truth: int, threshold: float) -> dict[str, float | int | None]:
    """Precision, recall and F1 of the predictions with ``score >= threshold``.

    Because matching is greedy in score order, the matches of the predictions above a threshold
    are the same whether or not the lower-scored ones exist.

    Returns
    -------
    dict
        ``threshold, tp, fp, fn, precision, recall, f1``; a ratio whose denominator is 0 is
        ``None`` (precision without predictions, recall and F1 without truth or predictions).

    Examples
    --------
    >>> prf([0.9, 0.6, 0.3], [True, False, True], n_truth=3, threshold=0.5)
    {'threshold': 0.5, 'tp': 1, 'fp': 1, 'fn': 2, 'precision': 0.5, 'recall': 0.3333333333333333, 'f1': 0.4}
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(matched, dtype=bool)
    keep = s >= threshold
    tp = int(m[keep].sum())
    fp = int(keep.sum()) - tp
    fn = int(n_truth) - tp
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_truth),
        "f1": _f1(tp, fp, fn),
    }


def pr_curve(scores: npt.ArrayLike, matched: npt.ArrayLike, n_truth: int) -> dict[str, np.ndarray]:
    """Precision and recall at every distinct score (as thresholds, descending).

    Returns ``threshold, tp, fp, precision, recall`` arrays, one entry per distinct score;
    ``recall`` is ``nan`` when ``n_truth`` is 0.
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(matched, dtype=bool)
    order = np.argsort(-s, kind="stable")
    s, m = s[order], m[order]
    tp = np.cumsum(m)
    fp = np.cumsum(~m)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1] if s.size else np.zeros(0, dtype=int)
    tp, fp = tp[last], fp[last]
    n = tp + fp
    return {
        "threshold": s[last],
        "tp": tp,
        "fp": fp,
        "precision": np.divide(tp, n, out=np.zeros(tp.shape), where=n > 0),
        "recall": tp / n_truth if n_truth > 0 else np.full(tp.shape, np.nan),
    }


def best_f1(scores: npt.ArrayLike, matched: npt.ArrayLike, n_truth: int) -> dict[str, float | int | None]:
    """The score threshold with the highest F1 (thresholds at the distinct scores).

    On a tie the higher threshold wins. Without predictions the threshold is ``None`` and F1 is
    ``0`` (or ``None`` without truth either).

    Examples
    --------
    Ranked hit, miss, hit, miss on 2 truth boxes: F1 is 2/3, 1/2, 4/5, 2/3; best at 0.7.

    >>> best_f1([0.9, 0.8, 0.7, 0.6], [True, False, True, False], 2)["threshold"]
    0.7
    """
    curve = pr_curve(scores, matched, n_truth)
    if curve["tp"].size == 0:
        out = prf([], [], n_truth, math.inf)
        out["threshold"] = None
        return out
    f1 = 2 * curve["tp"] / (curve["tp"] + curve["fp"] + n_truth)
    i = int(np.argmax(f1))  # first max = highest threshold
    return prf(scores, matched, n_truth, float(curve["threshold"][i]))


def froc(
    scores: npt.ArrayLike,
    matched: npt.ArrayLike,
    n_truth: int,
    n_images: int,
    rates: Sequence[float] = FROC_RATES,
) -> dict[str, object]:
    """Free-response ROC: lesion sensitivity at given false positives per image.

    The sensitivity at a rate ``r`` is the highest sensitivity of any score threshold whose false
    positives per image do not exceed ``r`` (a step function, no interpolation); 0 if even the
    top-ranked prediction exceeds it.

    Returns
    -------
    dict
        ``rates``, ``sensitivity`` (one per rate, ``None`` without truth boxes) and ``mean`` (the
        average over the rates, the competition performance metric of LUNA16), plus the curve
        ``fppi`` and ``curve_sensitivity`` as arrays.

    Examples
    --------
    Ranked hit, miss, hit on 2 truth boxes over 4 images: FP/image 0, 0.25, 0.25.

    >>> froc([0.9, 0.8, 0.7], [True, False, True], 2, 4, rates=[0.125, 0.25])["sensitivity"]
    [0.5, 1.0]
    """
    if n_images <= 0:
        raise ConfigError(f"n_images must be positive, got {n_images}")
    curve = pr_curve(scores, matched, n_truth)
    fppi = curve["fp"] / n_images
    if n_truth <= 0:
        return {"rates": list(map(float, rates)), "sensitivity": [None] * len(rates), "mean": None,
                "fppi": fppi, "curve_sensitivity": np.full(fppi.shape, np.nan)}
    sens = curve["tp"] / n_truth
    out = []
    for r in rates:
        ok = np.flatnonzero(fppi <= r + 1e-12)
        out.append(float(sens[ok[-1]]) if ok.size else 0.0)
    return {"rates": list(map(float, rates)), "sensitivity": out, "mean": float(np.mean(out)), "fppi": fppi, "curve_sensitivity": sens}


def class_confusion(
    truth: Annotations,
    preds: Annotations,
    iou_threshold: float,
    score_threshold: float,
    labels: Sequence[str] = LABELS,
) -> np.ndarray:
    """Box-level class confusion, matching boxes regardless of class.

    Predictions with ``score >= score_threshold`` are matched greedily in descending score order
    to the untaken truth box of the same image with the highest IoU (> ``iou_threshold``), of any
    class. Returns an ``(L + 1, L + 1)`` count matrix, rows = truth class, columns = predicted
    class, in the order of ``labels`` (default all 15 labels); the last row counts predictions
    matching no truth box (background), the last column truth boxes no prediction matched (missed).
    """
    check_scorable(truth, "truth", scored=False)
    check_scorable(preds, "preds", scored=True)
    index = {lab: i for i, lab in enumerate(labels)}
    n = len(labels)
    cm = np.zeros((n + 1, n + 1), dtype=np.int64)
    tl, ti, tb = truth.label, truth.image_id, truth.boxes
    keep = np.flatnonzero(preds.score >= score_threshold)
    pi, plab, pb, ps = preds.image_id[keep], preds.label[keep], preds.boxes[keep], preds.score[keep]
    by_image: dict[object, list[int]] = {}
    for j, img in enumerate(ti.tolist()):
        by_image.setdefault(img, []).append(j)
    pred_by_image: dict[object, list[int]] = {}
    for j, img in enumerate(pi.tolist()):
        pred_by_image.setdefault(img, []).append(j)
    for img in set(by_image) | set(pred_by_image):
        trows = np.asarray(by_image.get(img, []), dtype=np.int64)
        prows = np.asarray(pred_by_image.get(img, []), dtype=np.int64)
        prows = prows[np.argsort(-ps[prows], kind="stable")] if prows.size else prows
        taken = np.zeros(trows.size, dtype=bool)
        ious = box_iou(pb[prows], tb[trows]) if prows.size and trows.size else np.zeros((prows.size, trows.size))
        for a, p in enumerate(prows.tolist()):
            col = index.get(plab[p])
            if col is None:
                continue
            cand = np.where(taken, -1.0, ious[a]) if trows.size else np.zeros(0)
            j = int(np.argmax(cand)) if cand.size else -1
            if j >= 0 and cand[j] > iou_threshold:
                taken[j] = True
                row = index.get(tl[trows[j]])
                if row is not None:
                    cm[row, col] += 1
            else:
                cm[n, col] += 1
        for j in np.flatnonzero(~taken).tolist():
            row = index.get(tl[trows[j]])
            if row is not None:
                cm[row, n] += 1
    return cm
