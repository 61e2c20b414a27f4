"""``draw_findings`` (predict's ``--overlays`` and the demo): labels whole inside the picture."""

from __future__ import annotations

import numpy as np

from thoracic._draw import MIN_SHOWN_PX, label_px, place_label
from thoracic.detect import Detections, draw_findings
from thoracic.detect.overlay import _COLORS
from thoracic.io.radiograph import Radiograph
from thoracic.labels import LABELS


def _radiograph(w: int, h: int) -> Radiograph:
    return Radiograph(np.full((h, w), 0.45, np.float32), "x", "x.png", "png", w, h)


def test_labels_of_boxes_touching_each_edge_stay_inside_scaled_and_readable():
    w, h = 2000, 1600  # drawn at 1024 on the longest side
    boxes = np.array([[1900, 0, 2000, 80], [0, 1500, 120, 1600], [1800, 1450, 2000, 1600], [0, 700, 60, 800]], float)
    ids = np.array([3, 10, 0, 13])
    det = Detections(boxes, np.array([0.9, 0.8, 0.7, 0.6]), ids, image_size=(w, h))
    rgb = draw_findings(_radiograph(w, h), det, longest=1024)
    hh, ww = rgb.shape[:2]
    assert (ww, hh) == (1024, 819)
    px = label_px(1024)
    assert px >= 1024 / 50 and px >= MIN_SHOWN_PX
    s = 1024 / w
    taken = []
    for box, cid, score in zip(boxes, ids, (0.9, 0.8, 0.7, 0.6), strict=True):
        rect = place_label(box * s, f"{LABELS[cid]} {score:.2f}", (ww, hh), px=px, taken=taken)
        taken.append(rect)
        x0, y0, x1, y1 = rect
        assert 0 <= x0 < x1 <= ww and 0 <= y0 < y1 <= hh and y1 - y0 >= px
        fill = (rgb[y0:y1, x0:x1] == np.array(_COLORS[cid % len(_COLORS)], np.uint8)).all(axis=2)
        assert fill.mean() > 0.5, (LABELS[cid], rect)  # the tag is drawn where it was placed
    assert taken[0][2] == ww and taken[0][1] == 0  # a box in the top-right corner: its tag pushed in, inside the box
    assert taken[1][3] == round(1500 * s)  # a box on the bottom edge: its tag just above it
    # below min_score nothing is drawn: the picture stays grey
    blank = draw_findings(_radiograph(w, h), det, longest=1024, min_score=0.95)
    assert (blank[..., 0] == blank[..., 1]).all() and (blank[..., 1] == blank[..., 2]).all()
