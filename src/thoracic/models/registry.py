"""Model files that ship with thoracic, by name, each with its model card.

Each model lives in its own folder as ``<name>/<name>.onnx`` next to ``<name>/MODEL_CARD.md``.

>>> "lungs" in list_models()
True
>>> model_path("lungs").name
'lungs.onnx'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from thoracic.errors import ConfigError

__all__ = ["DEFAULT_MODELS", "default_model_path", "list_models", "model_card", "model_path"]


def list_models() -> list[str]:
    """Names of the shipped models (folders holding ``<name>.onnx``)."""
    root = resources.files("thoracic.models")
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and entry.joinpath(f"{entry.name}.onnx").is_file()
    )


def model_path(name: str) -> Path:
    """The path of a shipped model file (installed as package data)."""
    names = list_models()
    if name not in names:
        raise ConfigError.unknown("model", name, names)
    return Path(str(resources.files("thoracic.models").joinpath(name, f"{name}.onnx")))


def model_card(name: str) -> str:
    """The model card (Markdown) of a shipped model."""
    return model_path(name).with_name("MODEL_CARD.md").read_text(encoding="utf-8")


#: The shipped default models: name -> file inside ``thoracic.models``.
DEFAULT_MODELS = {"classifier": "classifier/classifier.onnx", "detector": "detector/detector.onnx"}


def default_model_path(name: str) -> Path:
    """The path of a shipped default model (``detector`` or ``classifier``)."""
    if name not in DEFAULT_MODELS:
        raise ConfigError.unknown("default model", name, DEFAULT_MODELS)
    return Path(str(resources.files("thoracic.models").joinpath(DEFAULT_MODELS[name])))
