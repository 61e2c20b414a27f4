"""Draw findings on a radiograph (for ``--overlays`` and the demo)."""

from __future__ import annotations

import cv2
import numpy as np

from thoracic.detect.types import Detections
from thoracic.io.radiograph import Radiograph
from thoracic.preprocess.geometry import resize_longest
from thoracic.preprocess.intensity import to_uint8

__all__ = ["draw_findings"]

_COLORS = [(255, 140, 0), (0, 200, 255), (255, 60, 60), (80, 220, 80), (200, 100, 255), (255, 220, 0), (0, 255, 180)]


def draw_findings(radiograph: Radiograph, detections: Detections, *, longest: int = 1024,
                  min_score: float = 0.0) -> np.ndarray:
    """An RGB ``uint8`` image of ``radiograph`` (longest side at most ``longest``) with labelled boxes.

    Boxes are in original pixels (``detections``); they are scaled to the drawn size here.
    """
    pixels = radiograph.pixels
    w0, h0 = radiograph.original_size
    if max(pixels.shape[:2]) > longest:
        pixels, _ = resize_longest(pixels, longest)
    rgb = cv2.cvtColor(to_uint8(pixels), cv2.COLOR_GRAY2RGB)
    sx, sy = rgb.shape[1] / w0, rgb.shape[0] / h0
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for label, score, box, cid in zip(detections.labels, detections.scores.tolist(), detections.boxes.tolist(),
                                      detections.class_ids.tolist(), strict=True):
        if score < min_score:
            continue
        color = _COLORS[int(cid) % len(_COLORS)]
        x0, y0, x1, y1 = int(round(box[0] * sx)), int(round(box[1] * sy)), int(round(box[2] * sx)), int(round(box[3] * sy))
        cv2.rectangle(rgb, (x0, y0), (x1, y1), color, thick)
        cv2.putText(rgb, f"{label} {score:.2f}", (x0 + 2, max(14, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick + 0.1, color, thick, cv2.LINE_AA)
    return rgb
