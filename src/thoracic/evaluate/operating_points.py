"""Choosing a detector's clinical operating points on validation data.

The clinical outputs (:mod:`thoracic.detect.clinical`) show a finding from its operating point,
stored in the detector's metadata. :func:`choose_operating_points` picks them, finding by
finding, by one rule:

1. The candidates are the scores of :data:`GRID` (0.05, 0.06, ..., 0.95).
2. For each candidate ``t`` the clinical list is made exactly as the clinical outputs make it
   (:meth:`OperatingPoints.select <thoracic.detect.clinical.OperatingPoints.select>`: boxes of the
   finding scoring at least ``t``, overlapping ones merged at :data:`~thoracic.detect.clinical.MERGE_IOU`),
   and matched to the truth boxes VOC style at IoU above ``iou`` (0.4, the Kaggle metric's;
   :func:`thoracic.evaluate.detection.match`); F1 = 2 TP / (2 TP + FP + FN).
3. The operating point is the candidate with the highest F1 (on a tie the higher score, fewer
   false alarms), when the finding has at least ``min_truth`` (:data:`MIN_TRUTH`, 10) truth boxes
   and that candidate finds at least ``min_tp`` (:data:`MIN_TP`, 3) of them. Otherwise (too few
   boxes to choose from, or a best F1 that rests on one or two hits) it is ``fallback``,
   :data:`~thoracic.detect.clinical.DEFAULT_MIN_SCORE`, and the choice says why.

Findings the model was not trained on are not candidates: they get no operating point and the
clinical outputs never show them.

>>> from thoracic.data.annotations import Annotations, ImageInfo
>>> img = {"a": ImageInfo("a", 100, 100)}
>>> truth = Annotations.from_rows(img, [("a", "Cardiomegaly", 20, 40, 80, 80)])
>>> preds = Annotations.from_rows(img, [("a", "Cardiomegaly", 21, 40, 80, 81, "", 0.62),
...                                     ("a", "Cardiomegaly", 0, 0, 20, 20, "", 0.3)])
>>> [c.threshold for c in choose_operating_points(truth, preds, ["Cardiomegaly"], min_truth=1, min_tp=1)]
[0.62]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from thoracic.data.annotations import Annotations
from thoracic.detect.clinical import DEFAULT_MIN_SCORE, MERGE_IOU, OperatingPoints
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.evaluate.detection import match
from thoracic.labels import CLASS_IDS

__all__ = ["GRID", "MIN_TP", "MIN_TRUTH", "OperatingPointChoice", "choices_markdown", "choose_operating_points"]

#: The candidate operating points.
GRID = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))
#: Fewer truth boxes than this in the validation data: too few to choose from.
MIN_TRUTH = 10
#: A best F1 that finds fewer truth boxes than this is not a choice (one or two hits are chance).
MIN_TP = 3


@dataclass(frozen=True)
class OperatingPointChoice:
    """The operating point chosen for one finding and what it gives on the validation data.

    ``tp``, ``fp``, ``fn``, ``precision``, ``recall`` and ``f1`` are those of the clinical list at
    ``threshold``; ``f1_default`` is F1 at the default operating point, for comparison.
    ``rule`` is ``"best F1"`` or why the default was taken.
    """

    finding: str
    n_truth: int
    threshold: float
    rule: str
    tp: int
    fp: int
    fn: int
    f1: float
    f1_default: float

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / self.n_truth if self.n_truth else None


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def _counts(truth: Annotations, per_image: dict[str, Detections], points: OperatingPoints,
            iou: float) -> tuple[int, int, int]:
    """TP, FP, FN of the clinical list of ``points`` against ``truth`` (one finding)."""
    rows = []
    for iid, det in per_image.items():
        shown = points.select(det)
        for label, score, box in zip(shown.labels, shown.scores.tolist(), shown.boxes.tolist(), strict=True):
            rows.append((iid, label, *box, "", score))
    preds = Annotations.from_rows(truth.images, rows)
    matched, _ = match(truth, preds, iou)
    tp = int(matched.sum())
    return tp, len(rows) - tp, len(truth) - tp


def choose_operating_points(
    truth: Annotations,
    preds: Annotations,
    findings: Sequence[str],
    *,
    iou: float = 0.4,
    grid: Sequence[float] = GRID,
    min_truth: int = MIN_TRUTH,
    min_tp: int = MIN_TP,
    fallback: float = DEFAULT_MIN_SCORE,
    merge_iou: float = MERGE_IOU,
) -> list[OperatingPointChoice]:
    """The operating point of each of ``findings`` (the model's trained classes) on validation data.

    Parameters
    ----------
    truth:
        The truth boxes of the validation images (every image of the validation set listed in
        ``truth.images``, negatives included: their false alarms count).
    preds:
        The model's boxes on those images, every score (``thoracic predict``'s ``--conf 0.01``).
    findings:
        The findings to choose for.
    iou, grid, min_truth, min_tp, fallback, merge_iou:
        The rule's settings (see the module's documentation).
    """
    if not grid:
        raise ConfigError("no candidate operating points")
    unknown = [f for f in findings if f not in CLASS_IDS]
    if unknown:
        raise ConfigError(f"unknown finding(s) {unknown}")
    out = []
    for finding in findings:
        cid = CLASS_IDS[finding]
        t_rows = [(i, lab, *b) for i, lab, b in zip(truth.image_id.tolist(), truth.label.tolist(),
                                                     truth.boxes.tolist(), strict=True) if lab == finding]
        t = Annotations.from_rows(truth.images, t_rows)
        per_image: dict[str, Detections] = {}
        for iid, info in truth.images.items():
            sel = (preds.image_id == iid) & (preds.label == finding)
            per_image[iid] = Detections(preds.boxes[sel], preds.score[sel], np.full(int(sel.sum()), cid),
                                        (info.width, info.height))
        scored = []
        for th in sorted({float(g) for g in grid}):
            tp, fp, fn = _counts(t, per_image, OperatingPoints({finding: th}, merge_iou=merge_iou), iou)
            scored.append((_f1(tp, fp, fn), th, tp, fp, fn))
        best = max(scored, key=lambda r: (r[0], r[1]))  # highest F1, then the higher score
        d_tp, d_fp, d_fn = _counts(t, per_image, OperatingPoints({finding: fallback}, merge_iou=merge_iou), iou)
        f1_default = _f1(d_tp, d_fp, d_fn)
        if len(t) < min_truth:
            rule = f"default: {len(t)} truth box(es), fewer than {min_truth}"
        elif best[2] < min_tp:
            rule = f"default: the best F1 ({best[0]:.3f} at {best[1]:.2f}) finds {best[2]} truth box(es), fewer than {min_tp}"
        else:
            rule = "best F1"
        if rule == "best F1":
            f1, th, tp, fp, fn = best
        else:
            f1, th, tp, fp, fn = f1_default, fallback, d_tp, d_fp, d_fn
        out.append(OperatingPointChoice(finding, len(t), float(th), rule, tp, fp, fn, float(f1), float(f1_default)))
    return out


def choices_markdown(choices: Sequence[OperatingPointChoice], default: float = DEFAULT_MIN_SCORE) -> str:
    """A Markdown table of the choices."""

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [f"| finding | truth boxes | operating point | rule | TP | FP | FN | precision | recall | F1 | F1 at {default:g} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in choices:
        lines.append(f"| {c.finding} | {c.n_truth} | {c.threshold:.2f} | {c.rule} | {c.tp} | {c.fp} | {c.fn} | "
                     f"{num(c.precision)} | {num(c.recall)} | {c.f1:.3f} | {c.f1_default:.3f} |")
    return "\n".join(lines)
