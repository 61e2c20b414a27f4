"""Detection with ONNX Runtime (core install: no torch).

:class:`OnnxDetector` loads a model written by :func:`thoracic.detect.export_detector_onnx`,
reads its metadata (labels, preprocessing chain, input size) and predicts boxes in pixels of the
original image. Pre- and post-processing match ultralytics' predictor: the chain ends with the
same letterbox (grey 114, centred), pixels are quantized to 8 bits as an 8-bit image would be,
and NMS keeps each box's best class, drops scores ``<= conf``, runs class-aware greedy NMS at IoU
``iou`` and keeps ``max_det`` boxes, as ``ultralytics.utils.nms.non_max_suppression`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ..io.radiograph import Radiograph, ReadOptions
from ..preprocess.chain import Chain, Prepared
from ..preprocess.geometry import hflip, letterbox
from .meta import META_KEY, ModelMeta
from .types import Detections

__all__ = [
    "DetectorConfig",
    "OnnxDetector",
    "execution_providers",
    "file_sha256",
    "model_pixels",
    "nms_xyxy",
    "onnx_device",
    "onnx_session",
    "prepare_8bit",
    "prepare_8bit_many",
    "read_meta",
]


def file_sha256(path: str | PathLike[str]) -> str:
    """The sha256 of a file (hex)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The device of the ONNX Runtime sessions created in this context (see :func:`onnx_device`).
_DEVICE: ContextVar[str] = ContextVar("thoracic_onnx_device", default="auto")


def execution_providers(device: str = "auto", available: Sequence[str] | None = None) -> list[Any]:
    """ONNX Runtime execution providers for ``device``, best first.

    ``"auto"``: CUDA (GPU 0) when this onnxruntime build offers it, else the CPU; ``"cpu"``: the
    CPU only; ``"cuda"`` or ``"cuda:N"``: GPU N (an error when CUDA is not available). The CPU
    provider always comes last, so operators CUDA lacks still run. ``available`` defaults to
    ``onnxruntime.get_available_providers()``.

    >>> execution_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'device_id': 0}), 'CPUExecutionProvider']
    >>> execution_providers("auto", ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    >>> execution_providers("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    [('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    name = str(device).strip().lower()
    if name == "cpu":
        return ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in available
    if name == "auto":
        return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not has_cuda:
            raise ConfigError(
                f"device {device!r}: this onnxruntime has no CUDA execution provider (it offers "
                f"{', '.join(available) or 'none'}); install onnxruntime-gpu or use --device cpu"
            )
        return [("CUDAExecutionProvider", {"device_id": int(name[5:] or 0)}), "CPUExecutionProvider"]
    raise ConfigError.unknown("device", str(device), ("auto", "cpu", "cuda", "cuda:N"))


@contextmanager
def onnx_device(device: str) -> Iterator[None]:
    """Run the sessions created inside on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``).

    Scoped to this thread/context, so model loaders need no device argument::

        with onnx_device("cpu"):
            predictor = Predictor.load()
    """
    execution_providers(device, ["CUDAExecutionProvider", "CPUExecutionProvider"])  # validates the name
    token = _DEVICE.set(device)
    try:
        yield
    finally:
        _DEVICE.reset(token)


def onnx_session(path: str | PathLike[str], threads: int = 2, *, device: str | None = None,
                 spin: bool | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with ``threads`` intra-op threads on the CPU.

    ``device`` (default: that of the enclosing :func:`onnx_device`, else ``"auto"``) picks the
    execution providers (:func:`execution_providers`): CUDA first when available. ``spin``: let
    idle intra-op threads busy-wait between operators (ONNX Runtime's default); by default only
    with several threads, where it cuts one image's latency (~6% for the shipped detector on 2
    cores). The batch predictor runs 1-thread sessions side by side, which never spin.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - a core dependency
        raise MissingDependencyError.for_feature("ONNX inference", "onnxruntime") from err
    providers = execution_providers(device or _DEVICE.get(), ort.get_available_providers())
    opts = ort.SessionOptions()
    threads = max(1, int(threads))
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # spinning threads save a wake-up per operator but steal CPU from anything else running
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if (threads > 1 if spin is None else spin) else "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        raise ConfigError(f"cannot load ONNX model: {err}", path=str(path)) from err


def read_meta(session: Any, path: str | PathLike[str] = "") -> ModelMeta:
    """The :class:`ModelMeta` stored in a session's model."""
    props = session.get_modelmeta().custom_metadata_map
    if META_KEY not in props:
        raise ConfigError("not a thoracic model (no 'thoracic' metadata); export it with thoracic", path=str(path) or None)
    return ModelMeta.from_json(props[META_KEY])


@dataclass(frozen=True)
class DetectorConfig:
    """Post-processing settings.

    Attributes
    ----------
    conf:
        Keep boxes scoring above this (ultralytics' ``conf``).
    iou:
        NMS IoU threshold (ultralytics' default 0.7).
    max_det:
        At most this many boxes per image.
    tta:
        Also run the horizontally flipped image and fuse both with WBF.
    tta_iou:
        WBF IoU threshold of the TTA fusion.
    """

    conf: float = 0.01
    iou: float = 0.7
    max_det: int = 100
    tta: bool = False
    tta_iou: float = 0.55

    def __post_init__(self) -> None:
        if not (0.0 <= self.conf <= 1.0 and 0.0 <= self.iou <= 1.0 and 0.0 <= self.tta_iou <= 1.0):
            raise ConfigError("conf, iou and tta_iou must lie in [0, 1]")
        if self.max_det < 1:
            raise ConfigError(f"max_det must be >= 1, got {self.max_det}")


def prepare_8bit(chain: Chain, src: Any, read: ReadOptions | None = None, *, image_id: str | None = None) -> Prepared:
    """Run ``chain`` as training saw it: steps up to the final letterbox, 8-bit, then letterbox.

    The training export writes 8-bit PNGs through the chain and ultralytics letterboxes those
    8-bit images (``cv2.INTER_LINEAR``, grey 114); doing the same here makes the model's input
    identical to what ultralytics' predictor would feed it.
    """
    steps = chain.steps
    last = steps[-1] if steps and steps[-1].name == "letterbox" else None
    base = Chain(chain.name, steps[:-1], chain.normalize, chain.description) if last else chain
    prepared = base.run(src) if isinstance(src, Radiograph) else base.load(src, read, image_id=image_id)
    u8 = prepared.to_uint8()
    transform = prepared.transform
    if last is not None:
        params = dict(last.params)
        u8, t = letterbox(u8, int(params["size"]), pad_value=114, interpolation=params.get("interpolation", "linear"))
        transform = transform.then(t)
    pixels = u8.astype(np.float32) / np.float32(255.0)
    return Prepared(pixels=pixels, transform=transform, radiograph=prepared.radiograph)


def prepare_8bit_many(chains: Iterable[Chain], radiographs: Mapping[str, Radiograph], *,
                      levels: bool = False) -> dict[Chain, Prepared]:
    """:func:`prepare_8bit` of several chains on one image, each shared part run once.

    Chains that differ only in their final letterbox (the shipped detector at 512 and classifier
    at 320 both resize to 512 and apply CLAHE first) share the 8-bit image before it. Each result
    equals ``prepare_8bit(chain, radiographs[chain.normalize])``; with ``levels`` its pixels are
    the 8-bit levels themselves (``uint8``, a quarter of the bytes to send between processes),
    which :class:`OnnxDetector` and the classifier read as ``level / 255``, exactly the floats.
    """
    bases: dict[tuple[str, tuple[Any, ...]], tuple[np.ndarray, Any, Radiograph]] = {}
    out: dict[Chain, Prepared] = {}
    for chain in chains:
        if chain in out:
            continue
        steps = chain.steps
        last = steps[-1] if steps and steps[-1].name == "letterbox" else None
        key = (chain.normalize, steps[:-1] if last else steps)
        if key not in bases:
            prepared = Chain(chain.name, key[1], chain.normalize, chain.description).run(radiographs[chain.normalize])
            bases[key] = (prepared.to_uint8(), prepared.transform, prepared.radiograph)
        u8, transform, rg = bases[key]
        if last is not None:
            params = dict(last.params)
            u8, t = letterbox(u8, int(params["size"]), pad_value=114, interpolation=params.get("interpolation", "linear"))
            transform = transform.then(t)
        out[chain] = Prepared(pixels=u8 if levels else u8.astype(np.float32) / np.float32(255.0), transform=transform,
                              radiograph=rg)
    return out


#: ``level / 255`` in float32 for every 8-bit level: what ``u8.astype(np.float32) / 255`` gives.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255.0)


def model_pixels(pixels: np.ndarray) -> np.ndarray:
    """A prepared image as the models' float32 ``0..1``: 8-bit levels (``uint8``) become ``level / 255``."""
    return _LEVELS[pixels] if pixels.dtype == np.uint8 else pixels


def _iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def nms_xyxy(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (as ``torchvision.ops.nms``): indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    b = boxes[order]
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if i + 1 < len(order):
            rest = np.arange(i + 1, len(order))
            over = _iou_one(b[i], b[rest]) > iou
            suppressed[rest[over]] = True
    return np.asarray(keep, dtype=np.int64)


def _decode(pred: np.ndarray, conf: float, iou: float, max_det: int, max_nms: int = 30000, max_wh: float = 7680.0):
    """``(4 + nc, N)`` raw output -> boxes (input pixels), scores, output indices of the class."""
    p = pred.T
    scores_all = p[:, 4:]
    cls = scores_all.argmax(1)
    score = scores_all[np.arange(len(cls)), cls]
    keep = score > conf
    p, cls, score = p[keep], cls[keep], score[keep]
    xy, wh = p[:, :2], p[:, 2:4]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
    if len(score) > max_nms:
        top = np.argsort(-score, kind="stable")[:max_nms]
        boxes, score, cls = boxes[top], score[top], cls[top]
    kept = nms_xyxy(boxes + (cls[:, None] * max_wh), score, iou)[:max_det]
    # a float32 sigmoid can round to 1 + 1e-7; scores are probabilities
    return boxes[kept], np.clip(score[kept], 0.0, 1.0), cls[kept]


class OnnxDetector:
    """A thoracic ONNX detector on ONNX Runtime (one session, reused).

    Examples
    --------
    >>> det = OnnxDetector.load("detector.onnx")            # doctest: +SKIP
    >>> found = det.predict("chest.dcm")                     # doctest: +SKIP
    >>> found.boxes, found.scores, found.labels              # doctest: +SKIP
    """

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "",
                 config: DetectorConfig | None = None) -> None:
        if meta.kind != "detector":
            raise ConfigError(f"expected a detector, got a {meta.kind}", path=path or None)
        self.session = session
        self.meta = meta
        self.path = path
        self.sha256 = sha256
        self.config = config or DetectorConfig()
        self._ids = np.asarray(meta.class_ids, dtype=np.int64)
        self._outputs = [o.name for o in session.get_outputs()]
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, path: str | PathLike[str], *, threads: int = 2, config: DetectorConfig | None = None) -> OnnxDetector:
        """Load an ONNX detector; ``threads`` intra-op threads (2 suits a 2-core machine)."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"model file {p} does not exist")
        session = onnx_session(p, threads)
        return cls(session, read_meta(session, p), path=str(p), sha256=file_sha256(p), config=config)

    @property
    def chain(self):
        return self.meta.chain

    @property
    def id(self) -> str:
        """A short identity of the model file (the first 12 hex digits of its sha256)."""
        return self.sha256[:12]

    def prepare(self, src: Any, read: ReadOptions | None = None, *, image_id: str | None = None) -> Prepared:
        """Read and preprocess ``src`` (a path, bytes, a :class:`Radiograph` or a :class:`Prepared`)."""
        if isinstance(src, Prepared):
            return src
        return prepare_8bit(self.chain, src, read, image_id=image_id)

    def _tensor(self, pixels: np.ndarray) -> np.ndarray:
        size = self.meta.imgsz
        if pixels.shape[:2] != (size, size):
            raise ConfigError(f"prepared image is {pixels.shape[1]}x{pixels.shape[0]}, the model takes {size}x{size}")
        if pixels.dtype == np.uint8:  # 8-bit levels: already quantized
            q = _LEVELS[pixels]
        else:
            q = np.clip(np.floor(pixels.astype(np.float32) * 255.0 + 0.5), 0, 255) / np.float32(255.0)
        return np.ascontiguousarray(np.broadcast_to(q[None, None], (1, 3, size, size)), dtype=np.float32)

    def raw(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on a prepared ``S x S`` image: ``(predictions (4+nc, N), feature map or None)``."""
        outs = self.session.run(None, {self._input: self._tensor(pixels)})
        feats = outs[1][0] if len(outs) > 1 else None
        return outs[0][0], feats

    def _detect(self, pixels: np.ndarray, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        pred, feats = self.raw(pixels)
        boxes, scores, cls = _decode(pred, cfg.conf, cfg.iou, cfg.max_det)
        return boxes, scores, cls, feats

    def predict(self, src: Any, config: DetectorConfig | None = None, *, features: bool = False) -> Detections:
        """Detect findings; boxes in pixels of the original image (clipped to it)."""
        cfg = config or self.config
        prepared = self.prepare(src)
        size = self.meta.imgsz
        boxes, scores, cls, feats = self._detect(prepared.pixels, cfg)
        ids = self._ids[cls] if len(cls) else np.zeros(0, dtype=np.int64)
        if cfg.tta:
            flipped, flip = hflip(prepared.pixels)
            fb, fs, fc, _ = self._detect(flipped, cfg)
            fb = flip.inverse().apply_boxes(fb) if len(fb) else fb.reshape(0, 4)
            boxes, scores, ids = _fuse_tta(boxes, scores, ids, fb, fs, self._ids[fc] if len(fc) else fc, size, cfg)
        rg = prepared.radiograph
        w, h = rg.original_size
        if len(boxes):
            boxes = prepared.to_original.apply_boxes(boxes)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        # drop outputs that are not findings of the schema (e.g. a model with extra names)
        valid = ids >= 0
        det = Detections(boxes[valid] if len(boxes) else boxes, scores[valid], ids[valid], (int(w), int(h)),
                         feats if features else None,
                         prepared.to_original if features and feats is not None else None,
                         size if features and feats is not None else 0)
        return det.top(cfg.max_det)


def _fuse_tta(b1, s1, c1, b2, s2, c2, size: int, cfg: DetectorConfig):
    from ..ensemble.wbf import weighted_boxes_fusion

    if not len(b1) and not len(b2):
        return b1.reshape(0, 4), s1, c1
    # WBF breaks score ties by model order: order the two passes by their scores, not by which
    # one saw the image as given, so that TTA on a mirrored image gives the mirrored result
    if (float(np.sum(s2)), len(s2)) > (float(np.sum(s1)), len(s1)):
        b1, s1, c1, b2, s2, c2 = b2, s2, c2, b1, s1, c1
    boxes, scores, labels = weighted_boxes_fusion(
        [np.asarray(b1).reshape(-1, 4), np.asarray(b2).reshape(-1, 4)], [s1, s2], [c1, c2], (size, size),
        iou_thr=cfg.tta_iou, skip_box_thr=cfg.conf, clip=True,
    )
    return np.asarray(boxes, dtype=np.float32), np.asarray(scores, dtype=np.float32), np.asarray(labels, dtype=np.int64)
