"""Pictures of lung masks: the radiograph with the mask outline and the lung square."""

from __future__ import annotations

import cv2
import numpy as np

from thoracic._draw import draw_label, label_px, line_px
from thoracic.anatomy.segmenter import LungMask, default_segmenter
from thoracic.io.radiograph import Radiograph
from thoracic.preprocess.intensity import to_uint8

__all__ = ["demo_panel", "overlay"]

_MASK = (0, 200, 255)  # RGB
_ROI = (255, 200, 0)
_FALLBACK = (255, 64, 64)


def overlay(radiograph: Radiograph | np.ndarray, lungs: LungMask, *, max_side: int | None = None,
            shown: int | None = None) -> np.ndarray:
    """An RGB ``uint8`` picture: the image, a tinted mask with its outline, the lung square.

    The square is drawn in red with the fallback reason when the mask was not used.
    ``max_side`` shrinks the picture (the drawing is made at that size); ``shown`` is the longest
    side it will be displayed at, so that the label stays readable (:func:`thoracic._draw.label_px`).
    """
    pixels = radiograph.pixels if isinstance(radiograph, Radiograph) else np.asarray(radiograph, np.float32)
    w, h = lungs.image_size
    gray = to_uint8(pixels)
    if gray.shape != (h, w):
        gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_LINEAR)
    scale = 1.0
    mask = lungs.mask
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    lung = mask > 0
    tint = np.array(_MASK, np.float32)
    rgb[lung] = (0.75 * rgb[lung] + 0.25 * tint).astype(np.uint8)
    thick = line_px(max(rgb.shape[:2]), shown)
    contours, _ = cv2.findContours(lung.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, _MASK, thick)
    x0, y0, x1, y1 = (round(v * scale) for v in lungs.roi.box)
    color = _FALLBACK if lungs.fallback else _ROI
    cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), color, thick)
    label = f"lungs {lungs.lung_fraction:.0%}" + (f" - fallback: {lungs.roi.fallback_reason}" if lungs.fallback else "")
    h_rgb, w_rgb = rgb.shape[:2]
    draw_label(rgb, label, (0, 0, w_rgb, h_rgb), color, px=label_px(max(h_rgb, w_rgb), shown))
    return rgb


def demo_panel(radiograph: Radiograph, *, max_side: int = 768, shown: int | None = None) -> np.ndarray:
    """Segment with the shipped model and draw the mask outline and the lung square (RGB ``uint8``)."""
    lungs = default_segmenter().segment(radiograph)
    return overlay(radiograph, lungs, max_side=max_side, shown=shown)
