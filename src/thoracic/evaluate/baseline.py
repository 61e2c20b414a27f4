"""The human baseline: each reader scored against the fusion of the other readers of the same images.

Readers give no scores, so AP is not meaningful; the baseline is precision, recall and F1 at an
IoU threshold per class (with "No finding" as a class, box ``0 0 1 1``), counted over every
(reader, image) pair and also per reader. Matching is :func:`~thoracic.evaluate.match` with all
scores equal (a reader's boxes are matched in table order).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError
from thoracic.evaluate.detection import match
from thoracic.labels import LABELS, NO_FINDING

__all__ = ["BaselineResult", "human_baseline"]

Fusion = Callable[[Annotations], Annotations]


def _default_fusion() -> Fusion:
    from thoracic.data.fusion import FusionConfig, fuse_readers

    config = FusionConfig(method="wbf")
    return lambda table: fuse_readers(table, config)


def _counts(tp: int, fp: int, fn: int) -> dict[str, Any]:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
    }


@dataclass(frozen=True)
class BaselineResult:
    """Counts and P/R/F1 by class, over all readers (``overall``) and per reader (``readers``).

    ``overall`` and each ``readers[r]`` map a label (and ``"all findings"``, the micro average of
    the 14 findings) to ``tp, fp, fn, precision, recall, f1``; ``images`` counts the images each
    reader annotated.
    """

    iou: float
    overall: dict[str, dict[str, Any]]
    readers: dict[str, dict[str, dict[str, Any]]]
    images: dict[str, int]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"iou": self.iou, "images": self.images, "overall": self.overall, "readers": self.readers, "notes": list(self.notes)}


def human_baseline(table: Annotations, *, iou: float = 0.4, fusion: Fusion | None = None, min_readers: int = 2) -> BaselineResult:
    """Score each reader against the fusion of the other readers on the images it annotated.

    Parameters
    ----------
    table:
        Multi-reader annotations (``reader`` set on every row), e.g. from
        :func:`thoracic.data.load_vinbigdata` or :func:`~thoracic.evaluate.read_truth`.
    iou:
        A reader's box matches a fused box of its class at IoU strictly above this.
    fusion:
        Turns the other readers' rows into one truth (default: the datasets' weighted box fusion,
        :func:`thoracic.data.fusion.fuse_readers` with ``method="wbf"``). Any callable taking and
        returning an :class:`Annotations` works.
    min_readers:
        Images with fewer readers are skipped (a reader needs at least one other reader).

    Raises
    ------
    ConfigError
        Rows without a reader, or a bad ``iou``.
    """
    if not 0.0 <= iou <= 1.0:
        raise ConfigError(f"iou must be in [0, 1], got {iou!r}")
    if len(table) and (table.reader == "").any():
        raise ConfigError("every row needs a reader for the human baseline (reader column or Kaggle's rad_id)")
    fuse = fusion or _default_fusion()
    readers_of: dict[str, set[str]] = defaultdict(set)
    for image, reader in zip(table.image_id.tolist(), table.reader.tolist()):
        readers_of[image].add(reader)
    usable = {i for i, rs in readers_of.items() if len(rs) >= min_readers}
    skipped = len(readers_of) - len(usable)
    per_reader: dict[str, dict[str, list[int]]] = {}
    images: dict[str, int] = {}
    for reader in sorted(set(table.reader.tolist())):
        imgs = {i for i in usable if reader in readers_of[i]}
        if not imgs:
            continue
        images[reader] = len(imgs)
        on = np.fromiter((i in imgs for i in table.image_id.tolist()), dtype=bool, count=len(table))
        mine = on & (table.reader == reader)
        others = table.subset(on & (table.reader != reader)).select_images(imgs)
        truth = fuse(others)
        preds = table.subset(mine)
        matched, _ = match(truth, replace(preds, score=np.ones(len(preds))), iou)
        counts: dict[str, list[int]] = {}
        for lab in LABELS:
            n_true = int((truth.label == lab).sum())
            sel = preds.label == lab
            tp = int(matched[sel].sum())
            counts[lab] = [tp, int(sel.sum()) - tp, n_true - tp]
        per_reader[reader] = counts
    overall_counts = {lab: [sum(c[lab][k] for c in per_reader.values()) for k in range(3)] for lab in LABELS}

    def finish(c: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
        out = {lab: _counts(*c[lab]) for lab in LABELS}
        out["all findings"] = _counts(*(sum(c[lab][k] for lab in LABELS if lab != NO_FINDING) for k in range(3)))
        return out

    notes = (f"{skipped} image(s) with fewer than {min_readers} readers skipped",) if skipped else ()
    return BaselineResult(iou, finish(overall_counts), {r: finish(c) for r, c in per_reader.items()}, images, notes)
