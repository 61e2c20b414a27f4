"""Labels on pictures (``thoracic._draw``, used by predict's overlays, the demo and the report):
whole inside the picture for boxes touching any edge, and tall enough to read."""

from __future__ import annotations

import numpy as np
import pytest

from thoracic._draw import MIN_SHOWN_PX, draw_box, draw_boxes, label_px, place_label

RED = (230, 40, 40)
W, H = 160, 120
LABEL = "Pleural effusion 0.93"

#: Boxes touching each edge (and each corner) of a W x H picture, one filling it whole.
EDGE_BOXES = {
    "left": (0, 40, 30, 80),
    "right": (130, 40, W, 80),
    "top": (60, 0, 100, 30),
    "bottom": (60, 90, 100, H),
    "top-right": (120, 0, W, 25),
    "bottom-right": (120, 95, W, H),
    "bottom-left": (0, 95, 40, H),
    "whole": (0, 0, W, H),
    "beyond": (-20, -15, W + 30, H + 40),
}


def _tag_pixels(rgb: np.ndarray, color) -> tuple[int, int, int, int]:
    """Bounding box (x1, y1 exclusive) of the pixels exactly of ``color`` (the label's fill)."""
    ys, xs = np.nonzero((rgb == np.array(color, np.uint8)).all(axis=2))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("where", ["above", "below"])
@pytest.mark.parametrize("edge", list(EDGE_BOXES))
def test_a_label_stays_whole_inside_the_picture_for_a_box_on_any_edge(edge, where):
    rgb = np.full((H, W, 3), 90, np.uint8)
    px = label_px(max(W, H))
    rect = draw_box(rgb, EDGE_BOXES[edge], LABEL, RED, px=px, thick=1, where=where)
    x0, y0, x1, y1 = rect
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H, (edge, rect)
    assert y1 - y0 >= px >= MIN_SHOWN_PX  # the tag holds text at least px tall
    # what was drawn: the filled tag is where the rectangle says, and it is wide enough for the text
    tag = _tag_pixels(rgb, RED)
    assert tag[0] >= 0 and tag[2] <= W and tag[1] >= 0 and tag[3] <= H
    inside = rgb[y0:y1, x0:x1].astype(int)
    fill = (inside == np.array(RED)).all(axis=2)
    assert fill.mean() > 0.5  # mostly fill ...
    ink = np.abs(inside - np.array(RED)).sum(axis=2) > 200  # ... with text in contrast on it
    assert ink.sum() > 20
    glyphs = np.nonzero(ink.any(axis=0))[0]
    assert glyphs.max() - glyphs.min() >= 0.7 * (x1 - x0)  # the whole text, not its first letters


def test_labels_grow_with_the_picture_and_with_how_much_the_page_shrinks_it():
    assert label_px(256) == MIN_SHOWN_PX
    assert label_px(1024) >= 1024 / 50  # about 2% of the longest side, never less
    assert label_px(2048) >= 2 * label_px(1024) - 1
    # a 768-pixel picture shown 480 pixels wide: at least MIN_SHOWN_PX screen pixels after shrinking
    assert label_px(768, shown=480) * 480 / 768 >= MIN_SHOWN_PX
    for longest in (200, 512, 768, 1024, 3000):
        for shown in (None, 240, 480, longest):
            px = label_px(longest, shown)
            assert px * min(1.0, (shown or longest) / longest) >= MIN_SHOWN_PX - 0.5


def test_a_label_wider_than_the_picture_is_made_smaller_to_fit():
    rgb = np.zeros((40, 60, 3), np.uint8)
    x0, y0, x1, y1 = draw_box(rgb, (0, 0, 60, 40), "Interstitial lung disease 0.55", RED, px=14)
    assert x0 == 0 and 50 <= x1 <= 60 and 0 <= y0 < y1 <= 40
    ink = np.abs(rgb[y0:y1, x0:x1].astype(int) - np.array(RED)).sum(axis=2) > 200
    assert np.nonzero(ink.any(axis=0))[0].max() < x1 - x0 - 1  # the last letter is drawn, inside the tag


def test_labels_of_crowded_boxes_do_not_cover_each_other():
    """Eight stacked boxes of one finding (as the demo had): every label gets its own place."""
    rgb = np.full((400, 400, 3), 90, np.uint8)
    boxes = [(40 + 6 * i, 60 + 4 * i, 220 + 5 * i, 380) for i in range(8)]
    items = [(b, f"Pleural effusion 0.{20 - i:02d}", RED) for i, b in enumerate(boxes)]
    rects = draw_boxes(rgb, items, px=label_px(400))
    for i, a in enumerate(rects):
        assert 0 <= a[0] < a[2] <= 400 and 0 <= a[1] < a[3] <= 400
        for b in rects[i + 1:]:
            overlap = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            assert overlap == 0, (a, b)
    # the first (best) label keeps the preferred place: just above its box
    assert rects[0][3] == boxes[0][1]


def test_placement_prefers_outside_the_box_then_inside():
    size = (200, 200)
    assert place_label((50, 100, 150, 180), "x", size, px=12)[3] == 100  # above
    assert place_label((50, 100, 150, 180), "x", size, px=12, where="below")[1] == 180  # below
    r = place_label((50, 0, 150, 80), "x", size, px=12)  # no room above: just inside the top
    assert r[1] == 0
    r = place_label((50, 150, 150, 200), "x", size, px=12, where="below")  # no room below: inside the bottom
    assert r[3] == 200
