"""The metadata a thoracic ONNX model carries (its input contract and label list).

Stored as JSON in the ONNX ``metadata_props`` under the key ``thoracic``, so a model file is
self-describing: which labels its outputs are, which of them it was trained on, the preprocessing
chain its input must go through (including whether it expects a lung crop), its input size and
the name of the intermediate feature map it also outputs (for heatmaps).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, FINDINGS
from thoracic.preprocess.chain import Chain

__all__ = ["META_KEY", "MODEL_KINDS", "ModelMeta"]

#: The ``metadata_props`` key of thoracic's JSON.
META_KEY = "thoracic"
MODEL_KINDS = ("classifier", "detector")


@dataclass(frozen=True)
class ModelMeta:
    """The contract of a thoracic ONNX model.

    Attributes
    ----------
    kind:
        ``"detector"`` or ``"classifier"``.
    names:
        Output index -> label name (VinDr names, e.g. all 14 findings for a detector; for a
        classifier ``("normal", "abnormal")``).
    trained_classes:
        The names it was trained to find (NIH data covers 7 of the 14 findings); "No finding"
        from such a model means none of these.
    chain:
        The preprocessing chain (its last step a ``letterbox`` or ``resize`` to ``imgsz``).
    lung_crop:
        The input must be cropped to the lung region first.
    imgsz:
        Square input size in pixels.
    feature_output:
        Name of the intermediate feature map output ("" when none).
    """

    kind: str
    names: tuple[str, ...]
    trained_classes: tuple[str, ...]
    chain: Chain
    imgsz: int
    lung_crop: bool = False
    feature_output: str = ""
    feature_layer: int = -1
    stride: int = 32
    thoracic_version: str = ""
    training_data: str = ""
    architecture: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError.unknown("model kind", self.kind, MODEL_KINDS)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "trained_classes", tuple(self.trained_classes))
        unknown = [n for n in self.trained_classes if n not in self.names]
        if unknown:
            raise ConfigError(f"trained classes {unknown} are not among the model's names")

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Kaggle class id of each output index (detectors; -1 for a name outside the schema)."""
        return tuple(CLASS_IDS.get(n, -1) for n in self.names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chain"] = self.chain.to_dict()
        d["names"] = list(self.names)
        d["trained_classes"] = list(self.trained_classes)
        d["extra"] = dict(self.extra)
        d["labels"] = {str(i): n for i, n in enumerate(FINDINGS)}  # the schema, with Kaggle ids
        d["format"] = "thoracic-onnx/1"
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        try:
            return cls(
                kind=str(data["kind"]),
                names=tuple(data["names"]),
                trained_classes=tuple(data.get("trained_classes", data["names"])),
                chain=Chain.from_dict(data["chain"]),
                imgsz=int(data["imgsz"]),
                lung_crop=bool(data.get("lung_crop", False)),
                feature_output=str(data.get("feature_output", "")),
                feature_layer=int(data.get("feature_layer", -1)),
                stride=int(data.get("stride", 32)),
                thoracic_version=str(data.get("thoracic_version", "")),
                training_data=str(data.get("training_data", "")),
                architecture=str(data.get("architecture", "")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not thoracic model metadata: {err}") from err

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"not thoracic model metadata: {err}") from err
