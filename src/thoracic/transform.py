"""The coordinate transform of the geometry contract.

Boxes in thoracic are float ``xyxy`` in pixels of the original image. Every resize, crop, letterbox
or flip returns an :class:`Affine` from its input's coordinates to its output's, and
``inverse()`` maps results back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from thoracic.errors import ConfigError

__all__ = ["Affine", "longest_side_size"]


@dataclass(frozen=True)
class Affine:
    """``x' = sx * x + tx``, ``y' = sy * y + ty``.

    >>> t = Affine(sx=0.5, sy=0.5, tx=10.0, ty=0.0)
    >>> t.apply_boxes([[0, 0, 100, 50]]).tolist()
    [[10.0, 0.0, 60.0, 25.0]]
    >>> t.inverse().apply_boxes(t.apply_boxes([[0, 0, 100, 50]])).tolist()
    [[0.0, 0.0, 100.0, 50.0]]
    """

    sx: float = 1.0
    sy: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def __post_init__(self) -> None:
        if self.sx == 0 or self.sy == 0 or not np.isfinite([self.sx, self.sy, self.tx, self.ty]).all():
            raise ConfigError(f"not an invertible transform: {self}")

    @classmethod
    def identity(cls) -> Affine:
        return cls()

    @property
    def is_identity(self) -> bool:
        return (self.sx, self.sy, self.tx, self.ty) == (1.0, 1.0, 0.0, 0.0)

    def inverse(self) -> Affine:
        return Affine(1.0 / self.sx, 1.0 / self.sy, -self.tx / self.sx, -self.ty / self.sy)

    def then(self, other: Affine) -> Affine:
        """The transform that applies ``self`` first, then ``other``."""
        return Affine(
            other.sx * self.sx,
            other.sy * self.sy,
            other.sx * self.tx + other.tx,
            other.sy * self.ty + other.ty,
        )

    def apply_points(self, points: npt.ArrayLike) -> np.ndarray:
        """Map an ``(N, 2)`` array of ``x, y`` points."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return np.stack([p[:, 0] * self.sx + self.tx, p[:, 1] * self.sy + self.ty], axis=1)

    def apply_boxes(self, boxes: npt.ArrayLike) -> np.ndarray:
        """Map an ``(N, 4)`` array of ``xyxy`` boxes; a mirroring transform keeps ``x_min <= x_max``."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        x = b[:, [0, 2]] * self.sx + self.tx
        y = b[:, [1, 3]] * self.sy + self.ty
        x.sort(axis=1)
        y.sort(axis=1)
        return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)

    def to_dict(self) -> dict[str, float]:
        return {"sx": self.sx, "sy": self.sy, "tx": self.tx, "ty": self.ty}


def longest_side_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """The ``(width, height)`` whose longest side is ``longest``, aspect ratio kept (rounded).

    >>> longest_side_size(1841, 1955, 512)
    (482, 512)
    """
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
