"""COCO mAP@[.5:.95] and mAP@.5 of the finding boxes, computed by pycocotools (the ``eval`` extra).

Truth and predictions are :class:`~thoracic.data.Annotations`. The truth's images are COCO images
(also those without finding boxes, so false positives there count), finding classes are COCO categories with id ``class_id + 1``, and boxes are converted
from ``xyxy`` to COCO's ``xywh`` (area ``w * h``). "No finding" rows are left out: it is not a
localized finding. pycocotools keeps at most 100 detections per image (its default ``maxDets``)
and averages over categories that have truth boxes.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from thoracic.data.annotations import Annotations
from thoracic.errors import MissingDependencyError
from thoracic.labels import CLASS_IDS, NO_FINDING

__all__ = ["COCO_STATS", "coco_inputs", "coco_map"]

#: Names of the 12 numbers of ``COCOeval.stats``, in order.
COCO_STATS = (
    "map", "map50", "map75", "map_small", "map_medium", "map_large",
    "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large",
)  # fmt: skip


def _finding_boxes(index: Mapping[object, int], table: Annotations) -> Iterator[tuple[int, int, int, list[float]]]:
    """``(row, COCO image id, category id, xywh)`` of the table's finding boxes on indexed images."""
    for k, (img, lab) in enumerate(zip(table.image_id.tolist(), table.label.tolist())):
        if lab == NO_FINDING or lab not in CLASS_IDS or img not in index:
            continue
        x0, y0, x1, y1 = table.boxes[k].tolist()
        yield k, index[img], CLASS_IDS[lab] + 1, [x0, y0, x1 - x0, y1 - y0]


def coco_inputs(truth: Annotations, preds: Annotations) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ground-truth dataset dict and detection list (finding boxes only).

    The COCO images are ``truth.images`` (numbered from 1 in their order). Predictions on other
    images and "No finding" rows are left out.
    """
    index = {k: i + 1 for i, k in enumerate(truth.images)}
    cats = [{"id": cid + 1, "name": name} for name, cid in CLASS_IDS.items() if name != NO_FINDING]
    anns = [
        {"id": n + 1, "image_id": img, "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0}
        for n, (_, img, cat, bbox) in enumerate(_finding_boxes(index, truth))
    ]
    gt = {"images": [{"id": i} for i in index.values()], "annotations": anns, "categories": cats}
    dets = [
        {"image_id": img, "category_id": cat, "bbox": bbox, "score": float(preds.score[k])}
        for k, img, cat, bbox in _finding_boxes(index, preds)
    ]
    return gt, dets


def coco_map(truth: Annotations, preds: Annotations) -> dict[str, float | None]:
    """COCO's 12 summary numbers (:data:`COCO_STATS`) for the finding boxes.

    A number pycocotools reports as ``-1`` (nothing to average, e.g. no small boxes) is ``None``.
    Without any finding truth box every number is ``None``.

    Raises
    ------
    MissingDependencyError
        pycocotools is not installed (``pip install 'thoracic[eval]'``).
    """
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise MissingDependencyError.for_feature("COCO mAP", "pycocotools", "eval") from err
    gt, dets = coco_inputs(truth, preds)
    if not gt["annotations"]:
        return dict.fromkeys(COCO_STATS)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else COCO()
        if not dets:
            coco_dt.dataset = {"images": gt["images"], "annotations": [], "categories": gt["categories"]}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: (None if v < 0 else float(v)) for name, v in zip(COCO_STATS, ev.stats.tolist())}
