"""Named preprocessing chains: one value that training export and prediction both run.

A :class:`Chain` says how to read a file (its intensity normalization) and which steps follow.
Models declare the chain they were trained with; the dataset export writes images through it
and prediction calls the very same function, so the two can never differ. A chain is a frozen
value that round-trips through a dict/JSON and a compact text form::

    >>> c = Chain.parse("clahe(clip_limit=2.0)|resize_longest(size=512)", name="demo")
    >>> c.spec()
    'clahe(clip_limit=2.0)|resize_longest(size=512)'
    >>> Chain.from_dict(c.to_dict()) == c
    True
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from thoracic.errors import ConfigError
from thoracic.io.radiograph import Normalize, Radiograph, ReadConfig
from thoracic.preprocess import geometry, intensity
from thoracic.preprocess.geometry import Interpolation
from thoracic.transform import Affine

if TYPE_CHECKING:
    from thoracic.io.read import Source

__all__ = [
    "CHAINS",
    "LUNG_ROI_STEP",
    "STEPS",
    "Chain",
    "Prepared",
    "Step",
    "get_chain",
    "list_chains",
    "register_chain",
    "register_step",
]


@dataclass(frozen=True)
class _StepDef:
    fn: Callable[..., Any]
    geometric: bool
    params: tuple[str, ...]
    uses_reference_size: bool = False
    scale_to_size: bool = False  # its output size is set by a `size` param (allows reduced decoding)


def _resize_longest(img: np.ndarray, size: int, interpolation: Interpolation = "area", *,
                    reference_size: tuple[int, int] | None = None,
                    box: tuple[float, float, float, float] | None = None) -> tuple[np.ndarray, Affine]:
    return geometry.resize_longest(img, size, interpolation=interpolation, reference_size=reference_size, box=box)


def _resize(img: np.ndarray, width: int, height: int, interpolation: Interpolation = "area") -> tuple[np.ndarray, Affine]:
    return geometry.resize(img, width, height, interpolation=interpolation)


def _letterbox(img: np.ndarray, size: int, interpolation: Interpolation = "linear",
               pad_value: float = 114 / 255) -> tuple[np.ndarray, Affine]:
    return geometry.letterbox(img, size, interpolation=interpolation, pad_value=pad_value)


#: The step that cuts an image to its lung square (registered by :mod:`thoracic.anatomy`); a chain
#: with this step crops (:attr:`Chain.crops`), and at most once.
LUNG_ROI_STEP = "lung_roi"

#: Every step a chain may use: name -> function and whether it changes geometry.
STEPS: dict[str, _StepDef] = {
    "percentile": _StepDef(intensity.percentile_window, False, ("low", "high")),
    "minmax": _StepDef(intensity.minmax, False, ()),
    "zscore": _StepDef(intensity.zscore, False, ()),
    "clahe": _StepDef(intensity.clahe, False, ("clip_limit", "tile_grid")),
    "equalize": _StepDef(intensity.equalize, False, ()),
    "median": _StepDef(intensity.denoise_median, False, ("ksize",)),
    "bilateral": _StepDef(intensity.denoise_bilateral, False, ("diameter", "sigma_color", "sigma_space")),
    "nlm": _StepDef(intensity.denoise_nlm, False, ("strength", "template", "search")),
    "resize_longest": _StepDef(_resize_longest, True, ("size", "interpolation"), True, True),
    "resize": _StepDef(_resize, True, ("width", "height", "interpolation")),
    "letterbox": _StepDef(_letterbox, True, ("size", "interpolation", "pad_value"), False, True),
}


def register_step(name: str, fn: Callable[..., Any], *, geometric: bool, params: tuple[str, ...] = ()) -> None:
    """Add a step that needs more than pixels (a model, say) to :data:`STEPS`.

    ``fn(img, **params)`` returns the image, and for a ``geometric`` step also the
    :class:`~thoracic.transform.Affine` from its input to its output. :mod:`thoracic.anatomy`
    registers ``lung_roi`` (segment the lungs, cut the smallest enclosing square) this way, so this
    layer never imports a model. Registering the same function again is a no-op; another function
    under a taken name is an error.
    """
    if not re.fullmatch(r"[a-z_]+", name):
        raise ConfigError(f"step names are lower-case letters and underscores, got {name!r}")
    known = STEPS.get(name)
    if known is not None and known.fn is not fn:
        raise ConfigError(f"preprocessing step {name!r} is already registered")
    STEPS[name] = _StepDef(fn, geometric, tuple(params))


def register_chain(chain: Chain) -> None:
    """Add a named chain to :data:`CHAINS` (for chains of registered steps, e.g. ``lung-roi-512``)."""
    known = CHAINS.get(chain.name)
    if known is not None and known != chain:
        raise ConfigError(f"preprocessing chain {chain.name!r} is already registered")
    CHAINS[chain.name] = chain

_NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE]-?\d+)?$")


def _parse_value(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if _NUMBER.match(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text.strip("'\"")


@dataclass(frozen=True)
class Step:
    """One step of a chain: a name from :data:`STEPS` and its parameters."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.name not in STEPS:
            raise ConfigError.unknown("preprocessing step", self.name, STEPS)
        allowed = STEPS[self.name].params
        for key, _ in self.params:
            if key not in allowed:
                raise ConfigError.unknown(f"parameter of step {self.name!r}", key, allowed)
        object.__setattr__(self, "params", tuple(sorted(dict(self.params).items())))

    @classmethod
    def of(cls, name: str, **params: Any) -> Step:
        return cls(name, tuple(params.items()))

    def spec(self) -> str:
        inner = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})"

    @classmethod
    def parse(cls, text: str) -> Step:
        m = re.fullmatch(r"\s*([a-z_]+)\s*(?:\((.*)\))?\s*", text)
        if not m:
            raise ConfigError(f"cannot parse preprocessing step {text!r}; write it as name(key=value,...)")
        params = []
        if m.group(2) and m.group(2).strip():
            for item in m.group(2).split(","):
                if "=" not in item:
                    raise ConfigError(f"step parameter {item!r} in {text!r} is not key=value")
                key, value = item.split("=", 1)
                params.append((key.strip(), _parse_value(value)))
        return cls(m.group(1), tuple(params))


@dataclass(frozen=True)
class Prepared:
    """The output of a chain: the image and the transform from original coordinates to it."""

    pixels: np.ndarray = field(repr=False)
    transform: Affine
    radiograph: Radiograph

    @property
    def to_original(self) -> Affine:
        """Maps coordinates of ``pixels`` (boxes a model finds) to the original image."""
        return self.transform.inverse()

    def to_uint8(self) -> np.ndarray:
        return intensity.to_uint8(self.pixels)


@dataclass(frozen=True)
class Chain:
    """A named preprocessing chain: read normalization, then steps in order."""

    name: str
    steps: tuple[Step, ...] = ()
    normalize: Normalize = "window"
    description: str = ""

    def __post_init__(self) -> None:
        ReadConfig(normalize=self.normalize)  # validates the name
        object.__setattr__(self, "steps", tuple(self.steps))
        if sum(s.name == LUNG_ROI_STEP for s in self.steps) > 1:
            raise ConfigError(
                f"chain {self.name!r} ({self.spec()}) cuts to the lung square more than once; "
                f"a chain has at most one {LUNG_ROI_STEP} step"
            )

    @property
    def crops(self) -> bool:
        """The chain cuts the image to the lung square (it has a ``lung_roi`` step).

        The one answer to "does this model crop?": a model whose chain crops gets its crop from
        the chain, and nothing crops its input again.
        """
        return any(s.name == LUNG_ROI_STEP for s in self.steps)

    def describe(self) -> str:
        """``name (spec)`` for messages (``name (no steps)`` for a chain without steps)."""
        return f"{self.name} ({self.spec() or 'no steps'})"

    # --- forms -----------------------------------------------------------------------------
    def spec(self) -> str:
        return "|".join(s.spec() for s in self.steps)

    @classmethod
    def parse(cls, spec: str, *, name: str = "custom", normalize: Normalize = "window") -> Chain:
        steps = tuple(Step.parse(part) for part in spec.split("|") if part.strip())
        return cls(name=name, steps=steps, normalize=normalize)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "normalize": self.normalize,
            "steps": [{"name": s.name, "params": dict(s.params)} for s in self.steps],
            "spec": self.spec(),
            "description": self.description,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Chain:
        try:
            steps = tuple(Step(s["name"], tuple(dict(s.get("params", {})).items())) for s in data["steps"])
            return cls(
                name=str(data["name"]),
                steps=steps,
                normalize=cast(Normalize, str(data.get("normalize", "window"))),  # checked by __post_init__
                description=str(data.get("description", "")),
            )
        except (KeyError, TypeError) as err:
            raise ConfigError(f"not a preprocessing chain description: {err}") from err

    @classmethod
    def from_json(cls, text: str) -> Chain:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ConfigError(f"not a preprocessing chain description: {err}") from err

    # --- running ---------------------------------------------------------------------------
    def decode_size(self) -> int | None:
        """The smallest full-image size the steps need, if a reader may decode at reduced resolution.

        Only when the first step is a resize to a fixed size: every later step runs on the
        resized image, so decoding a JPEG 2000 at a coarser level that is still at least that
        large changes nothing but speed.
        """
        if self.steps and STEPS[self.steps[0].name].scale_to_size:
            return int(dict(self.steps[0].params)["size"])
        return None

    def read_options(self, base: ReadConfig | None = None) -> ReadConfig:
        """Reading options for this chain (normalization and reduced decoding) on top of ``base``."""
        base = base or ReadConfig()
        return ReadConfig(
            normalize=self.normalize,
            percentiles=base.percentiles,
            target_size=self.decode_size(),
            allow_non_chest=base.allow_non_chest,
            max_pixels=base.max_pixels,
            check_content=base.check_content,
        )

    def run(self, radiograph: Radiograph) -> Prepared:
        """Apply the steps to a radiograph read with :meth:`read_options`."""
        if radiograph.normalize != self.normalize:
            raise ConfigError(
                f"chain {self.name!r} expects images read with normalize={self.normalize!r}, "
                f"got {radiograph.normalize!r}; read with chain.read_options() or use chain.load()"
            )
        img = radiograph.pixels
        transform = radiograph.to_original.inverse()  # original -> current pixels
        first_geometric = True
        for step in self.steps:
            spec = STEPS[step.name]
            params = dict(step.params)
            if spec.geometric:
                if spec.uses_reference_size and first_geometric:
                    # sizes follow from the full-resolution image, however it was decoded, and the
                    # output covers exactly the original extent (a reduced-resolution decode is
                    # offset from it by a fraction of a pixel)
                    params["reference_size"] = radiograph.original_size
                    if not transform.is_identity:
                        params["box"] = tuple(transform.apply_boxes([[0, 0, *radiograph.original_size]])[0])
                first_geometric = False
                img, t = spec.fn(img, **params)
                transform = transform.then(t)
            else:
                img = spec.fn(img, **params)
        return Prepared(pixels=np.ascontiguousarray(img, dtype=np.float32), transform=transform, radiograph=radiograph)

    def load(self, src: Source, base: ReadConfig | None = None, *, image_id: str | None = None) -> Prepared:
        """Read ``src`` with this chain's options and run the steps (the function prediction calls)."""
        from thoracic.io.read import read

        return self.run(read(src, self.read_options(base), image_id=image_id))


#: The chains that ship with thoracic, by name (:mod:`thoracic.anatomy` adds ``lung-roi-512`` and
#: ``lung-roi-512-clahe``).
CHAINS: dict[str, Chain] = {
    c.name: c
    for c in (
        Chain("display", (), "window", "The file's own window; nothing else."),
        Chain(
            "clahe",
            (Step.of("clahe", clip_limit=2.0, tile_grid=8),),
            "window",
            "File window, then CLAHE (clip 2, 8x8 tiles) at full resolution.",
        ),
        Chain(
            "kaggle-minmax-1024",
            (Step.of("resize_longest", size=1024, interpolation="lanczos"),),
            "minmax",
            "The common VinBigData Kaggle recipe: VOI, min-max to 0..1, longest side 1024 (Lanczos).",
        ),
        Chain(
            "yolo-512-clahe",
            (
                Step.of("resize_longest", size=512, interpolation="area"),
                Step.of("clahe", clip_limit=2.0, tile_grid=8),
            ),
            "window",
            "Detector input: file window, longest side 512, then CLAHE at that size.",
        ),
    )
}


def list_chains() -> list[str]:
    return sorted(CHAINS)


def get_chain(name_or_spec: str | Chain) -> Chain:
    """A shipped chain by name, or a chain parsed from a spec such as ``clahe()|resize_longest(size=512)``."""
    if isinstance(name_or_spec, Chain):
        return name_or_spec
    if name_or_spec in CHAINS:
        return CHAINS[name_or_spec]
    if "(" in name_or_spec:
        return Chain.parse(name_or_spec)
    raise ConfigError.unknown("preprocessing chain", name_or_spec, CHAINS)
