"""Import checkpoints of the original ultralytics/yolov5 repository into ultralytics' YOLOv5u.

An original YOLOv5 ``.pt`` (e.g. ``yolov5n.pt`` of 2020-2022) is a pickled ``models.yolo.Model``
whose classes live in the yolov5 repository (``models.common.Conv``, ``models.yolo.Detect``,
``utils.*``). :func:`load_original_checkpoint` unpickles it *without* that code: a restricted
unpickler maps every ``models.*``/``utils.*`` class to a stand-in ``torch.nn.Module`` (and refuses
any global outside torch and a few builtins), so the tensors come back as a plain state dict.

:func:`import_yolov5` maps those tensors onto ultralytics' ``DetectionModel`` built from a
``yolov5{n,s,m,l,x}.yaml``: backbone and neck (layers 0-23) have the same structure and the same
state-dict names (``model.N.cv1.conv.weight``, ...); the head differs (anchor-based ``Detect`` vs
anchor-free ``Detect`` with DFL), so layer 24 is left as initialised. For ``yolov5n-coco.pt``
342 of its 349 tensors match by name and shape.

:func:`original_features` runs the stand-in modules with the original YOLOv5 forward (Conv =
SiLU(BN(conv)), C3, Bottleneck, SPPF, Concat, Upsample; the layer graph from ``m.f``), so a test
can prove that the imported model computes the same P3/P4/P5 features as the original network.

Needs the ``train`` extra (torch, ultralytics).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic.errors import ConfigError, CorruptFileError, MissingDependencyError

__all__ = [
    "ImportReport",
    "StandIn",
    "import_yolov5",
    "load_original_checkpoint",
    "original_features",
    "original_state_dict",
]

#: Modules whose globals a checkpoint may reference (anything else is refused).
_ALLOWED_PREFIXES = ("torch", "collections", "numpy")
_ALLOWED_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "slice", "range", "getattr"}
#: Original-repo packages replaced by stand-ins.
_STANDIN_PACKAGES = ("models", "utils")


def _torch():
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError.for_feature("importing YOLOv5 checkpoints", "torch", "train") from err
    return torch


_STANDINS: dict[tuple[str, str], type] = {}


def _standin_base():
    torch = _torch()

    class _Base(torch.nn.Module):
        """Stand-in for a class of the original yolov5 code (holds its unpickled state only)."""

        _original: tuple[str, str] = ("", "")

        def forward(self, *args: Any) -> Any:  # pragma: no cover - forward goes via original_features
            raise TypeError(f"stand-in for {'.'.join(self._original)} has no forward; use original_features()")

    return _Base


def StandIn(module: str, name: str) -> type:  # noqa: N802 - a class factory
    """The stand-in ``nn.Module`` subclass used for the original class ``module.name``."""
    key = (module, name)
    if key not in _STANDINS:
        base = _standin_base()
        _STANDINS[key] = type(name, (base,), {"_original": key, "__module__": f"thoracic.train.yolov5_import.{module}"})
    return _STANDINS[key]


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        root = module.split(".", 1)[0]
        if root in _STANDIN_PACKAGES:
            return StandIn(module, name)
        if root in _ALLOWED_PREFIXES or (module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS):
            return super().find_class("builtins" if module == "__builtin__" else module, name)
        raise pickle.UnpicklingError(f"the checkpoint references {module}.{name}, which thoracic does not load")


_pickle_module = types.ModuleType("thoracic_yolov5_pickle")
_pickle_module.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_pickle_module.load = pickle.load  # type: ignore[attr-defined]
_pickle_module.__dict__["UnpicklingError"] = pickle.UnpicklingError


def load_original_checkpoint(path: str | PathLike[str]) -> dict[str, Any]:
    """Unpickle an original-YOLOv5 checkpoint without the yolov5 code.

    Returns
    -------
    dict
        The checkpoint dictionary; ``ckpt["model"]`` (or ``"ema"``) is a stand-in module tree.

    Raises
    ------
    CorruptFileError
        Not a torch checkpoint, or it references code outside torch and the yolov5 repository.
    """
    torch = _torch()
    try:
        ckpt = torch.load(Path(path), map_location="cpu", pickle_module=_pickle_module, weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as err:
        raise CorruptFileError(f"not an original YOLOv5 checkpoint: {err}", path=path) from err
    if not isinstance(ckpt, Mapping) or not any(isinstance(ckpt.get(k), torch.nn.Module) for k in ("ema", "model")):
        raise CorruptFileError("not an original YOLOv5 checkpoint (no 'model' module inside)", path=path)
    return dict(ckpt)


def _model_of(ckpt: Mapping[str, Any]):
    torch = _torch()
    model = ckpt.get("ema") if isinstance(ckpt.get("ema"), torch.nn.Module) else ckpt["model"]
    return model.float().eval()


def original_state_dict(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The float32 state dict of an original checkpoint (EMA weights when present)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in _model_of(ckpt).state_dict().items()}


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_yolov5` matched.

    Attributes
    ----------
    total:
        Tensors in the original checkpoint.
    matched:
        Names copied (same name and shape), sorted.
    shape_mismatch:
        Names present in both models with other shapes (the head).
    missing_in_target:
        Checkpoint names the target model does not have.
    layers:
        Layer indices with at least one matched tensor.
    sha256:
        Of the checkpoint file.
    """

    total: int
    matched: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    missing_in_target: tuple[str, ...]
    layers: tuple[int, ...]
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_matched(self) -> int:
        return len(self.matched)

    def summary(self) -> str:
        return (
            f"{self.n_matched} of {self.total} tensors matched by name and shape "
            f"(layers {min(self.layers, default=-1)}-{max(self.layers, default=-1)}); "
            f"{len(self.shape_mismatch)} shape mismatches, {len(self.missing_in_target)} not in the target"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_yolov5(
    checkpoint: str | PathLike[str] | Mapping[str, Any],
    target: Any = "yolov5n.yaml",
    *,
    nc: int = 14,
) -> tuple[Any, ImportReport]:
    """Copy an original-YOLOv5 checkpoint's tensors into an ultralytics ``DetectionModel``.

    Parameters
    ----------
    checkpoint:
        Path of the ``.pt`` file, or a checkpoint dict from :func:`load_original_checkpoint`.
    target:
        An ultralytics ``DetectionModel`` or a model YAML (``yolov5n.yaml``; never a weights name,
        so nothing is downloaded).
    nc:
        Classes of the new model when ``target`` is a YAML.

    Returns
    -------
    (DetectionModel, ImportReport)
    """
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("importing YOLOv5 checkpoints")
    from ultralytics.nn.tasks import DetectionModel

    sha = ""
    if isinstance(checkpoint, Mapping):
        ckpt = checkpoint
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} does not exist")
        sha = _sha256(path)
        ckpt = load_original_checkpoint(path)
    source = original_state_dict(ckpt)
    if isinstance(target, str | PathLike):
        if not str(target).endswith((".yaml", ".yml")):
            raise ConfigError(f"target must be a model YAML such as 'yolov5n.yaml', got {target!r}")
        with _quiet():
            model = DetectionModel(str(target), nc=nc, verbose=False)
    else:
        model = target
    dest = model.state_dict()
    matched, mismatch, missing = [], [], []
    for name, tensor in source.items():
        if name not in dest:
            missing.append(name)
        elif tuple(dest[name].shape) != tuple(tensor.shape):
            mismatch.append(name)
        else:
            matched.append(name)
    update = {k: source[k].to(dest[k].dtype) for k in matched}
    model.load_state_dict(update, strict=False)
    layers = sorted({int(k.split(".")[1]) for k in matched if k.startswith("model.") and k.split(".")[1].isdigit()})
    report = ImportReport(
        total=len(source),
        matched=tuple(sorted(matched)),
        shape_mismatch=tuple(sorted(mismatch)),
        missing_in_target=tuple(sorted(missing)),
        layers=tuple(layers),
        sha256=sha,
    )
    return model, report


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ultralytics' INFO messages (the library never prints)."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- the original forward, on the stand-ins (for proofs) -----------------------------------------
def _run(m: Any, x: Any) -> Any:
    torch = _torch()
    kind = m._original[1] if hasattr(m, "_original") else type(m).__name__
    if kind == "Conv":
        return m.act(m.bn(m.conv(x)))
    if kind == "Bottleneck":
        y = _run(m.cv2, _run(m.cv1, x))
        return x + y if getattr(m, "add", False) else y
    if kind == "C3":
        a = _run(m.cv1, x)
        for b in m.m:
            a = _run(b, a)
        return _run(m.cv3, torch.cat((a, _run(m.cv2, x)), 1))
    if kind == "SPPF":
        x = _run(m.cv1, x)
        y1 = m.m(x)
        y2 = m.m(y1)
        return _run(m.cv2, torch.cat((x, y1, y2, m.m(y2)), 1))
    if kind == "Concat":
        return torch.cat(x, getattr(m, "d", 1))
    if isinstance(m, torch.nn.Module) and not hasattr(m, "_original"):
        return m(x)
    raise ConfigError(f"no original forward for {kind}")


def original_features(ckpt: Mapping[str, Any], x: Any, layers: tuple[int, ...] = (17, 20, 23)) -> list[Any]:
    """Outputs of ``layers`` of the original network for input ``x`` (the original forward).

    Runs the stand-in module tree with YOLOv5's own graph (``m.f`` inputs, ``m.i`` indices), up to
    the last requested layer; the detection head is never run.
    """
    torch = _torch()
    model = _model_of(ckpt)
    seq = model.model
    outputs: list[Any] = []
    with torch.no_grad():
        for m in seq:
            i, f = int(m.i), m.f
            if i > max(layers):
                break
            if f != -1:
                x = outputs[f] if isinstance(f, int) else [x if j == -1 else outputs[j] for j in f]
            x = _run(m, x)
            outputs.append(x)
    return [outputs[i] for i in layers]
