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
