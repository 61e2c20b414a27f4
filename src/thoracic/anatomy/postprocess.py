"""From a probability map to a lung mask: threshold, keep the largest components, fill holes.

>>> import numpy as np
>>> prob = np.zeros((10, 12), np.float32)
>>> prob[1:7, 1:5] = prob[1:7, 7:11] = 0.9   # two lungs
>>> prob[3, 2] = 0.1                          # a hole
>>> prob[9, 6] = 0.9                          # a speck
>>> m = postprocess(prob)
>>> int(m[3, 2]), int(m[9, 6]), int((m > 0).sum())
(255, 0, 48)
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["fill_holes", "keep_largest", "postprocess"]


def keep_largest(mask: np.ndarray, count: int = 2) -> np.ndarray:
    """Keep the ``count`` largest 8-connected components of a boolean mask (``0`` keeps all)."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if count <= 0:
        return m.astype(bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1 + count:
        return m.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.argsort(-areas, kind="stable")[:count]
    kept = np.zeros(n, dtype=bool)
    kept[keep] = True
    return kept[labels]  # one lookup per pixel (np.isin's result)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    flood = np.pad(m, 1)  # a new array: the fill does not touch ``m``
    ff = np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, ff, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return m.astype(bool) | holes


def postprocess(prob: np.ndarray, threshold: float = 0.5, keep: int = 2, holes: bool = True) -> np.ndarray:
    """A 0/255 ``uint8`` mask from a probability map of the same size."""
    m = np.asarray(prob) >= threshold
    m = keep_largest(m, keep)
    if holes:
        m = fill_holes(m)
    return np.ascontiguousarray(m, dtype=bool).view(np.uint8) * np.uint8(255)
