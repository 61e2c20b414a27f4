"""PNG images for the viewer: the display image, the heatmap and the lung mask, all the same size.

Every image is at most :data:`DISPLAY_SIZE` pixels on its longest side (aspect kept); boxes stay in
original-image pixels and the viewer scales them by ``display width / original width``.

>>> import numpy as np
>>> png = gray_png(np.linspace(0, 1, 2000 * 1000, dtype=np.float32).reshape(1000, 2000))
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", png_size(png)
(True, (1024, 512))
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

__all__ = ["DISPLAY_SIZE", "display_size", "gray_png", "heatmap_png", "lungs_png", "png_size"]

#: Longest side of the images the viewer shows.
DISPLAY_SIZE = 1024


def display_size(width: int, height: int, limit: int = DISPLAY_SIZE) -> tuple[int, int]:
    """``(width, height)`` scaled so the longest side is at most ``limit``."""
    scale = min(1.0, limit / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _fit(img: np.ndarray, limit: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    h, w = img.shape[:2]
    size = display_size(w, h, limit)
    return img if size == (w, h) else cv2.resize(img, size, interpolation=interpolation)


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def gray_png(pixels: np.ndarray, limit: int = DISPLAY_SIZE) -> bytes:
    """A display PNG (8-bit gray) of ``[0, 1]`` pixels."""
    img = np.clip(np.asarray(pixels, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _png(_fit(img, limit))


def heatmap_png(heat: np.ndarray, size: tuple[int, int]) -> bytes:
    """A transparent colour heatmap (RGBA, alpha grows with the heat) of ``size`` ``(width, height)``."""
    h: np.ndarray = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    h = cv2.resize(h, size, interpolation=cv2.INTER_AREA if h.shape[1] > size[0] else cv2.INTER_LINEAR)
    u8 = (h * 255.0 + 0.5).astype(np.uint8)
    bgr = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
    alpha = np.clip(h * 1.6, 0.0, 1.0) * 255.0
    return _png(np.dstack([bgr, (alpha + 0.5).astype(np.uint8)]))


def lungs_png(mask: np.ndarray, size: tuple[int, int]) -> bytes:
    """The lung mask as a translucent green overlay (RGBA) of ``size`` ``(width, height)``."""
    m = cv2.resize((np.asarray(mask) > 0).astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST)
    out = np.zeros((size[1], size[0], 4), np.uint8)
    out[..., 1] = m  # green (BGR order)
    out[..., 3] = (m > 0) * 60
    edges = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (80, 255, 80, 255)
    return _png(out)


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's header."""
    return struct.unpack(">II", png[16:24])
