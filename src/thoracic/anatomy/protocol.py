"""What a lung segmenter is to the rest of thoracic: one call, :meth:`Segmenter.segment`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from thoracic.anatomy.roi import RoiConfig
    from thoracic.anatomy.segmenter import LungMask
    from thoracic.io.radiograph import Radiograph

__all__ = ["Segmenter"]


@runtime_checkable
class Segmenter(Protocol):
    """Finds the lungs on one radiograph (:class:`~thoracic.anatomy.LungSegmenter` is one)."""

    def segment(self, radiograph: Radiograph, roi: RoiConfig | None = None) -> LungMask:
        """The lung mask at the original size, and the lung square."""
        ...
