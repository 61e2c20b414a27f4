"""What a detector is to the rest of thoracic: one call, :meth:`Detector.predict`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from thoracic.detect.types import Detections

if TYPE_CHECKING:
    from thoracic.detect.onnx import DetectorConfig
    from thoracic.preprocess.model_input import ModelSource

__all__ = ["Detector"]


@runtime_checkable
class Detector(Protocol):
    """Finds abnormalities on one radiograph (:class:`~thoracic.detect.OnnxDetector` is one)."""

    def predict(self, src: ModelSource, config: DetectorConfig | None = None) -> Detections:
        """Boxes in pixels of the original image of ``src`` (a path, bytes or a radiograph), scores, class ids."""
        ...
