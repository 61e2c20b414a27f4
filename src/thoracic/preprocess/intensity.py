"""Intensity steps: windows, normalization, contrast enhancement, denoising.

Plain functions on 2-D ``float32`` arrays. Display-domain steps take and return images in
``[0, 1]`` (1 = white = dense, whatever the file's photometric interpretation was); ``window``,
``percentile_window`` and ``minmax`` map any values into that range; ``zscore`` leaves it.
"""

from __future__ import annotations

import cv2
import numpy as np

from thoracic.errors import ConfigError, ConstantImageError

# the intensity ranges a reader applies, also preprocessing steps of their own
from thoracic.io.voi import minmax, percentile_bounds, percentile_window, truncate_8bit, window

__all__ = [
    "clahe",
    "denoise_bilateral",
    "denoise_median",
    "denoise_nlm",
    "equalize",
    "minmax",
    "percentile_bounds",
    "percentile_window",
    "to_uint8",
    "truncate_8bit",
    "window",
    "zscore",
]


def zscore(arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit standard deviation (the output is not limited to ``[0, 1]``)."""
    a = np.asarray(arr, dtype=np.float32)
    std = float(a.std())
    if std < eps:
        raise ConstantImageError("the image has a single intensity value; there is nothing to normalize")
    return (a - np.float32(a.mean())) * np.float32(1.0 / std)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats to 8-bit with rounding (values outside are clipped)."""
    out = np.asarray(arr, dtype=np.float32) * np.float32(255.0)
    out += np.float32(0.5)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _to_uint16(arr: np.ndarray) -> np.ndarray:
    out = np.clip(np.asarray(arr, dtype=np.float32), 0.0, 1.0) * np.float32(65535.0) + np.float32(0.5)
    return out.astype(np.uint16)


def clahe(arr: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (OpenCV), computed at 16-bit precision."""
    if clip_limit <= 0 or tile_grid < 1:
        raise ConfigError(f"CLAHE needs clip_limit > 0 and tile_grid >= 1, got {clip_limit}, {tile_grid}")
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid), int(tile_grid)))
    return op.apply(_to_uint16(arr)).astype(np.float32) * np.float32(1.0 / 65535.0)


def equalize(arr: np.ndarray) -> np.ndarray:
    """Global histogram equalization (on 4096 bins)."""
    a = np.clip(np.asarray(arr, dtype=np.float32), 0.0, 1.0)
    bins = 4096
    idx = (a * (bins - 1) + 0.5).astype(np.int32)
    hist = np.bincount(idx.ravel(), minlength=bins)
    cdf = np.cumsum(hist).astype(np.float64)
    nz = cdf[cdf > 0][0]
    if cdf[-1] == nz:
        raise ConstantImageError("the image has a single intensity value; there is nothing to equalize")
    lut = ((cdf - nz) / (cdf[-1] - nz)).clip(0, 1).astype(np.float32)
    return lut[idx]


def denoise_median(arr: np.ndarray, ksize: int = 3) -> np.ndarray:
    """Median filter (removes salt-and-pepper noise); ``ksize`` odd, 3 or 5 at 16-bit precision."""
    if ksize not in (3, 5):
        raise ConfigError(f"median ksize must be 3 or 5, got {ksize}")
    return cv2.medianBlur(_to_uint16(arr), ksize).astype(np.float32) * np.float32(1.0 / 65535.0)


def denoise_bilateral(arr: np.ndarray, diameter: int = 5, sigma_color: float = 0.05, sigma_space: float = 3.0) -> np.ndarray:
    """Edge-preserving bilateral filter; ``sigma_color`` in the image's ``0..1`` units."""
    a = np.ascontiguousarray(arr, dtype=np.float32)
    return cv2.bilateralFilter(a, int(diameter), float(sigma_color), float(sigma_space))


def denoise_nlm(arr: np.ndarray, strength: float = 5.0, template: int = 7, search: int = 21) -> np.ndarray:
    """Non-local means (OpenCV, on 8 bits). Costly: run it at model resolution, not on a 3000² film."""
    out = cv2.fastNlMeansDenoising(to_uint8(arr), None, float(strength), int(template), int(search))
    return out.astype(np.float32) * np.float32(1.0 / 255.0)
