"""What an image classifier is to the rest of thoracic: one call, :meth:`Classifier.p_abnormal`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from thoracic.preprocess.model_input import ModelSource

__all__ = ["Classifier"]


@runtime_checkable
class Classifier(Protocol):
    """Tells normal from abnormal images (:class:`~thoracic.classify.OnnxClassifier` is one)."""

    def p_abnormal(self, src: ModelSource) -> float:
        """P(abnormal) of one image (a path, bytes or a radiograph)."""
        ...
