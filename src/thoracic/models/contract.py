"""The input contract of a lung segmentation model, declared once, stored inside the model file.

A :class:`ModelContract` says how a radiograph becomes the model's input (the preprocessing
chain, then the intensity normalization), how the output becomes a mask (threshold and
post-processing) and where the model came from. The ONNX file carries it as JSON in its metadata
(key :data:`METADATA_KEY`); training and inference both call :meth:`ModelContract.prepare` and
:meth:`ModelContract.to_input`, so the two can never differ.

>>> c = ModelContract.default(size=192)
>>> c.chain.spec()
'resize(height=192,interpolation=area,width=192)'
>>> ModelContract.from_json(c.to_json()) == c
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.errors import ConfigError
from thoracic.io.radiograph import Radiograph
from thoracic.preprocess.chain import Chain, Prepared, Step
from thoracic.preprocess.intensity import zscore

__all__ = ["METADATA_KEY", "NORMALIZATIONS", "ModelContract"]

#: Key of the JSON contract in the ONNX file's ``metadata_props``.
METADATA_KEY = "thoracic.contract"

NORMALIZATIONS = ("zscore", "unit")


@dataclass(frozen=True)
class ModelContract:
    """How to feed a lung model and read its output.

    Attributes
    ----------
    name:
        Model name (``"lungs"`` for the shipped model).
    chain:
        Preprocessing chain from the radiograph (read with ``chain.read_options()``, i.e. the
        file's own window) to the model's input size.
    normalization:
        ``"zscore"``: per image, zero mean and unit standard deviation after the chain;
        ``"unit"``: the chain's ``[0, 1]`` pixels as they are.
    threshold:
        Probability above which a pixel is lung (applied at the original image size).
    keep_components:
        Post-processing: keep the largest this many connected components (two lungs).
    fill_holes:
        Post-processing: fill holes inside the kept components.
    label:
        What the single output channel means.
    output:
        ``"logits"`` (apply a sigmoid) or ``"probabilities"``.
    info:
        Provenance: training data and licences, thoracic version, parameters.
    """

    name: str
    chain: Chain
    normalization: str = "zscore"
    threshold: float = 0.5
    keep_components: int = 2
    fill_holes: bool = True
    label: str = "lung"
    output: str = "logits"
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError.unknown("input normalization", self.normalization, NORMALIZATIONS)
        if self.output not in ("logits", "probabilities"):
            raise ConfigError.unknown("model output", self.output, ("logits", "probabilities"))
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.keep_components < 0:
            raise ConfigError(f"keep_components must be >= 0 (0 keeps all), got {self.keep_components}")
        if not self.chain.steps or self.chain.steps[-1].name != "resize":
            raise ConfigError("a lung model's chain must end with resize(width=..., height=...)")

    @classmethod
    def default(cls, size: int = 192, *, threshold: float = 0.5, **info: Any) -> ModelContract:
        """The contract of the shipped model at ``size x size`` (aspect not kept, area filter)."""
        chain = Chain(
            name=f"lungs-{size}",
            steps=(Step.of("resize", width=int(size), height=int(size), interpolation="area"),),
            normalize="window",
            description=f"Lung model input: file window, resize to {size}x{size} (aspect not kept, area filter).",
        )
        return cls(name="lungs", chain=chain, threshold=threshold, info={"thoracic_version": __version__, **info})

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` of the model input."""
        params = dict(self.chain.steps[-1].params)
        return int(params["width"]), int(params["height"])

    # --- the one preprocessing path --------------------------------------------------------
    def prepare(self, radiograph: Radiograph) -> Prepared:
        """Run the chain: ``[0, 1]`` pixels at the input size and the transform from the original."""
        return self.chain.run(radiograph)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """The intensity normalization of the input (``pixels``: 2-D, ``[0, 1]``)."""
        a = np.asarray(pixels, dtype=np.float32)
        if self.normalization == "zscore":
            std = float(a.std())
            if std < 1e-6:  # a flat image: nothing to see, let the model see zeros
                return np.zeros_like(a)
            return zscore(a)
        return a

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """A ``(1, 1, H, W)`` float32 tensor from the chain's output."""
        return self.normalize(pixels)[None, None].astype(np.float32, copy=False)

    # --- forms -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "chain": self.chain.to_dict(),
            "normalization": self.normalization,
            "threshold": self.threshold,
            "keep_components": self.keep_components,
            "fill_holes": self.fill_holes,
            "label": self.label,
            "output": self.output,
            "info": dict(self.info),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelContract:
        try:
            return cls(
                name=str(data["name"]),
                chain=Chain.from_dict(data["chain"]),
                normalization=str(data.get("normalization", "zscore")),
                threshold=float(data.get("threshold", 0.5)),
                keep_components=int(data.get("keep_components", 2)),
                fill_holes=bool(data.get("fill_holes", True)),
                label=str(data.get("label", "lung")),
                output=str(data.get("output", "logits")),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"not a lung model contract: {err}") from err

    @classmethod
    def from_json(cls, text: str) -> ModelContract:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"not a lung model contract: {err}") from err
