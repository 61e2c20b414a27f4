"""One registry of the shipped models, by name."""

from __future__ import annotations

import pytest

from thoracic.errors import ConfigError
from thoracic.models import SHIPPED_MODELS, list_models, model_card, model_path


def test_the_three_shipped_models_are_registered_with_their_cards():
    assert SHIPPED_MODELS == ("classifier", "detector", "lungs")
    assert list_models() == ["classifier", "detector", "lungs"]
    for name in SHIPPED_MODELS:
        assert model_path(name).name == f"{name}.onnx" and model_path(name).parent.name == name
        assert model_card(name).startswith("#")


def test_an_unknown_name_suggests_one():
    with pytest.raises(ConfigError, match="did you mean 'detector'"):
        model_path("detect")


def test_shipped_model_is_small_and_registered():
    assert "lungs" in list_models()
    path = model_path("lungs")
    assert path.is_file()
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert (path.parent / "MODEL_CARD.md").is_file()
    from thoracic.models import model_card

    card = model_card("lungs")
    assert "eval_nc" in card and "CC BY" in card


def test_unknown_model_name_suggests_one():
    with pytest.raises(ConfigError, match="did you mean 'lungs'"):
        model_path("lung")
