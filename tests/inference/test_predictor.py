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


def _with_trained(src, out, trained):
    """A copy of the detector ``src`` whose metadata says it was trained on ``trained`` (``None``:
    no ``trained_classes`` recorded)."""
    import json
    from dataclasses import replace

    onnx = pytest.importorskip("onnx")
    from thoracic.models.meta import META_KEY, ModelMeta
    from thoracic.models.runtime import write_meta

    proto = onnx.load(str(src))
    meta = ModelMeta.from_metadata({e.key: e.value for e in proto.metadata_props})
    write_meta(proto, replace(meta, trained_classes=tuple(trained or ())))
    if trained is None:
        entry = next(e for e in proto.metadata_props if e.key == META_KEY)
        data = json.loads(entry.value)
        del data["trained_classes"]
        entry.value = json.dumps(data)
    onnx.save(proto, str(out))
    return out


def test_an_ensemble_outputs_only_classes_a_member_was_trained_on(tiny_onnx, chest_png, tmp_path):
    from thoracic.boxes import weighted_boxes_fusion
    from thoracic.labels import CLASS_IDS, FINDINGS

    a = _with_trained(tiny_onnx, tmp_path / "a.onnx", FINDINGS[:3])
    b = _with_trained(tiny_onnx, tmp_path / "b.onnx", FINDINGS[3:5])  # neither knows ILD (FINDINGS[5])
    cfg = PredictConfig(conf=0.001, max_det=300)
    raw = OnnxDetector.load(a).predict(chest_png, DetectorConfig(conf=0.001, max_det=300))
    assert set(raw.class_ids.tolist()) - set(range(5)), "the tiny head scores untrained classes too"
    ids = {CLASS_IDS[n] for n in FINDINGS[:5]}
    both = Predictor.load([a, b], config=cfg, use_classifier=False).predict(chest_png)
    assert len(both.detections) and set(both.detections.class_ids.tolist()) <= ids
    assert "ILD" not in both.detections.labels
    # a single model too: only its own classes
    one = Predictor.load([a], config=cfg, use_classifier=False).predict(chest_png)
    assert len(one.detections) and set(one.detections.labels) <= set(FINDINGS[:3])
    # a class one member knows is fused over that member alone (its score is not halved by the other)
    found = OnnxDetector.load(a).predict(chest_png, cfg.detector_config()).only(range(3))
    _, alone, _ = weighted_boxes_fusion([found.boxes], [found.scores], [found.class_ids], found.image_size,
                                        iou_thr=cfg.wbf_iou, clip=True)
    in_both = np.sort(both.detections.only(range(3)).scores)[::-1]
    assert len(in_both) > 0
    np.testing.assert_allclose(in_both, np.sort(alone[alone >= cfg.conf])[::-1][: len(in_both)], atol=1e-6)
    # a member with no trained classes recorded counts with all its names
    c = _with_trained(tiny_onnx, tmp_path / "c.onnx", None)
    assert OnnxDetector.load(c).meta.trained_classes == tuple(FINDINGS)
    all3 = Predictor.load([a, b, c], config=cfg, use_classifier=False)
    assert all3.trained_ids()[2] == frozenset(range(14))
    assert set(all3.predict(chest_png).detections.class_ids.tolist()) - ids


def test_identical_boxes_are_written_once(detector_onnx, chest_png):
    # at wbf_iou 1 nothing fuses: two copies of one model would give every box twice
    cfg = PredictConfig(conf=0.01, wbf_iou=1.0)
    two = Predictor.load([detector_onnx, detector_onnx], config=cfg, use_classifier=False).predict(chest_png).detections
    one = Predictor.load([detector_onnx], config=PredictConfig(conf=0.005), use_classifier=False).predict(chest_png).detections
    assert len(two) > 0
    key = np.concatenate([two.class_ids[:, None], two.boxes], axis=1)
    assert len(np.unique(key, axis=0)) == len(two)
    assert len(two) <= len(one)
