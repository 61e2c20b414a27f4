import numpy as np
import pytest

from thoracic.errors import ConfigError
from thoracic.models import list_models, model_path
from thoracic.models.meta import LUNGS_META_KEY, LungsMeta


def test_the_shipped_model_declares_its_contract(segmenter):
    c = segmenter.contract
    assert c.name == "lungs"
    assert c.input_size == (192, 192)
    assert c.chain.normalize == "window"
    assert c.normalization == "zscore"
    assert (c.threshold, c.keep_components, c.fill_holes) == (0.5, 2, True)  # chosen by cross-validation
    assert "CC BY" in " ".join(c.info["training_licences"])
    assert not any("NC" in lic for lic in c.info["training_licences"])


def test_shipped_model_is_small_and_registered():
    assert "lungs" in list_models()
    path = model_path("lungs")
    assert path.is_file()
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert (path.parent / "MODEL_CARD.md").is_file()
    from thoracic.models import model_card

    card = model_card("lungs")
    assert "eval_nc" in card and "CC BY" in card


def test_contract_round_trips_through_json():
    c = LungsMeta.default(320, training_data="x")
    back = LungsMeta.from_json(c.to_json())
    assert back == c and back.input_size == (320, 320)
    assert back.info["training_data"] == "x"


def test_bad_contracts_are_config_errors():
    c = LungsMeta.default(64)
    with pytest.raises(ConfigError, match="did you mean"):
        LungsMeta(name="x", chain=c.chain, normalization="zscor")
    with pytest.raises(ConfigError):
        LungsMeta(name="x", chain=c.chain, threshold=1.5)
    with pytest.raises(ConfigError):
        LungsMeta.from_json("{not json")
    with pytest.raises(ConfigError):
        LungsMeta.from_json('{"name": "x"}')


def test_model_without_contract_is_refused(tmp_path, require):
    onnx = require("onnx")
    from onnx import TensorProto, helper

    from thoracic.anatomy import LungSegmenter

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 8, 8])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "plain.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConfigError, match=LUNGS_META_KEY):
        LungSegmenter.load(path)


def test_missing_or_broken_model_file_is_a_config_error(tmp_path):
    """As for the detector and the classifier: every model loads through ``load_model``."""
    from thoracic.anatomy import LungSegmenter

    with pytest.raises(ConfigError, match="does not exist"):
        LungSegmenter.load(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load ONNX model"):
        LungSegmenter.load(bad)


def test_normalization_is_zscore_and_safe_on_flat_input():
    c = LungsMeta.default(64)
    x = c.to_input(np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    assert x.shape == (1, 1, 64, 64) and x.dtype == np.float32
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-4
    assert not c.to_input(np.full((64, 64), 0.5, np.float32)).any()


def test_public_names_are_sorted_and_importable():
    import thoracic.anatomy as anatomy
    import thoracic.models as models

    for module in (anatomy, models):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)


def test_unknown_model_name_suggests_one():
    with pytest.raises(ConfigError, match="did you mean 'lungs'"):
        model_path("lung")
