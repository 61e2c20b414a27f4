"""The normal/abnormal image classifier on ONNX Runtime (core install: no torch).

The ONNX model takes ``1x3xSxS`` float32 (0..1) and outputs ``probabilities`` (``1x2``:
P(normal), P(abnormal)). Its metadata (:class:`~thoracic.models.meta.ModelMeta`, kind
``classifier``) holds the preprocessing chain and, in ``extra["low"]``, the threshold chosen on
validation data for the 2-class filter: below it an image is called normal and its boxes dropped.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from thoracic.errors import ConfigError
from thoracic.io.radiograph import ReadConfig
from thoracic.models.meta import ModelMeta
from thoracic.models.runtime import OnnxModel, load_model
from thoracic.preprocess.chain import Prepared
from thoracic.preprocess.model_input import ModelSource, model_pixels, prepare_8bit

__all__ = ["OnnxClassifier"]


class OnnxClassifier(OnnxModel):
    """A thoracic ONNX normal/abnormal classifier (one session, reused)."""

    kind = "classifier"

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "") -> None:
        super().__init__(session, meta, path=path, sha256=sha256)
        self._abnormal = list(meta.names).index("abnormal") if "abnormal" in meta.names else len(meta.names) - 1

    @classmethod
    def load(cls, path: str | PathLike[str], *, threads: int = 2) -> OnnxClassifier:
        m = load_model(path, cls.kind, threads=threads)
        return cls(m.session, m.meta, path=m.path, sha256=m.sha256)

    @property
    def low(self) -> float:
        """The default filter threshold stored with the model (0.0 when none)."""
        return float(self.meta.extra.get("low", 0.0))

    def prepare(self, src: ModelSource, read: ReadConfig | None = None, *,
                image_id: str | None = None) -> Prepared:
        if isinstance(src, Prepared):
            return src
        return prepare_8bit(self.meta.chain, src, read, image_id=image_id)

    def p_abnormal(self, src: ModelSource) -> float:
        """P(abnormal) of one image (a path, bytes, a Radiograph or a Prepared of this model's chain)."""
        pixels = model_pixels(self.prepare(src).pixels)
        size = self.meta.imgsz
        if pixels.shape[:2] != (size, size):
            raise ConfigError(f"prepared image is {pixels.shape[1]}x{pixels.shape[0]}, the model takes {size}x{size}")
        x = np.ascontiguousarray(np.broadcast_to(pixels[None, None], (1, 3, size, size)), dtype=np.float32)
        probs = self.session.run(None, {self._input: x})[0][0]
        return float(probs[self._abnormal])
