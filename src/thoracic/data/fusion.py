"""Consensus of several readers: one set of boxes per image from the boxes of all readers.

Methods (:class:`FusionConfig`):

- ``"wbf"``: weighted box fusion (:func:`thoracic.boxes.weighted_boxes_fusion`), each reader
  one "model". Human boxes have no score, so every box scores 1.0 (as the VinBigData community
  fused the three radiologists); a fused box's score is then the share of the image's readers
  that drew it (with ``conf_type="avg"``). Readers who said "No finding" on an image others
  found something on count as readers with no boxes.
- ``"nms"``: class-wise non-maximum suppression over all readers' boxes (equal scores: the box
  listed last in the table wins, deterministically).
- ``"all"``: keep every reader's boxes unchanged.

With every method an image is normal when no finding box survives; it then gets one "No finding"
row (``0 0 1 1``). Images without any row stay without rows. Fused rows have reader ``""``.
Image sizes normalize boxes for WBF (as ensemble-boxes expects); when a size is unknown the largest
box coordinate of the image is used instead, which gives the same clusters (fusion is invariant to
scaling each axis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from thoracic.boxes import CONF_TYPES, nms, weighted_boxes_fusion
from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS, NO_FINDING, NO_FINDING_BOX

__all__ = ["FUSION_METHODS", "FusionConfig", "class_counts", "fuse_readers", "has_several_readers", "image_groups"]

FUSION_METHODS = ("all", "nms", "wbf")


@dataclass(frozen=True)
class FusionConfig:
    """How readers are fused.

    Attributes
    ----------
    method:
        ``"wbf"`` (default), ``"nms"`` or ``"all"``.
    iou_thr:
        Boxes of one class overlapping more than this are one finding (WBF clusters, NMS
        suppression). Default 0.4, the IoU of the competition metric.
    skip_box_thr:
        WBF ignores boxes scoring below this (human boxes score 1.0).
    conf_type:
        WBF confidence (see :data:`thoracic.boxes.CONF_TYPES`).
    reader_weights:
        ``(reader, weight)`` pairs; readers not listed weigh 1.
    """

    method: str = "wbf"
    iou_thr: float = 0.4
    skip_box_thr: float = 0.0
    conf_type: str = "avg"
    reader_weights: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ConfigError.unknown("fusion method", self.method, FUSION_METHODS)
        if self.conf_type not in CONF_TYPES:
            raise ConfigError.unknown("conf_type", self.conf_type, CONF_TYPES)
        if not 0.0 <= self.iou_thr <= 1.0:
            raise ConfigError(f"iou_thr must be in [0, 1], got {self.iou_thr}")
        if not 0.0 <= self.skip_box_thr <= 1.0:
            raise ConfigError(f"skip_box_thr must be in [0, 1], got {self.skip_box_thr}")
        for reader, w in self.reader_weights:
            if not (isinstance(w, int | float) and w > 0 and math.isfinite(w)):
                raise ConfigError(f"weight of reader {reader!r} must be positive, got {w!r}")


def image_groups(ann: Annotations) -> dict[str, np.ndarray]:
    """``image_id -> row indices`` (in table order), for every image that has rows."""
    if not len(ann):
        return {}
    ids = ann.image_id.astype(str)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], len(order)]
    return {str(sorted_ids[s]): order[s:e] for s, e in zip(starts, ends, strict=True)}


def has_several_readers(ann: Annotations) -> bool:
    """Whether any image has rows of more than one reader (what the ``auto`` fusion of the export and
    of cross-validation fuses; a one-reader table is used as it is)."""
    return any(len(set(ann.reader[idx].tolist())) > 1 for idx in image_groups(ann).values())


def fuse_readers(ann: Annotations, config: FusionConfig | None = None) -> Annotations:
    """One consensus set of boxes per image (see the module docstring).

    Deterministic: the same table and config give the same rows in the same order.
    """
    config = config or FusionConfig()
    weights_of: Mapping[str, float] = dict(config.reader_weights)
    finding = ann.is_finding
    ids: list[str] = []
    labels: list[str] = []
    boxes: list[np.ndarray] = []
    readers: list[str] = []
    scores: list[np.ndarray] = []
    for iid, idx in image_groups(ann).items():
        f_idx = idx[finding[idx]]
        if len(f_idx):
            if config.method == "all":
                b, s, lab, r = ann.boxes[f_idx], ann.score[f_idx], ann.label[f_idx].astype(str), ann.reader[f_idx].astype(str)
            else:
                b, s, cid = _fuse_image(ann, idx, f_idx, config, weights_of)
                lab, r = np.asarray(LABELS, dtype=object)[cid].astype(str), np.full(len(b), "")
            if len(b):
                ids.extend([iid] * len(b))
                labels.extend(lab.tolist())
                boxes.append(np.asarray(b, dtype=np.float64).reshape(-1, 4))
                readers.extend(r.tolist())
                scores.append(np.asarray(s, dtype=np.float64))
                continue
        ids.append(iid)
        labels.append(NO_FINDING)
        boxes.append(np.asarray([NO_FINDING_BOX], dtype=np.float64))
        readers.append("")
        scores.append(np.array([np.nan]))
    return Annotations(
        ann.images,
        np.asarray(ids, dtype=object),
        np.asarray(labels, dtype=object),
        np.concatenate(boxes) if boxes else np.zeros((0, 4)),
        np.asarray(readers, dtype=object),
        np.concatenate(scores) if scores else np.zeros(0),
        ann.problems,
        ann.name,
    )


def _fuse_image(
    ann: Annotations, idx: np.ndarray, f_idx: np.ndarray, config: FusionConfig, weights_of: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    info = ann.images[str(ann.image_id[idx[0]])]
    b_all = ann.boxes[f_idx]
    if info.width and info.height:
        size = (float(info.width), float(info.height))
    else:
        size = (float(b_all[:, 2].max()), float(b_all[:, 3].max()))
    names = sorted(set(ann.reader[idx].astype(str).tolist()))
    r_of = ann.reader[f_idx].astype(str)
    cid_all = np.fromiter((CLASS_IDS[x] for x in ann.label[f_idx]), dtype=np.int64, count=len(f_idx))
    s_all = np.where(np.isnan(ann.score[f_idx]), 1.0, ann.score[f_idx])
    b_list, s_list, l_list = [], [], []
    for name in names:
        m = r_of == name
        b_list.append(b_all[m])
        s_list.append(s_all[m])
        l_list.append(cid_all[m])
    w = [weights_of.get(n, 1.0) for n in names]
    if config.method == "wbf":
        return weighted_boxes_fusion(
            b_list, s_list, l_list, size, weights=w, iou_thr=config.iou_thr,
            skip_box_thr=config.skip_box_thr, conf_type=config.conf_type,
        )
    return nms(b_list, s_list, l_list, size, weights=w if config.reader_weights else None, iou_thr=config.iou_thr)


def class_counts(before: Annotations, after: Annotations) -> list[dict[str, int | str]]:
    """Per label: rows and images before and after fusion (the "No finding" line counts rows).

    Returns one dict per label in Kaggle id order with ``class_id, label, boxes_before,
    boxes_after, images_before, images_after``, and a final ``total`` line of the findings.
    """
    out: list[dict[str, int | str]] = []
    tb, ta = before.label_counts(), after.label_counts()
    for cid, label in enumerate(LABELS):
        out.append(
            {
                "class_id": cid,
                "label": label,
                "boxes_before": tb.get(label, 0),
                "boxes_after": ta.get(label, 0),
                "images_before": len(set(before.image_id[before.label == label].tolist())),
                "images_after": len(set(after.image_id[after.label == label].tolist())),
            }
        )
    out.append(
        {
            "class_id": "",
            "label": "total findings",
            "boxes_before": int(before.is_finding.sum()),
            "boxes_after": int(after.is_finding.sum()),
            "images_before": len(before.abnormal_images()),
            "images_after": len(after.abnormal_images()),
        }
    )
    return out
