"""Draw findings on a radiograph (for ``--overlays`` and the demo)."""

from __future__ import annotations

import cv2
import numpy as np

from thoracic._draw import draw_boxes, label_px, line_px
from thoracic.detect.types import Detections
from thoracic.io.radiograph import Radiograph
from thoracic.preprocess.geometry import resize_longest
from thoracic.preprocess.intensity import to_uint8

__all__ = ["draw_findings"]

_COLORS = [(255, 140, 0), (0, 200, 255), (255, 60, 60), (80, 220, 80), (200, 100, 255), (255, 220, 0), (0, 255, 180)]


def draw_findings(radiograph: Radiograph, detections: Detections, *, longest: int = 1024,
                  min_score: float = 0.0, shown: int | None = None) -> np.ndarray:
    """An RGB ``uint8`` image of ``radiograph`` (longest side at most ``longest``) with labelled boxes.

    Boxes are in original pixels (``detections``); they are scaled to the drawn size here. Every
    label lies whole inside the image, at least :func:`thoracic._draw.label_px` pixels tall (``shown``:
    the longest side the picture will be displayed at, when smaller than the picture). The best
    scores get the best label places and are drawn on top.
    """
    pixels = radiograph.pixels
    w0, h0 = radiograph.original_size
    if max(pixels.shape[:2]) > longest:
        pixels, _ = resize_longest(pixels, longest)
    rgb = cv2.cvtColor(to_uint8(pixels), cv2.COLOR_GRAY2RGB)
    sx, sy = rgb.shape[1] / w0, rgb.shape[0] / h0
    side = max(rgb.shape[:2])
    px, thick = label_px(side, shown), line_px(side, shown)
    rows = [(s, lab, box, cid) for lab, s, box, cid in zip(detections.labels, detections.scores.tolist(),
            detections.boxes.tolist(), detections.class_ids.tolist(), strict=True) if s >= min_score]
    items = [((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy), f"{label} {score:.2f}", _COLORS[int(cid) % len(_COLORS)])
             for score, label, box, cid in sorted(rows, key=lambda r: -r[0])]
    draw_boxes(rgb, items, px=px, thick=thick)
    return rgb
