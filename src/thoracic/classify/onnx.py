"""The normal/abnormal image classifier on ONNX Runtime (core install: no torch).

The ONNX model takes ``1x3xSxS`` float32 (0..1) and outputs ``probabilities``, one per name of
its metadata (:class:`~thoracic.models.meta.ModelMeta`, kind ``classifier``):

- a 2-class model (the linear probe): ``1x2`` softmax, P(normal), P(abnormal);
- a multi-label model (``extra["output"] == "sigmoid"``, from
  :mod:`thoracic.train.effnet`): ``1xL`` independent sigmoids, ``abnormal`` and VinDr findings,
  plus ``features`` (the last feature map) and ``cam_weights`` (the head's ``L x C`` weights) for
  a class activation map per label (:meth:`Classification.finding_map`).

The metadata holds the preprocessing chain and, in ``extra["low"]``, the threshold chosen on
validation data for the 2-class filter: below it an image is called normal and its boxes dropped.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import numpy as np

from thoracic.classify.types import Classification
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

    def __init__(self, session: Any, meta: ModelMeta, *, path: str = "", sha256: str = "", backend: str = "") -> None:
        super().__init__(session, meta, path=path, sha256=sha256, backend=backend)
        self._abnormal = list(meta.names).index("abnormal") if "abnormal" in meta.names else len(meta.names) - 1
        outputs = [o.name for o in session.get_outputs()]
        self._probabilities = "probabilities" if "probabilities" in outputs else outputs[0]
        cam = str(meta.extra.get("cam_weights", ""))
        self._maps = (meta.feature_output, cam) if meta.feature_output in outputs and cam in outputs else None

    @classmethod
    def load(cls, path: str | PathLike[str], *, threads: int = 2) -> OnnxClassifier:
        m = load_model(path, cls.kind, threads=threads)
        return cls(m.session, m.meta, path=m.path, sha256=m.sha256, backend=m.backend)

    @property
    def low(self) -> float:
        """The default filter threshold stored with the model (0.0 when none)."""
        return float(self.meta.extra.get("low", 0.0))

    def prepare(self, src: ModelSource, read: ReadConfig | None = None, *,
                image_id: str | None = None) -> Prepared:
        if isinstance(src, Prepared):
            return src
        return prepare_8bit(self.meta.chain, src, read, image_id=image_id)

    @property
    def labels(self) -> tuple[str, ...]:
        """The name of each output probability (``normal``, ``abnormal``; or ``abnormal`` and findings)."""
        return tuple(self.meta.names)

    @property
    def multilabel(self) -> bool:
        """One independent (sigmoid) probability per label, not a softmax over normal and abnormal."""
        return self.meta.extra.get("output") == "sigmoid"

    @property
    def thresholds(self) -> dict[str, float]:
        """Each label's operating threshold stored with the model (``extra["thresholds"]``; empty when none)."""
        thr = self.meta.extra.get("thresholds") or {}
        return {str(k): float(v) for k, v in thr.items()} if isinstance(thr, dict) else {}

    @property
    def has_maps(self) -> bool:
        """The model outputs its feature map and head weights (class activation maps per label)."""
        return self._maps is not None

    def _input_of(self, prepared: Prepared) -> np.ndarray:
        pixels = model_pixels(prepared.pixels)
        size = self.meta.imgsz
        if pixels.shape[:2] != (size, size):
            raise ConfigError(f"prepared image is {pixels.shape[1]}x{pixels.shape[0]}, the model takes {size}x{size}")
        return np.ascontiguousarray(np.broadcast_to(pixels[None, None], (1, 3, size, size)), dtype=np.float32)

    def p_abnormal(self, src: ModelSource) -> float:
        """P(abnormal) of one image (a path, bytes, a Radiograph or a Prepared of this model's chain)."""
        probs = self.session.run([self._probabilities], {self._input: self._input_of(self.prepare(src))})[0][0]
        return float(probs[self._abnormal])

    def classify(self, src: ModelSource, *, features: bool = False) -> Classification:
        """Every probability of one image; with ``features`` also what its class activation maps need
        (when the model has them: :attr:`has_maps`)."""
        prepared = self.prepare(src)
        x = self._input_of(prepared)
        keep = features and self._maps is not None
        names = [self._probabilities, *(self._maps if keep and self._maps else ())]
        out = self.session.run(names, {self._input: x})
        probs = out[0][0]
        w, h = prepared.radiograph.original_size
        return Classification(
            float(probs[self._abnormal]), dict(zip(self.meta.names, (float(p) for p in probs), strict=True)), (int(w), int(h)),
            out[1][0] if keep else None, out[2] if keep else None, prepared.to_original if keep else None,
            self.meta.imgsz if keep else 0)
