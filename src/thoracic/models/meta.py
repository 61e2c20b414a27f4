"""The one metadata contract of every thoracic model, stored inside the model file.

A :class:`ModelMeta` says what a model is (its kind, output names and trained classes), how a
radiograph becomes its input (the preprocessing chain, the input size) and where it came from
(architecture, thoracic version, training data, other parameters in ``extra``). The lungs model's
kind-specific part, :class:`LungsMeta`, adds the intensity normalization of its input and how its
output becomes a mask (threshold, post-processing); training and inference both call
:meth:`LungsMeta.prepare` and :meth:`LungsMeta.to_input`, so the two can never differ.

The ONNX file carries it as JSON in its ``metadata_props``, in the form the shipped files hold:
detectors and classifiers under :data:`META_KEY` (``"thoracic"``), the lungs model under
:data:`LUNGS_META_KEY` (``"thoracic.contract"``). :meth:`ModelMeta.from_metadata` reads either;
:meth:`ModelMeta.to_metadata` writes what a model of its kind stores.

>>> lungs = LungsMeta.default(size=192)
>>> lungs.kind, lungs.input_size, lungs.chain.spec()
('lungs', (192, 192), 'resize(height=192,interpolation=area,width=192)')
>>> ModelMeta.from_metadata(lungs.to_metadata()) == lungs
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from os import PathLike
from typing import Any, ClassVar

import numpy as np

from thoracic._version import __version__
from thoracic.errors import ConfigError
from thoracic.io.radiograph import Radiograph
from thoracic.labels import CLASS_IDS, FINDINGS
from thoracic.preprocess.chain import LUNG_ROI_STEP, Chain, Prepared, Step
from thoracic.preprocess.intensity import zscore

__all__ = ["LUNGS_META_KEY", "META_KEY", "MODEL_KINDS", "NORMALIZATIONS", "OPERATING_POINTS_KEY", "LungsMeta", "ModelMeta",
           "legacy_crop_chain"]

#: The ``metadata_props`` key of a detector's or classifier's JSON.
META_KEY = "thoracic"
#: The ``metadata_props`` key of the lungs model's JSON.
LUNGS_META_KEY = "thoracic.contract"
MODEL_KINDS = ("classifier", "detector", "lungs")
#: Intensity normalizations of a lungs model's input.
NORMALIZATIONS = ("zscore", "unit")
#: The provenance fields; a lungs model stores them inside its ``info`` with ``extra``.
_PROVENANCE = ("architecture", "thoracic_version", "training_data")
_NOUNS = {"lungs": "lungs model"}
#: The ``extra`` entry of a detector's per-finding operating points (finding name -> score).
OPERATING_POINTS_KEY = "operating_points"


def _plain(value: Any) -> Any:
    """The JSON value of a field."""
    if isinstance(value, Chain):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _from_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance fields and ``extra`` from one mapping (a lungs model's ``info``)."""
    rest = dict(info)
    return {**{k: rest.pop(k) for k in _PROVENANCE if k in rest}, "extra": rest}


def legacy_crop_chain(chain: Chain) -> Chain:
    """The chain of a model whose file says ``"lung_crop": true`` over ``chain``, which has no crop.

    Such a model was given the lung square at its own size (the lungs model's crop), then
    ``chain``; ``lung_roi(size=0)`` in front of ``chain`` says exactly that, so the chain is
    again the one answer to whether the model crops.
    """
    step = Step.of(LUNG_ROI_STEP, size=0, margin=0.05)
    return Chain(f"lung-roi+{chain.name}", (step, *chain.steps), chain.normalize,
                 f"Lung square at its own size, then: {chain.description}".strip())


@dataclass(frozen=True, kw_only=True)
class ModelMeta:
    """What a thoracic ONNX model is, how to feed it and where it came from.

    Attributes
    ----------
    kind:
        ``"detector"`` or ``"classifier"`` (``"lungs"``: a :class:`LungsMeta`).
    names:
        Output index -> label name (VinDr names, e.g. all 14 findings for a detector; for a
        classifier ``("normal", "abnormal")``; for the lungs model ``("lung",)``).
    trained_classes:
        The names it was trained to find (NIH data covers 7 of the 14 findings); "No finding"
        from such a model means none of these.
    chain:
        The preprocessing chain (its last step a ``letterbox`` or ``resize`` to the input size).
    imgsz:
        Square input size in pixels of a detector or classifier (0 for a lungs model: see :attr:`input_size`).
    lung_crop:
        (A property, derived from :attr:`chain`.) The model's input is cut to the lung square:
        its chain has a ``lung_roi`` step (:attr:`Chain.crops <thoracic.preprocess.Chain.crops>`).
        The chain does the crop, and nothing crops the input again. Files written before the
        chain decided may store only ``"lung_crop": true`` over a chain without the step: reading
        them puts ``lung_roi(size=0)`` (the lung square at its own size, which is what those
        models were given) in front of the chain.
    feature_output:
        Name of the intermediate feature map output ("" when none).
    feature_layer, stride:
        The layer that feature map comes from, and the model's largest stride.
    thoracic_version, training_data, architecture:
        Provenance.
    extra:
        Other parameters (a classifier's filter threshold ``low``, a detector's
        ``operating_points``, a lungs model's training licences, ...).
    """

    #: The ``metadata_props`` key this form is stored under.
    key: ClassVar[str] = META_KEY
    #: The kinds this form describes.
    kinds: ClassVar[tuple[str, ...]] = ("classifier", "detector")
    #: The fields stored as they are (the rest are derived: see ``_derived``/``_underived``).
    _stored: ClassVar[tuple[str, ...]] = (
        "kind", "names", "trained_classes", "chain", "imgsz", "feature_output", "feature_layer",
        "stride", "thoracic_version", "training_data", "architecture", "extra",
    )

    kind: str
    names: tuple[str, ...]
    trained_classes: tuple[str, ...]
    chain: Chain
    imgsz: int
    feature_output: str = ""
    feature_layer: int = -1
    stride: int = 32
    thoracic_version: str = ""
    training_data: str = ""
    architecture: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for f in fields(self):  # JSON values (and loose arguments) as the field's type
            if isinstance(f.default, (bool, int, float, str)):
                put(f.name, type(f.default)(getattr(self, f.name)))
        put("kind", str(self.kind))
        put("names", tuple(str(n) for n in self.names))
        put("trained_classes", tuple(str(n) for n in self.trained_classes))
        put("imgsz", int(self.imgsz))
        put("extra", dict(self.extra))
        if not isinstance(self.chain, Chain):
            put("chain", Chain.from_dict(self.chain))
        if self.kind not in self.kinds:
            raise ConfigError.unknown("model kind", self.kind, self.kinds)
        unknown = [n for n in self.trained_classes if n not in self.names]
        if unknown:
            raise ConfigError(f"trained classes {unknown} are not among the model's names")
        self._check_operating_points()

    def _check_operating_points(self) -> None:
        points = self.extra.get(OPERATING_POINTS_KEY)
        if points is None:
            return
        if not isinstance(points, Mapping):
            raise ConfigError(f"{OPERATING_POINTS_KEY} must map finding names to scores, got {type(points).__name__}")
        untrained = sorted(str(n) for n in points if n not in (self.trained_classes or self.names))
        if untrained:
            raise ConfigError(f"operating points for findings the model was not trained on: {untrained}")
        for name, value in points.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"the operating point of {name} must be a score in [0, 1], got {value!r}")

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` of the model input."""
        return self.imgsz, self.imgsz

    @property
    def lung_crop(self) -> bool:
        """The model's input is cut to the lung square: its chain crops (:attr:`Chain.crops`)."""
        return self.chain.crops

    @property
    def class_ids(self) -> tuple[int, ...]:
        """Kaggle class id of each output index (detectors; -1 for a name outside the schema)."""
        return tuple(CLASS_IDS.get(n, -1) for n in self.names)

    @property
    def operating_points(self) -> dict[str, float]:
        """A detector's per-finding operating points (finding name -> the score from which the
        clinical outputs show it; empty when the file has none). See :mod:`thoracic.detect.clinical`."""
        return {str(k): float(v) for k, v in dict(self.extra.get(OPERATING_POINTS_KEY) or {}).items()}

    @property
    def info(self) -> dict[str, Any]:
        """Provenance (the non-empty fields) and ``extra`` in one mapping."""
        return {**{k: getattr(self, k) for k in _PROVENANCE if getattr(self, k)}, **self.extra}

    def require(self, kind: str, path: str | PathLike[str] | None = None) -> None:
        """Raise :class:`~thoracic.errors.ConfigError` unless this is a ``kind`` model."""
        if self.kind != kind:
            raise ConfigError(f"expected a {_NOUNS.get(kind, kind)}, got a {_NOUNS.get(self.kind, self.kind)}",
                              path=path or None)

    # --- the stored forms: one codec for every kind -------------------------------------------
    def _derived(self) -> dict[str, Any]:
        """Stored entries that are not fields (``lung_crop``: what the chain says, for older readers)."""
        return {"labels": {str(i): n for i, n in enumerate(FINDINGS)}, "format": "thoracic-onnx/1",
                "lung_crop": self.lung_crop}

    @classmethod
    def _underived(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """Fields from stored entries that are not fields (and defaults that depend on others)."""
        out: dict[str, Any] = {"trained_classes": data.get("trained_classes", data["names"])}
        if data.get("lung_crop") is True:  # a file from before the chain decided
            chain = data["chain"] if isinstance(data["chain"], Chain) else Chain.from_dict(data["chain"])
            if not chain.crops:
                out["chain"] = legacy_crop_chain(chain)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored under :attr:`key`."""
        return {**{name: _plain(getattr(self, name)) for name in self._stored}, **self._derived()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelMeta:
        try:
            return cls(**{**{name: data[name] for name in cls._stored if name in data}, **cls._underived(data)})
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"not thoracic model metadata: {err}") from err

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"not thoracic model metadata: {err}") from err
        if not isinstance(data, Mapping):
            raise ConfigError("not thoracic model metadata: not a JSON object")
        return cls.from_dict(data)

    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` of a model of this kind (a detector also lists its names)."""
        props = {self.key: self.to_json()}
        if self.kind == "detector":
            props["names"] = json.dumps(dict(enumerate(self.names)))
        return props

    @staticmethod
    def from_metadata(props: Mapping[str, str], *, path: str | PathLike[str] | None = None) -> ModelMeta:
        """The metadata a model file's ``metadata_props`` hold (either stored form)."""
        for form in (ModelMeta, LungsMeta):
            if form.key in props:
                return form.from_json(props[form.key])
        raise ConfigError(
            f"not a thoracic model (no {META_KEY!r} or {LUNGS_META_KEY!r} metadata); export it with thoracic",
            path=path or None,
        )


@dataclass(frozen=True, kw_only=True)
class LungsMeta(ModelMeta):
    """The metadata of a lung segmentation model: how to feed it and read its output.

    Attributes
    ----------
    name:
        Model name (``"lungs"`` for the shipped model).
    chain:
        Preprocessing chain from the radiograph (read with ``chain.read_options()``, i.e. the
        file's own window) to the model's input size; it ends with ``resize(width=..., height=...)``.
    names:
        What the single output channel means (:attr:`label`).
    normalization:
        ``"zscore"``: per image, zero mean and unit standard deviation after the chain;
        ``"unit"``: the chain's ``[0, 1]`` pixels as they are.
    threshold:
        Probability above which a pixel is lung (applied at the original image size).
    keep_components:
        Post-processing: keep the largest this many connected components (two lungs).
    fill_holes:
        Post-processing: fill holes inside the kept components.
    output:
        ``"logits"`` (apply a sigmoid) or ``"probabilities"``.
    """

    key: ClassVar[str] = LUNGS_META_KEY
    kinds: ClassVar[tuple[str, ...]] = ("lungs",)
    _stored: ClassVar[tuple[str, ...]] = (
        "name", "chain", "normalization", "threshold", "keep_components", "fill_holes", "output",
    )

    kind: str = "lungs"
    names: tuple[str, ...] = ("lung",)
    trained_classes: tuple[str, ...] = ()
    imgsz: int = 0
    name: str
    normalization: str = "zscore"
    threshold: float = 0.5
    keep_components: int = 2
    fill_holes: bool = True
    output: str = "logits"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError.unknown("input normalization", self.normalization, NORMALIZATIONS)
        if self.output not in ("logits", "probabilities"):
            raise ConfigError.unknown("model output", self.output, ("logits", "probabilities"))
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {self.threshold}")
        if self.keep_components < 0:
            raise ConfigError(f"keep_components must be >= 0 (0 keeps all), got {self.keep_components}")
        if len(self.names) != 1:
            raise ConfigError(f"a lung model has one output channel, got names {list(self.names)}")
        if not self.chain.steps or self.chain.steps[-1].name != "resize":
            raise ConfigError("a lung model's chain must end with resize(width=..., height=...)")

    @classmethod
    def default(cls, size: int = 192, *, threshold: float = 0.5, **info: Any) -> LungsMeta:
        """The metadata of the shipped model at ``size x size`` (aspect not kept, area filter).

        ``info``: provenance (``architecture``, ``training_data``, ...) and other parameters.
        """
        chain = Chain(
            name=f"lungs-{size}",
            steps=(Step.of("resize", width=int(size), height=int(size), interpolation="area"),),
            normalize="window",
            description=f"Lung model input: file window, resize to {size}x{size} (aspect not kept, area filter).",
        )
        return cls(name="lungs", chain=chain, threshold=threshold,
                   **_from_info({"thoracic_version": __version__, **info}))

    @property
    def label(self) -> str:
        """What the single output channel means."""
        return self.names[0]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(width, height)`` of the model input (the chain's final resize)."""
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

    # --- the stored form: name, chain, mask settings, ``label`` and provenance as ``info`` ------
    def _derived(self) -> dict[str, Any]:
        return {"label": self.label, "info": self.info}

    @classmethod
    def _underived(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"names": (data.get("label", "lung"),), **_from_info(data.get("info", {}))}
