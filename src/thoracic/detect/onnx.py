"""Detection with ONNX Runtime (core install: no torch).

:class:`OnnxDetector` loads a model written by :func:`thoracic.detect.export_detector_onnx`,
reads its metadata (labels, preprocessing chain, input size) and predicts boxes in pixels of the
original image. Pre- and post-processing match ultralytics' predictor: the chain ends with the
same letterbox (grey 114, centred), pixels are quantized to 8 bits as an 8-bit image would be,
and NMS keeps each box's best class, drops scores ``<= conf``, runs class-aware greedy NMS at IoU
``iou`` and keeps ``max_det`` boxes, as ``ultralytics.utils.nms.non_max_suppression`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from thoracic.boxes import nms_xyxy
from thoracic.detect.types import Detections
from thoracic.errors import ConfigError
from thoracic.io.radiograph import ReadConfig
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import OnnxModel, load_model
from thoracic.preprocess.chain import Prepared
from thoracic.preprocess.geometry import hflip
from thoracic.preprocess.model_input import _LEVELS, ModelSource, prepare_8bit

__all__ = ["DetectorConfig", "OnnxDetector"]


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


def _decode(pred: np.ndarray, conf: float, iou: float, max_det: int, max_nms: int = 30000,
            max_wh: float = 7680.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


class OnnxDetector(OnnxModel):
    """A thoracic ONNX detector on ONNX Runtime or OpenVINO (one session, reused).

    Examples
    --------
    >>> det = OnnxDetector.load("detector.onnx")            # doctest: +SKIP
    >>> found = det.predict("chest.dcm")                     # doctest: +SKIP
    >>> found.boxes, found.scores, found.labels              # doctest: +SKIP
    """

    kind = "detector"

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "",
                 config: DetectorConfig | None = None, backend: str = "") -> None:
        super().__init__(session, meta, path=path, sha256=sha256, backend=backend)
        self.config = config or DetectorConfig()
        self._ids = np.asarray(meta.class_ids, dtype=np.int64)
        self._outputs = [o.name for o in session.get_outputs()]

    @classmethod
    def load(cls, path: str | PathLike[str], *, threads: int = 2, config: DetectorConfig | None = None) -> OnnxDetector:
        """Load an ONNX detector; ``threads`` intra-op threads (2 suits a 2-core machine)."""
        m = load_model(path, cls.kind, threads=threads)
        return cls(m.session, m.meta, path=m.path, sha256=m.sha256, config=config, backend=m.backend)

    @property
    def chain(self):
        return self.meta.chain

    def prepare(self, src: ModelSource, read: ReadConfig | None = None, *,
                image_id: str | None = None) -> Prepared:
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

    def predict(self, src: ModelSource, config: DetectorConfig | None = None, *, features: bool = False) -> Detections:
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


def _fuse_tta(b1: np.ndarray, s1: np.ndarray, c1: np.ndarray, b2: np.ndarray, s2: np.ndarray, c2: np.ndarray,
              size: int, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from thoracic.boxes import weighted_boxes_fusion

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
