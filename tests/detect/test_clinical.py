"""What a clinician sees: per-finding operating points from the detector's metadata, stacks merged."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import model_with_meta

from thoracic.boxes import box_iou
from thoracic.detect import OnnxDetector
from thoracic.detect.clinical import DEFAULT_MIN_SCORE, MERGE_IOU, OperatingPoints
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.inference.predictor import Predictor
from thoracic.labels import CLASS_IDS, FINDINGS

SIZE = (1024, 1024)


def _det(rows) -> Detections:
    """Detections from ``(label, score, box)`` rows."""
    return Detections([b for _, _, b in rows], [s for _, s, _ in rows], [CLASS_IDS[lab] for lab, _, _ in rows], SIZE)


def test_each_finding_from_its_operating_point_and_none_without_one():
    det = _det([
        ("Cardiomegaly", 0.50, (300, 400, 700, 800)),
        ("Cardiomegaly", 0.20, (10, 10, 60, 60)),  # below its point
        ("Nodule/Mass", 0.40, (100, 100, 150, 150)),  # below its point
        ("Nodule/Mass", 0.47, (800, 100, 850, 150)),
        ("Pneumothorax", 0.90, (600, 50, 900, 400)),  # no operating point: never shown
    ])
    shown = OperatingPoints({"Cardiomegaly": 0.3, "Nodule/Mass": 0.46}).select(det)
    assert shown.labels == ("Cardiomegaly", "Nodule/Mass")
    np.testing.assert_allclose(shown.scores, [0.50, 0.47], rtol=1e-6)
    np.testing.assert_allclose(shown.boxes, [[300, 400, 700, 800], [800, 100, 850, 150]])
    # a score exactly at the point (stored as float32) is shown
    at = OperatingPoints({"Nodule/Mass": 0.47}).select(det)
    assert at.labels == ("Nodule/Mass",)


def test_without_operating_points_every_finding_from_the_one_default():
    points = OperatingPoints.default_points()
    assert points.source == "default" and points.scores == {}
    assert {points.threshold(f) for f in FINDINGS} == {DEFAULT_MIN_SCORE}
    det = _det([("Atelectasis", DEFAULT_MIN_SCORE + 0.01, (0, 0, 50, 50)),
                ("Pneumothorax", DEFAULT_MIN_SCORE - 0.01, (500, 500, 600, 600))])
    assert points.select(det).labels == ("Atelectasis",)
    assert OperatingPoints.uniform(0.05).select(det).labels == ("Atelectasis", "Pneumothorax")


def test_a_stack_of_one_finding_becomes_one_box():
    rng = np.random.default_rng(0)
    base = np.array([95, 290, 435, 857], float)
    stack = [("Pleural effusion", s, tuple(base + rng.uniform(-25, 25, 4))) for s in (0.9, 0.8, 0.75, 0.7, 0.6, 0.55, 0.5, 0.45)]
    other_side = ("Pleural effusion", 0.6, (784, 619, 969, 778))
    heart = ("Cardiomegaly", 0.7, (120, 320, 450, 840))  # overlaps the stack, but another finding
    det = _det([*stack, other_side, heart])
    ious = box_iou(det.boxes[:8], det.boxes[:8])
    assert ious[np.triu_indices(8, 1)].min() > MERGE_IOU  # every pair of the stack overlaps

    shown = OperatingPoints({"Pleural effusion": 0.3, "Cardiomegaly": 0.3}).select(det)
    assert sorted(shown.labels) == ["Cardiomegaly", "Pleural effusion", "Pleural effusion"]
    merged = [i for i, (lab, b) in enumerate(zip(shown.labels, shown.boxes.tolist(), strict=True))
              if lab == "Pleural effusion" and b[0] < 500]
    assert len(merged) == 1
    i = merged[0]
    # the merged box is the score-weighted mean of the stack and scores what its best box scored
    boxes = np.array([b for _, _, b in stack])
    scores = np.array([s for _, s, _ in stack])
    np.testing.assert_allclose(shown.boxes[i], (scores[:, None] * boxes).sum(0) / scores.sum(), atol=0.05)
    assert shown.scores[i] == pytest.approx(0.9)
    np.testing.assert_allclose(shown.boxes[shown.labels.index("Cardiomegaly")], heart[2])
    # boxes below the point do not pull the merged box
    high = OperatingPoints({"Pleural effusion": 0.72}).select(det)
    np.testing.assert_allclose(high.boxes[0], (scores[:3, None] * boxes[:3]).sum(0) / scores[:3].sum(), atol=0.05)


def test_merging_starts_above_the_documented_iou():
    apart = _det([("Nodule/Mass", 0.9, (0, 0, 100, 100)), ("Nodule/Mass", 0.8, (0, 0, 35, 100))])  # IoU 0.35
    close = _det([("Nodule/Mass", 0.9, (0, 0, 100, 100)), ("Nodule/Mass", 0.8, (0, 0, 45, 100))])  # IoU 0.45
    assert box_iou(apart.boxes[:1], apart.boxes[1:])[0, 0] < MERGE_IOU < box_iou(close.boxes[:1], close.boxes[1:])[0, 0]
    points = OperatingPoints.uniform(0.1)
    assert len(points.select(apart)) == 2 and len(points.select(close)) == 1
    assert len(points.select(Detections.empty(SIZE))) == 0


def test_bad_points_are_refused():
    with pytest.raises(ConfigError, match="unknown finding"):
        OperatingPoints({"Fracture": 0.3})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        OperatingPoints({"Cardiomegaly": 1.2})
    with pytest.raises(ConfigError, match="negative"):
        OperatingPoints.uniform(-0.1)


def test_operating_points_from_the_detector_metadata(detector_onnx, tmp_path):
    points = {"Cardiomegaly": 0.09, "Nodule/Mass": 0.46}
    with_points = model_with_meta(detector_onnx, tmp_path / "points.onnx", extra={"operating_points": points})
    without = model_with_meta(detector_onnx, tmp_path / "plain.onnx", extra={})
    det = OnnxDetector.load(with_points, threads=1)
    assert det.meta.operating_points == points
    op = Predictor([det]).operating_points
    assert op.source == "model" and op.scores == points
    assert op.threshold("Pleural effusion") is None  # in the model, no point: never shown
    plain = OnnxDetector.load(without, threads=1)
    assert plain.meta.operating_points == {}
    assert Predictor([plain]).operating_points == OperatingPoints.default_points()
    # an ensemble's fused scores are no single model's: the default
    assert Predictor([det, plain]).operating_points == OperatingPoints.default_points()


@pytest.mark.parametrize("points, message", [
    ({"Aortic enlargement": 0.3}, "not trained on"),
    ({"Cardiomegaly": 1.5}, "score in"),
    ({"Cardiomegaly": "high"}, "score in"),
    ([0.3], "must map"),
])
def test_bad_operating_points_in_a_model_file_are_refused(detector_onnx, tmp_path, points, message):
    bad = model_with_meta(detector_onnx, tmp_path / "bad.onnx", extra={"operating_points": points},
                          trained_classes=list(FINDINGS[1:8]))
    with pytest.raises(ConfigError, match=message):
        OnnxDetector.load(bad, threads=1)
