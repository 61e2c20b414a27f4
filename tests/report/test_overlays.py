"""The report's sample overlays: truth and predicted labels whole inside the picture, readable at
the size the report shows them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from thoracic._draw import MIN_SHOWN_PX, label_px, place_label
from thoracic.report.overlays import PRED_COLOR, SHOWN_SIDE, TRUTH_COLOR, draw_overlay


def _fill_share(img: np.ndarray, rect, color) -> float:
    x0, y0, x1, y1 = rect
    return float((img[y0:y1, x0:x1] == np.array(color, np.uint8)).all(axis=2).mean())


def test_labels_of_boxes_on_the_edges_are_drawn_whole_inside_and_readable():
    pixels = np.full((1000, 800), 0.4, np.float32)  # drawn at 768 on its longest side
    truth = [("Aortic enlargement", np.array([700.0, 0, 800, 120]))]  # top-right corner
    preds = [("Pleural effusion", 0.87, np.array([0.0, 900, 150, 1000]))]  # bottom-left corner
    img = np.asarray(Image.open(io.BytesIO(draw_overlay(pixels, truth, preds, scale=1.0))).convert("RGB"))
    h, w = img.shape[:2]
    assert max(h, w) == 768
    f = 768 / 1000
    px = label_px(768, SHOWN_SIDE)
    assert px * SHOWN_SIDE / 768 >= MIN_SHOWN_PX  # readable once the report shrinks it
    t_rect = place_label([v * f for v in truth[0][1]], "Aortic enlargement", (w, h), px=px)
    p_rect = place_label([v * f for v in preds[0][2]], "Pleural effusion 0.87", (w, h), px=px, where="below",
                         taken=[t_rect])
    for rect, color in ((t_rect, TRUTH_COLOR), (p_rect, PRED_COLOR)):
        x0, y0, x1, y1 = rect
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert y1 - y0 >= px
        assert _fill_share(img, rect, color) > 0.5  # the tag is drawn there, text on it
    assert t_rect[2] == w and p_rect[3] == h  # pushed in from the right and bottom edges
