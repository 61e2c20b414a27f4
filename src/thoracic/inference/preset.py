"""Presets: which detectors run, how they are fused and filtered, under one name or in one file.

A preset is what ``thoracic predict --preset``, ``serve --preset``, ``dicom-node --preset`` and
``Analyzer.load(preset=...)`` take instead of a list of model files and their settings. It is a
built-in name (:data:`BUILTIN_PRESETS`: ``fast``, the shipped detector and classifier) or a JSON
file such as the ``ensemble.json`` that ``thoracic train cv`` writes beside its fold models::

    {
      "format": "thoracic-preset",
      "version": 1,
      "name": "clahe512-cv",
      "description": "the 4 cross-validation models of ...",
      "detectors": [{"path": "models/fold_1.onnx", "weight": 1.0, "sha256": "..."}, ...],
      "tta": false,
      "wbf_iou": 0.55,
      "lung_roi": false,
      "classifier": null
    }

``detectors`` paths are relative to the file's folder (absolute paths are kept); an empty list is
the shipped detector. A ``sha256`` given for a member is checked when the preset is loaded, so a
preset never runs a model file other than the one it was written for. ``classifier`` is ``null``
(no 2-class filter), ``"shipped"`` (the shipped classifier) or a path. ``tta``, ``wbf_iou`` and
``lung_roi`` are :class:`~thoracic.inference.predictor.PredictConfig`'s settings of the same names.

>>> load_preset("fast").detectors
()
>>> load_preset("fast").classifier == SHIPPED
True
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from thoracic._fs import write_text
from thoracic.errors import ConfigError

__all__ = ["BUILTIN_PRESETS", "PRESET_FORMAT", "SHIPPED", "Preset", "PresetMember", "load_preset", "members_of", "write_preset"]

#: The ``format`` field of a preset file.
PRESET_FORMAT = "thoracic-preset"
_VERSION = 1
#: ``classifier`` of a preset that runs the shipped classifier.
SHIPPED = "shipped"


@dataclass(frozen=True)
class PresetMember:
    """One detector of a preset: its file, its WBF weight and (optionally) the file's sha256."""

    path: Path
    weight: float = 1.0
    sha256: str = ""


@dataclass(frozen=True)
class Preset:
    """Detectors and how they run together.

    Attributes
    ----------
    name, description:
        What the preset is called and says of itself.
    detectors:
        The members (empty: the shipped detector).
    tta, wbf_iou, lung_roi:
        :class:`~thoracic.inference.predictor.PredictConfig`'s settings of these names.
    classifier:
        ``None`` (no 2-class filter), :data:`SHIPPED` or the path of a classifier ONNX.
    """

    name: str
    detectors: tuple[PresetMember, ...] = ()
    tta: bool = False
    wbf_iou: float = 0.55
    lung_roi: bool = False
    classifier: str | None = SHIPPED
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a preset needs a name")
        if not 0.0 <= self.wbf_iou <= 1.0:
            raise ConfigError(f"preset {self.name!r}: wbf_iou must lie in [0, 1], got {self.wbf_iou}")
        for m in self.detectors:
            if not (math.isfinite(m.weight) and m.weight > 0):
                raise ConfigError(f"preset {self.name!r}: the weight of {m.path} must be positive, got {m.weight}")

    @property
    def detector_paths(self) -> tuple[Path, ...]:
        return tuple(m.path for m in self.detectors)

    @property
    def weights(self) -> tuple[float, ...]:
        """The members' WBF weights; ``()`` when all are 1 (the same fusion, and what
        ``PredictConfig`` takes for a single detector)."""
        w = tuple(m.weight for m in self.detectors)
        return () if all(x == 1.0 for x in w) else w

    def with_members_checked(self) -> Preset:
        """This preset after checking that every member file exists and has its recorded sha256."""
        from thoracic.models.runtime import file_sha256

        for m in self.detectors:
            if not m.path.is_file():
                raise ConfigError(f"preset {self.name!r}: no detector file {m.path}")
            if m.sha256 and file_sha256(m.path) != m.sha256:
                raise ConfigError(f"preset {self.name!r}: {m.path} is not the file the preset was written for "
                                  f"(its sha256 differs from {m.sha256[:12]}...)")
        if self.classifier not in (None, SHIPPED) and not Path(self.classifier).is_file():
            raise ConfigError(f"preset {self.name!r}: no classifier file {self.classifier}")
        return self

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The JSON object of :func:`write_preset` (member paths relative to ``relative_to`` where
        they lie below it)."""

        def rel(p: Path) -> str:
            if relative_to is not None:
                try:
                    return p.resolve().relative_to(relative_to.resolve()).as_posix()
                except ValueError:
                    pass
            return str(p)

        classifier = self.classifier if self.classifier in (None, SHIPPED) else rel(Path(self.classifier))
        return {
            "format": PRESET_FORMAT,
            "version": _VERSION,
            "name": self.name,
            "description": self.description,
            "detectors": [{"path": rel(m.path), "weight": m.weight, **({"sha256": m.sha256} if m.sha256 else {})}
                          for m in self.detectors],
            "tta": self.tta,
            "wbf_iou": self.wbf_iou,
            "lung_roi": self.lung_roi,
            "classifier": classifier,
        }


#: The presets known by name.
BUILTIN_PRESETS: Mapping[str, Preset] = MappingProxyType({
    "fast": Preset("fast", description="the shipped detector and the shipped 2-class filter: one model, no TTA "
                                       "(thoracic predict's default)"),
})


def _field(data: Mapping[str, Any], key: str, kinds: tuple[type, ...], default: Any, where: str) -> Any:
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ConfigError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _from_dict(data: Any, base: Path, where: str) -> Preset:
    if not isinstance(data, dict) or data.get("format") != PRESET_FORMAT:
        raise ConfigError(f"{where}: not a thoracic preset (a JSON object with \"format\": \"{PRESET_FORMAT}\")")
    if data.get("version") != _VERSION:
        raise ConfigError(f"{where}: preset version {data.get('version')!r} is not supported (this thoracic reads {_VERSION})")
    members = []
    raw = _field(data, "detectors", (list,), [], where)
    for k, d in enumerate(raw):
        if isinstance(d, str):
            d = {"path": d}
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"]:
            raise ConfigError(f"{where}: detectors[{k}] needs a \"path\"")
        weight = _field(d, "weight", (int, float), 1.0, f"{where}: detectors[{k}]")
        sha = _field(d, "sha256", (str,), "", f"{where}: detectors[{k}]")
        path = Path(d["path"])
        members.append(PresetMember(path if path.is_absolute() else base / path, float(weight), sha.lower()))
    classifier = data.get("classifier", SHIPPED)
    if classifier is not None and not isinstance(classifier, str):
        raise ConfigError(f"{where}: 'classifier' must be null, \"{SHIPPED}\" or a path")
    if classifier not in (None, SHIPPED):
        path = Path(classifier)
        classifier = str(path if path.is_absolute() else base / path)
    return Preset(
        name=_field(data, "name", (str,), "", where) or Path(where).stem,
        detectors=tuple(members),
        tta=_field(data, "tta", (bool,), False, where),
        wbf_iou=float(_field(data, "wbf_iou", (int, float), 0.55, where)),
        lung_roi=_field(data, "lung_roi", (bool,), False, where),
        classifier=classifier,
        description=_field(data, "description", (str,), "", where),
    )


def load_preset(spec: str | PathLike[str] | Preset) -> Preset:
    """The preset named ``spec`` (:data:`BUILTIN_PRESETS`) or written in the JSON file ``spec``,
    its member files checked (they exist; a recorded sha256 matches).

    Raises :class:`~thoracic.errors.ConfigError` for an unknown name, an unreadable or malformed
    file, a missing member or a member that is not the file the preset was written for.
    """
    if isinstance(spec, Preset):
        return spec.with_members_checked()
    text = str(spec)
    if text in BUILTIN_PRESETS:
        return BUILTIN_PRESETS[text]
    path = Path(text)
    if not path.is_file():
        if path.suffix.lower() != ".json" and "/" not in text and "\\" not in text:
            raise ConfigError.unknown("preset", text, tuple(BUILTIN_PRESETS) + ("a preset JSON file",))
        raise ConfigError(f"no preset file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"cannot read the preset {path}: {err}") from err
    return _from_dict(data, path.parent, str(path)).with_members_checked()


def write_preset(path: str | PathLike[str], preset: Preset) -> Path:
    """Write ``preset`` as JSON to ``path`` (whole or not at all), member paths relative to its folder."""
    out = Path(path)
    write_text(out, json.dumps(preset.to_dict(relative_to=out.parent), indent=2) + "\n")
    return out


def members_of(paths: Sequence[str | PathLike[str]], *, sha256: bool = True) -> tuple[PresetMember, ...]:
    """Preset members of weight 1 for ``paths`` (with their sha256 unless ``sha256=False``)."""
    from thoracic.models.runtime import file_sha256

    return tuple(PresetMember(Path(p), 1.0, file_sha256(p) if sha256 else "") for p in paths)
