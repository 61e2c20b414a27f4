"""Scoring detections against ground truth.

- :func:`kaggle_map`: the VinBigData competition metric (VOC 2010 AP at IoU > 0.4);
- :func:`evaluate`: every metric at once (Kaggle mAP, findings-only mAP, COCO mAP,
  precision/recall/F1, accuracy, ROC-AUC, FROC, bootstrap intervals) as a JSON-ready
  :class:`EvaluationResult`;
- :func:`evaluate_mean`: the mean score of several models' predictions of the same images, with
  bootstrap intervals of the mean; :func:`evaluate_difference`: the paired difference of two sets
  of predictions of the same images (what a step added), with its bootstrap interval;
- :func:`read_predictions`, :func:`read_truth`: the CSV files, with bad rows listed as problems
  (image sizes: :func:`thoracic.data.read_image_sizes`);
- :func:`human_baseline`: each reader scored against the fusion of the others.

Truth and predictions are :class:`~thoracic.data.Annotations` (predictions with scores); IoUs are
:func:`thoracic.boxes.box_iou`.

>>> from thoracic.data import Annotations, ImageInfo
>>> from thoracic.evaluate import kaggle_map
>>> truth = Annotations.from_rows([ImageInfo("a")], [("a", "No finding", 0, 0, 1, 1)])
>>> preds = Annotations.from_rows([ImageInfo("a")], [("a", "No finding", 0, 0, 1, 1, "", 1.0)])
>>> kaggle_map(truth, preds).map
1.0
"""

from thoracic.evaluate.baseline import BaselineResult, human_baseline
from thoracic.evaluate.bootstrap import bootstrap_intervals, resample_weights
from thoracic.evaluate.classification import image_matrix, roc_auc, roc_curve
from thoracic.evaluate.coco import COCO_STATS, coco_map
from thoracic.evaluate.detection import (
    FROC_RATES,
    best_f1,
    class_confusion,
    froc,
    match,
    pr_curve,
    prf,
)
from thoracic.evaluate.evaluate import (
    METRICS_KEYS,
    EvaluationConfig,
    EvaluationResult,
    evaluate,
    evaluate_difference,
    evaluate_mean,
    load_curves,
    markdown_summary,
    write_results,
)
from thoracic.evaluate.kaggle import KAGGLE_IOU_THRESHOLD, MapResult, average_precision, kaggle_map
from thoracic.evaluate.tables import read_predictions, read_truth

__all__ = [
    "BaselineResult",
    "COCO_STATS",
    "EvaluationConfig",
    "EvaluationResult",
    "FROC_RATES",
    "KAGGLE_IOU_THRESHOLD",
    "METRICS_KEYS",
    "MapResult",
    "average_precision",
    "best_f1",
    "bootstrap_intervals",
    "class_confusion",
    "coco_map",
    "evaluate",
    "evaluate_difference",
    "evaluate_mean",
    "froc",
    "human_baseline",
    "image_matrix",
    "kaggle_map",
    "load_curves",
    "markdown_summary",
    "match",
    "pr_curve",
    "prf",
    "read_predictions",
    "read_truth",
    "resample_weights",
    "roc_auc",
    "roc_curve",
    "write_results",
]
