"""OnnxClassifier: the shipped 2-class classifier unchanged, and multi-label EfficientNet-Lite models."""

from __future__ import annotations

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS


def test_a_two_class_classifier_keeps_working(classifier_onnx, chest_png):
    from thoracic.classify import Classification, OnnxClassifier

    clf = OnnxClassifier.load(classifier_onnx, threads=1)
    p = clf.p_abnormal(chest_png)
    result = clf.classify(chest_png, features=True)
    assert isinstance(result, Classification) and 0.0 <= p <= 1.0
    assert result.p_abnormal == pytest.approx(p, abs=1e-7)
    assert set(result.probabilities) == {"normal", "abnormal"} and not result.findings
    assert result.probabilities["normal"] + result.probabilities["abnormal"] == pytest.approx(1.0, abs=1e-5)
    assert not clf.multilabel and not clf.has_maps and not result.has_maps
    with pytest.raises(ConfigError, match="no class activation maps"):
        result.finding_map("abnormal")


def test_a_multilabel_classifier_gives_p_abnormal_and_each_finding(lite_classifier, chest_png):
    import torch

    from thoracic.classify import OnnxClassifier
    from thoracic.preprocess.model_input import prepare_8bit
    from thoracic.train.finetune import to_input

    model, path = lite_classifier
    clf = OnnxClassifier.load(path, threads=1)
    assert clf.multilabel and clf.has_maps and clf.labels == model.labels and clf.low == 0.3
    result = clf.classify(chest_png)
    assert result.p_abnormal == pytest.approx(clf.p_abnormal(chest_png), abs=1e-7)
    assert result.p_abnormal == result.probabilities["abnormal"]
    assert list(result.findings) == list(model.labels[1:]) and set(result.findings) <= set(FINDINGS)
    assert result.feature is None and not result.has_maps  # maps only when asked for
    prepared = prepare_8bit(clf.meta.chain, chest_png)
    with torch.no_grad():
        ref = torch.sigmoid(model(to_input((prepared.pixels * 255 + 0.5).astype(np.uint8)[None]
                                          if prepared.pixels.dtype != np.uint8 else prepared.pixels[None])))[0]
    np.testing.assert_allclose([result.probabilities[k] for k in model.labels], ref.numpy(), atol=1e-5)


def test_finding_maps_have_the_image_shape(lite_classifier, chest_crop_png):
    import cv2

    from thoracic.classify import OnnxClassifier

    _, path = lite_classifier
    result = OnnxClassifier.load(path, threads=1).classify(chest_crop_png, features=True)
    h, w = cv2.imread(str(chest_crop_png), cv2.IMREAD_GRAYSCALE).shape
    assert result.has_maps and result.image_size == (w, h)
    for label in ("abnormal", "Cardiomegaly"):
        heat = result.finding_map(label)
        assert heat.shape == (h, w) and heat.dtype == np.float32
        assert 0.0 <= heat.min() and heat.max() <= 1.0 and heat.std() > 0.01  # non-constant
    with pytest.raises(ConfigError, match="unknown classifier label"):
        result.finding_map("Hernia")


def test_a_classification_pickles_and_draws_its_maps_at_any_size(lite_classifier, chest_png):
    import pickle

    import cv2

    from thoracic.classify import OnnxClassifier

    _, path = lite_classifier
    clf = OnnxClassifier.load(path, threads=1)
    assert clf.thresholds == {label: pytest.approx(0.25 + 0.05 * i) for i, label in enumerate(clf.labels)}
    result = clf.classify(chest_png, features=True)
    back = pickle.loads(pickle.dumps(result))  # results cross processes (Ray)
    assert dict(back.probabilities) == dict(result.probabilities) and back.has_maps
    full = result.finding_map("Cardiomegaly")
    np.testing.assert_array_equal(back.finding_map("Cardiomegaly"), full)
    h, w = full.shape
    small = result.finding_map("Cardiomegaly", (w // 4, h // 4))
    assert small.shape == (h // 4, w // 4) and small.dtype == np.float32
    # drawn at the smaller size directly, it is the full-size map scaled down
    scaled = cv2.resize(full, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    assert np.abs(small - scaled).mean() < 0.02 and np.corrcoef(small.ravel(), scaled.ravel())[0, 1] > 0.99
    assert result.finding_map("Cardiomegaly", (w, h)).shape == (h, w)


def test_a_two_class_classifier_stores_no_thresholds(classifier_onnx):
    from thoracic.classify import OnnxClassifier

    assert OnnxClassifier.load(classifier_onnx, threads=1).thresholds == {}
