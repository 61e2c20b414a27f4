"""Export an ultralytics detector checkpoint to ONNX with thoracic's metadata (``train`` extra).

The ONNX model has one input ``images`` (``1x3xSxS`` float32, 0..1, RGB; grey images repeated)
and two outputs: ``predictions`` (``1 x (4 + nc) x N``: box centre x, y, width, height in input
pixels, then per-class sigmoid scores; ultralytics' own export layout, no NMS inside) and
``features`` (the P3 feature map feeding the head's first scale, for heatmaps). The metadata
(:class:`~thoracic.models.meta.ModelMeta`) names all 14 VinDr labels, the trained classes, the
preprocessing chain ending in ``letterbox(size=S)`` (which says whether the model crops to the lungs:
``lung_crop`` is derived from it) and the training data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic._version import __version__
from thoracic.errors import ConfigError
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import write_meta
from thoracic.preprocess.chain import Chain, Step, get_chain

__all__ = ["check_lung_crop", "export_detector_onnx", "load_ultralytics_model", "torch_onnx_export", "with_letterbox"]


def with_letterbox(chain: Chain, imgsz: int) -> Chain:
    """``chain`` followed by ``letterbox(size=imgsz)`` (ultralytics' LetterBox, grey 114 padding)."""
    steps = [s for s in chain.steps if s.name != "letterbox"]
    steps.append(Step.of("letterbox", size=int(imgsz), interpolation="linear"))
    return Chain(chain.name + f"+letterbox{imgsz}", tuple(steps), chain.normalize, chain.description)


def check_lung_crop(chain: Chain, lung_crop: bool | None) -> None:
    """Refuse a stated ``lung_crop`` that contradicts ``chain`` (the chain alone decides whether a model crops)."""
    if lung_crop is None or bool(lung_crop) == chain.crops:
        return
    if lung_crop:
        raise ConfigError(
            f"--lung-crop contradicts the chain: {chain.describe()} does not crop to the lungs, so the model was not "
            f"trained on lung crops; the chain alone decides whether a model crops (export its data set with a "
            f"lung_roi chain such as lung-roi-512-clahe), so drop --lung-crop"
        )
    raise ConfigError(
        f"lung_crop=False contradicts the chain: {chain.describe()} crops to the lungs; the chain alone decides"
    )


def load_ultralytics_model(checkpoint: str | PathLike[str]) -> Any:
    """The float32, eval-mode ``DetectionModel`` of an ultralytics ``.pt`` (train extra)."""
    from thoracic.train._ultralytics import load_ultralytics

    load_ultralytics("ONNX export")
    from ultralytics.nn.tasks import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
    return model.float().eval()


def torch_onnx_export(model: Any, size: int, path: Path, output_names: Sequence[str], opset: int = 17) -> None:
    """``torch.onnx.export`` with the TorchScript exporter (as ultralytics uses), batch 1, quietly."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        with torch.no_grad():
            torch.onnx.export(
                model, (torch.zeros(1, 3, size, size),), str(path), opset_version=int(opset),
                input_names=["images"], output_names=list(output_names), dynamo=False, do_constant_folding=True,
            )


def _wrapper(model: Any, feature_layer: int) -> Any:
    import torch

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y: list[Any] = []
            feature = x
            for m in self.model.model:
                if m.f != -1:
                    x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
                x = m(x)
                y.append(x)
                if m.i == feature_layer:
                    feature = x
            pred = x[0] if isinstance(x, list | tuple) else x
            return pred, feature

    return Wrapper().eval()


def export_detector_onnx(
    checkpoint: str | PathLike[str],
    out: str | PathLike[str],
    *,
    chain: Chain | str | PathLike[str] | None = None,
    data: str | PathLike[str] | None = None,
    imgsz: int | None = None,
    trained_classes: Sequence[str] | None = None,
    lung_crop: bool | None = None,
    training_data: str = "",
    opset: int = 17,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out`` (ONNX) from an ultralytics checkpoint; returns its path.

    Parameters
    ----------
    chain:
        The preprocessing chain the model was trained with (without the final letterbox, which
        is appended): a :class:`Chain`, a chain name, or a ``chain.json`` file. Default:
        ``chain.json`` beside the training data YAML; a :class:`~thoracic.errors.ConfigError`
        when there is none (a model exported with the wrong chain predicts silently worse).
    data:
        The training data YAML, when the path stored in the checkpoint is not on this machine
        (e.g. a model trained elsewhere on a copy of the data set): its ``chain.json`` and
        ``labels/`` give the chain and the trained classes.
    imgsz:
        Input size (default: the training ``imgsz``).
    trained_classes:
        Default: the classes with labels in the training data (read from ``data.yaml``'s
        ``labels/``), else all names.
    lung_crop:
        Deprecated: whether the model crops is read from ``chain`` (a chain with a ``lung_roi``
        step, such as ``lung-roi-512-clahe``). A value that contradicts the chain is a
        :class:`~thoracic.errors.ConfigError`; ``None`` (the default) checks nothing.
    """
    import torch

    model = load_ultralytics_model(checkpoint)
    args = dict(getattr(model, "args", {}) or {})
    imgsz = int(imgsz or args.get("imgsz") or 640)
    if imgsz % 32:
        raise ConfigError(f"imgsz must be a multiple of 32, got {imgsz}")
    if data is not None:
        data_yaml: Path | None = Path(data)
        if not data_yaml.is_file():
            raise ConfigError(f"training data YAML {data_yaml} does not exist", path=str(data_yaml))
    else:
        data_yaml = Path(str(args.get("data", ""))) if args.get("data") else None
    if chain is None:
        cj = data_yaml.parent / "chain.json" if data_yaml else None
        if cj is None or not cj.is_file():
            raise ConfigError(
                f"the preprocessing chain the model was trained with is unknown: no chain.json beside its data "
                f"set {str(data_yaml) if data_yaml else '(none recorded)'}; pass the chain (a name or a chain.json) "
                f"or the data YAML of a copy of the data set")
        chain = Chain.from_json(cj.read_text())
    elif not isinstance(chain, Chain) and str(chain).endswith(".json"):
        if not Path(chain).is_file():
            raise ConfigError(f"chain file {chain} does not exist", path=str(chain))
        chain = Chain.from_json(Path(chain).read_text())
    chain = with_letterbox(get_chain(chain), imgsz)
    check_lung_crop(chain, lung_crop)
    names = tuple(model.names[i] for i in range(len(model.names)))
    if trained_classes is None:
        trained_classes = _trained_classes(data_yaml, names) if data_yaml and data_yaml.is_file() else names
    detect = model.model[-1]
    feature_layer = int(detect.f[0]) if isinstance(detect.f, list) else -1
    for m in model.modules():
        if type(m).__name__ in ("Detect",):
            m.export, m.format, m.dynamic = True, "onnx", False
    model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
    wrapper = _wrapper(model, feature_layer)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch_onnx_export(wrapper, imgsz, tmp, ["predictions", "features"], opset)
    import onnx

    proto = onnx.load(str(tmp))
    try:
        import onnxslim

        proto = onnxslim.slim(proto)
    except Exception:  # noqa: BLE001 - slimming is an optimization only
        pass
    meta = ModelMeta(
        kind="detector",
        names=names,
        trained_classes=tuple(trained_classes),
        chain=chain,
        imgsz=imgsz,
        feature_output="features",
        feature_layer=feature_layer,
        stride=int(max(getattr(model, "stride", torch.tensor([32])).tolist())),
        thoracic_version=__version__,
        training_data=training_data,
        architecture=str(getattr(model, "yaml", {}).get("yaml_file", "")),
        extra=dict(extra or {}),
    )
    write_meta(proto, meta)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


def _trained_classes(data_yaml: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    labels = data_yaml.parent / "labels"
    if not labels.is_dir():
        return names
    seen: set[int] = set()
    for f in labels.glob("*.txt"):
        for line in f.read_text().splitlines():
            if line.strip():
                seen.add(int(line.split()[0]))
    return tuple(names[i] for i in sorted(seen) if i < len(names)) or names
