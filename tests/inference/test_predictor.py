"""The Predictor: an ensemble of detectors, the 2-class filter, the lung crop."""

from __future__ import annotations

import numpy as np
import pytest

from thoracic.detect import DetectorConfig, OnnxDetector
from thoracic.inference.predictor import PredictConfig, Predictor


def test_ensemble_of_two_copies_equals_one_model(detector_onnx, chest_png):
    # NMS at 0.5 and WBF at 0.8: no two boxes one model keeps fuse with each other (clipping to
    # the image can raise the IoU of boxes NMS kept apart, hence the margin)
    scores = np.unique(OnnxDetector.load(detector_onnx).predict(chest_png, DetectorConfig(conf=0.0001, max_det=300)).scores)
    conf = float(scores[::-1][min(20, len(scores) - 1)])
    one = Predictor.load([detector_onnx], config=PredictConfig(conf=conf, iou=0.5), use_classifier=False).predict(chest_png)
    cfg = PredictConfig(conf=conf, iou=0.5, wbf_iou=0.8, weights=(1.0, 2.0))
    two = Predictor.load([detector_onnx, detector_onnx], config=cfg, use_classifier=False).predict(chest_png)
    assert len(one.detections) > 0 and len(two.detections) == len(one.detections)
    o1 = np.lexsort((one.detections.boxes[:, 0], one.detections.class_ids))
    o2 = np.lexsort((two.detections.boxes[:, 0], two.detections.class_ids))
    np.testing.assert_allclose(two.detections.boxes[o2], one.detections.boxes[o1], atol=1e-3)
    np.testing.assert_allclose(two.detections.scores[o2], one.detections.scores[o1], atol=1e-5)


def test_classifier_filter(detector_onnx, classifier_onnx, chest_png):
    keep = Predictor.load([detector_onnx], classifier_onnx, PredictConfig(conf=0.001, low=0.0)).predict(chest_png)
    drop = Predictor.load([detector_onnx], classifier_onnx, PredictConfig(conf=0.001, low=1.0)).predict(chest_png)
    plain = Predictor.load([detector_onnx], config=PredictConfig(conf=0.001), use_classifier=False).predict(chest_png)
    assert keep.p_abnormal is not None and 0.0 <= keep.p_abnormal <= 1.0
    assert len(keep.detections) == len(plain.detections) > 0 and not keep.filtered
    assert len(drop.detections) == 0 and drop.filtered
    assert keep.no_finding_score == pytest.approx(1.0 - keep.p_abnormal)
    assert plain.no_finding_score == pytest.approx(1.0 - float(plain.detections.scores.max()))


def test_lung_roi_maps_boxes_back_to_the_original(detector_onnx, chest_png):
    pytest.importorskip("thoracic.anatomy")
    pred = Predictor.load([detector_onnx], config=PredictConfig(conf=0.001, lung_roi=True), use_classifier=False).predict(chest_png)
    assert pred.roi is not None and len(pred.detections) > 0
    x0, y0, x1, y1 = pred.roi
    b = pred.detections.boxes
    assert pred.detections.image_size == (1024, 1024)
    assert (b[:, 0] >= max(x0, 0) - 1).all() and (b[:, 2] <= min(x1, 1024) + 1).all()
    assert (b[:, 1] >= max(y0, 0) - 1).all() and (b[:, 3] <= min(y1, 1024) + 1).all()
