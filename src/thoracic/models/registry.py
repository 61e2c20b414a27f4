"""The models that ship with thoracic: one registry, by name.

Each shipped model is named after its kind (:data:`SHIPPED_MODELS`: detector, classifier,
lungs) and lives in its own folder as ``<name>/<name>.onnx`` next to ``<name>/MODEL_CARD.md``.

>>> "lungs" in list_models()
True
>>> model_path("lungs").name
'lungs.onnx'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from thoracic.errors import ConfigError

__all__ = ["SHIPPED_MODELS", "list_models", "model_card", "model_path"]

#: The names of the shipped models; each is also the model's kind.
SHIPPED_MODELS = ("classifier", "detector", "lungs")


def model_path(name: str) -> Path:
    """Where the shipped model ``name`` is installed (package data; a build may leave a file out)."""
    if name not in SHIPPED_MODELS:
        raise ConfigError.unknown("model", name, SHIPPED_MODELS)
    return Path(str(resources.files("thoracic.models").joinpath(name, f"{name}.onnx")))


def list_models() -> list[str]:
    """Names of the shipped models whose file is installed."""
    return [name for name in SHIPPED_MODELS if model_path(name).is_file()]


def model_card(name: str) -> str:
    """The model card (Markdown) of a shipped model."""
    return model_path(name).with_name("MODEL_CARD.md").read_text(encoding="utf-8")
