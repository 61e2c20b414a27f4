"""Values of interest: the DICOM VOI window and the intensity ranges a reader maps to ``[0, 1]``."""

from __future__ import annotations

from typing import Literal

import numpy as np

from thoracic.errors import ConfigError, ConstantImageError

__all__ = ["VoiFunction", "minmax", "percentile_bounds", "percentile_window", "truncate_8bit", "window"]

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]


def _affine(a: np.ndarray, offset: np.float32, scale: np.float32) -> np.ndarray:
    """``(a - offset) * scale + 0.5`` in float32, in one new array (the same rounding as the expression)."""
    out = np.subtract(a, offset, dtype=np.float32)
    out *= scale
    out += np.float32(0.5)
    return out


def window(arr: np.ndarray, center: float, width: float, function: VoiFunction | str = "LINEAR") -> np.ndarray:
    """Apply a DICOM VOI window (PS3.3 C.11.2.1.2) and scale the output to ``[0, 1]``.

    ``LINEAR`` follows the standard's formula with its half-pixel offsets; ``LINEAR_EXACT`` and
    ``SIGMOID`` are the other two VOI LUT functions.

    >>> [round(float(v), 3) for v in window(np.array([0.0, 50.0, 100.0], dtype=np.float32), 50, 101)]
    [0.005, 0.505, 1.0]
    """
    func = str(function or "LINEAR").upper()
    c, w = float(center), float(width)
    a = np.asarray(arr)
    if not ((func == "LINEAR" and w > 1) or (func == "LINEAR_EXACT" and w > 0)) or a.dtype.kind not in "iuf":
        a = np.asarray(a, dtype=np.float32)  # else _affine casts each value to float32 as it goes: the same numbers
    if func == "LINEAR":
        if w < 1:
            raise ConfigError(f"LINEAR window width must be >= 1, got {w}")
        out = _affine(a, np.float32(c - 0.5), np.float32(1.0 / (w - 1))) if w > 1 else (a > c - 0.5)
    elif func == "LINEAR_EXACT":
        if w <= 0:
            raise ConfigError(f"LINEAR_EXACT window width must be > 0, got {w}")
        out = _affine(a, np.float32(c), np.float32(1.0 / w))
    elif func == "SIGMOID":
        if w <= 0:
            raise ConfigError(f"SIGMOID window width must be > 0, got {w}")
        out = 1.0 / (1.0 + np.exp(-4.0 * (a - np.float32(c)) / np.float32(w)))
    else:
        raise ConfigError.unknown("VOI LUT function", func, ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
    out = np.asarray(out, dtype=np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _range_to_unit(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if not hi > lo:
        raise ConstantImageError("the image has a single intensity value; there is nothing to normalize")
    out = (np.asarray(a, dtype=np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def minmax(arr: np.ndarray) -> np.ndarray:
    """Stretch the image's own minimum..maximum to ``0..1``."""
    return _range_to_unit(arr, float(np.min(arr)), float(np.max(arr)))


def percentile_window(arr: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip to the ``low``..``high`` percentiles and stretch to ``0..1`` (robust to stray pixels)."""
    return _range_to_unit(arr, *percentile_bounds(arr, low, high))


def percentile_bounds(arr: np.ndarray, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles (the image's min and max when they coincide)."""
    if not 0 <= low < high <= 100:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    a = np.asarray(arr)
    # percentiles of a regular subsample of about a million pixels: the same to a few 1e-3 on
    # radiographs, and several times cheaper on a 3000x3000 film
    step = max(1, int(np.sqrt(a.size / 1_000_000)))
    sample = a[::step, ::step] if a.ndim == 2 else a
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    if not hi > lo:
        lo, hi = float(np.min(a)), float(np.max(a))
    return lo, hi


def truncate_8bit(arr: np.ndarray) -> np.ndarray:
    """Keep 256 grey levels the way ``(x * 255).astype(np.uint8)`` does (truncating), still as floats.

    The common Kaggle recipe truncates; its PNGs are what many VinBigData models were trained on.

    >>> truncate_8bit(np.array([0.0, 0.999 / 255, 1.0], dtype=np.float32)).tolist()
    [0.0, 0.0, 1.0]
    """
    out = np.floor(np.clip(np.asarray(arr, dtype=np.float32), 0.0, 1.0) * np.float32(255.0))
    return out * np.float32(1.0 / 255.0)
