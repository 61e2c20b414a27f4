"""Scoring detections against ground truth.

>>> from thoracic.evaluate import kaggle_map
>>> kaggle_map([("a", "No finding", 0, 0, 1, 1)], [("a", "No finding", 1.0, 0, 0, 1, 1)]).map
1.0
"""

from .kaggle import KAGGLE_IOU_THRESHOLD, MapResult, average_precision, iou_matrix, kaggle_map

__all__ = [
    "KAGGLE_IOU_THRESHOLD",
    "MapResult",
    "average_precision",
    "iou_matrix",
    "kaggle_map",
]
