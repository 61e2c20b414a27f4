"""Results of detection: boxes in pixels of the original image, with Kaggle class ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from thoracic.labels import LABELS
from thoracic.transform import Affine

__all__ = ["Detections"]


@dataclass(frozen=True)
class Detections:
    """The findings of one image.

    Attributes
    ----------
    boxes:
        ``(N, 4)`` float32 ``xyxy`` in pixels of the ORIGINAL image, best score first.
    scores:
        ``(N,)`` float32 in ``[0, 1]``.
    class_ids:
        ``(N,)`` int64 Kaggle class ids (0-13).
    image_size:
        ``(width, height)`` of the original image.
    feature:
        The model's intermediate feature map (``C x h x w``) for heatmaps, when asked for.
    feature_transform:
        Maps pixel coordinates of the model input the feature map covers (``feature_input``
        pixels square) to the original image; set with ``feature``.
    feature_input:
        Side of that model input in pixels (0 without a feature map).
    """

    boxes: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    class_ids: np.ndarray = field(repr=False)
    image_size: tuple[int, int] = (0, 0)
    feature: np.ndarray | None = field(default=None, repr=False)
    feature_transform: Affine | None = field(default=None, repr=False)
    feature_input: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "class_ids", np.asarray(self.class_ids, dtype=np.int64).reshape(-1))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def labels(self) -> tuple[str, ...]:
        """The VinDr label name of each box."""
        return tuple(LABELS[int(c)] for c in self.class_ids)

    def heatmap(self) -> np.ndarray | None:
        """The Eigen-CAM of the feature map at the original size (``height x width``), if any."""
        if self.feature is None or self.feature_transform is None or self.feature_input <= 0:
            return None
        from thoracic.explain import eigencam, to_original

        return to_original(eigencam(self.feature), self.feature_input, self.feature_transform, self.image_size)

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0), image_size)

    def top(self, max_det: int) -> Detections:
        """The ``max_det`` best boxes."""
        order = np.argsort(-self.scores, kind="stable")[: max(0, int(max_det))]
        return Detections(self.boxes[order], self.scores[order], self.class_ids[order], self.image_size, self.feature,
                          self.feature_transform, self.feature_input)

    def above(self, conf: float) -> Detections:
        """Boxes scoring at least ``conf``."""
        keep = self.scores >= conf
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.image_size, self.feature,
                          self.feature_transform, self.feature_input)

    def only(self, class_ids: Iterable[int]) -> Detections:
        """The boxes of the classes ``class_ids`` (Kaggle ids), in order."""
        keep = np.isin(self.class_ids, np.fromiter(class_ids, dtype=np.int64))
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep], self.image_size, self.feature,
                          self.feature_transform, self.feature_input)
