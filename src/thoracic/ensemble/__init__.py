"""Ensembles: fusing boxes of several readers, models or test-time augmentations."""

from .wbf import CONF_TYPES, box_iou, nms, weighted_boxes_fusion

__all__ = ["CONF_TYPES", "box_iou", "nms", "weighted_boxes_fusion"]
