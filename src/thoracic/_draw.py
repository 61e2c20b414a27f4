"""Labelled boxes on RGB pictures, every label whole inside the picture and readable at the size shown.

One drawing rule for every picture thoracic writes (``predict --overlays``, the demo page, the
evaluation report, the lung overlays): a label is text on a filled box of the finding's colour,
placed above its box (or below, or inside when there is no room), moved back inside the picture when
the box touches an edge, and at least :func:`label_px` pixels tall.

>>> import numpy as np
>>> rgb = np.zeros((200, 300, 3), np.uint8)
>>> x0, y0, x1, y1 = draw_box(rgb, (250, 0, 300, 40), "Nodule/Mass 0.91", (255, 60, 60), px=16)
>>> 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 200, y1 - y0 >= 16
(True, True)
"""

from __future__ import annotations

import math
from functools import lru_cache
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

__all__ = ["MIN_SHOWN_PX", "draw_box", "draw_boxes", "draw_label", "label_px", "line_px", "place_label"]

#: Smallest label text height, in screen pixels, once the picture is shown at its display size.
MIN_SHOWN_PX = 14
#: Label text height as a fraction of the picture's longest side (so labels grow with the picture).
_REL = 1 / 45
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@lru_cache(maxsize=1)
def _font() -> tuple[int, int]:
    """The font's ascender and descender at scale 1 (measured on first use: OpenCV's first text
    measurement loads its fonts, ~25 ms that a process which draws nothing need not pay)."""
    (_, ascender), descender = cv2.getTextSize("Hg", _FONT, 1.0, 1)
    return ascender, descender

Rect = tuple[int, int, int, int]


def label_px(longest: int, shown: int | None = None) -> int:
    """Label text height in pixels for a picture whose longest side is ``longest`` pixels.

    ``shown`` is the longest side as displayed (a page that shrinks a 768-pixel picture to 480):
    the text is then at least :data:`MIN_SHOWN_PX` screen pixels tall.

    >>> label_px(512), label_px(1024), label_px(768, shown=480)
    (14, 23, 23)
    """
    px = max(MIN_SHOWN_PX, round(longest * _REL))
    if shown and shown < longest:
        px = max(px, math.ceil(MIN_SHOWN_PX * longest / shown))
    return int(px)


def line_px(longest: int, shown: int | None = None) -> int:
    """Box line thickness going with :func:`label_px`: about an eighth of the text height."""
    return max(1, round(label_px(longest, shown) / 8))


def _ink(color: Sequence[int]) -> tuple[int, int, int]:
    """Black or white text, whichever reads better on ``color`` (RGB)."""
    r, g, b = (int(c) for c in color[:3])
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 110 else (255, 255, 255)


def _metrics(text: str, px: int, width: int) -> tuple[float, int, int, int, int, int]:
    """``scale, thick, pad, th, w, h`` of a label: font scale, stroke, padding, text height above the
    baseline and the tag's size (text too wide for ``width`` is made smaller)."""
    pad = max(1, round(px / 6))
    thick = max(1, round(px / 16))
    h1, b1 = _font()
    scale = px / (h1 + b1)  # the text height (ascender + descender) is px
    tw = cv2.getTextSize(text, _FONT, scale, thick)[0][0]
    if tw + 2 * pad > width:  # a label wider than the picture: shrink it to fit
        scale *= (width - 2 * pad) / max(tw, 1)
        tw = cv2.getTextSize(text, _FONT, scale, thick)[0][0]
    th, base = round(h1 * scale), round(b1 * scale)  # the font's ascender and descender
    return scale, thick, pad, th, tw + 2 * pad, th + base + 2 * pad


def _candidates(box: Sequence[float], w: int, h: int, size: tuple[int, int], where: str) -> list[Rect]:
    """Where a ``w`` x ``h`` tag may go for ``box`` in a picture of ``size`` (width, height), best first:
    outside the box on the side asked (above or below), else just inside it, then the other side the
    same way, then further along the box's side; each moved inside the picture."""
    width, height = size
    bx0, by0, _, by1 = (round(float(v)) for v in box[:4])
    x = min(max(bx0, 0), max(width - w, 0))
    top = [by0 - h] if by0 - h >= 0 else []  # outside, then inside, the box's top edge
    top.append(by0)
    bottom = [by1] if by1 + h <= height else []
    bottom.append(by1 - h)
    ys = [*top, *bottom] if where == "above" else [*bottom, *top]
    ys += list(range(by0 + h, by1 - h, h))  # crowded: further along the box's side
    out: list[Rect] = []
    for y in ys:
        y = min(max(y, 0), max(height - h, 0))
        rect = (x, y, x + min(w, width), y + min(h, height))
        if rect not in out:
            out.append(rect)
    return out


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_label(
    box: Sequence[float],
    text: str,
    size: tuple[int, int],
    *,
    px: int,
    where: Literal["above", "below"] = "above",
    taken: Sequence[Rect] = (),
) -> Rect:
    """The rectangle ``(x0, y0, x1, y1)`` (``x1``, ``y1`` exclusive) of ``text``'s tag for ``box`` in a
    picture of ``size`` ``(width, height)``: always inside the picture, above the box (``where``) or
    below it, inside it when there is no room, and covering as little of the ``taken`` tags as it can.

    >>> place_label((10, 0, 60, 50), "Nodule 0.9", (100, 100), px=12)  # no room above: inside
    (10, 0, 63, 16)
    >>> place_label((80, 90, 100, 100), "Nodule 0.9", (100, 100), px=12)  # corner: moved in
    (47, 74, 100, 90)
    """
    _, _, _, _, w, h = _metrics(text, px, size[0])
    best: tuple[int, Rect] | None = None
    for rect in _candidates(box, w, h, size, where):
        covered = sum(_overlap(rect, t) for t in taken)
        if best is None or covered < best[0]:
            best = (covered, rect)
        if covered == 0:
            break
    assert best is not None
    return best[1]


def draw_label(
    rgb: np.ndarray,
    text: str,
    box: Sequence[float],
    color: Sequence[int],
    *,
    px: int,
    where: Literal["above", "below"] = "above",
    taken: Sequence[Rect] = (),
) -> Rect:
    """Draw ``text`` on a filled ``color`` tag next to ``box`` (``x0, y0, x1, y1`` in pixels of ``rgb``),
    where :func:`place_label` puts it; returns the tag's rectangle, always inside ``rgb``."""
    h_img, w_img = rgb.shape[:2]
    scale, thick, pad, th, _, _ = _metrics(text, px, w_img)
    x0, y0, x1, y1 = place_label(box, text, (w_img, h_img), px=px, where=where, taken=taken)
    cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in color[:3]), -1)
    cv2.putText(rgb, text, (x0 + pad, y0 + pad + th), _FONT, scale, _ink(color), thick, cv2.LINE_AA)
    return x0, y0, x1, y1


def draw_box(
    rgb: np.ndarray,
    box: Sequence[float],
    text: str,
    color: Sequence[int],
    *,
    px: int,
    thick: int | None = None,
    where: Literal["above", "below"] = "above",
) -> Rect:
    """Draw the rectangle ``box`` (pixels of ``rgb``) with its label (:func:`draw_label`); returns the
    label's rectangle."""
    return draw_boxes(rgb, [(box, text, color)], px=px, thick=thick, where=where)[0]


def draw_boxes(
    rgb: np.ndarray,
    items: Sequence[tuple[Sequence[float], str, Sequence[int]]],
    *,
    px: int,
    thick: int | None = None,
    where: Literal["above", "below"] = "above",
    taken: Sequence[Rect] = (),
) -> list[Rect]:
    """Draw labelled boxes ``(box, text, color)``, given most important first: the first item's label
    gets the best place, later ones avoid the tags already placed (and ``taken``), and the first items
    are drawn last, on top. Returns each label's rectangle, in the order of ``items``."""
    h_img, w_img = rgb.shape[:2]
    placed: list[Rect] = []
    for box, text, _ in items:
        placed.append(place_label(box, text, (w_img, h_img), px=px, where=where, taken=[*taken, *placed]))
    line = thick or max(1, round(px / 8))
    for box, _, color in reversed(items):
        x0, y0, x1, y1 = (round(float(v)) for v in box[:4])
        cv2.rectangle(rgb, (x0, y0), (x1, y1), tuple(int(c) for c in color[:3]), line)
    for (_, text, color), rect in zip(reversed(items), reversed(placed), strict=True):
        scale, stroke, pad, th, _, _ = _metrics(text, px, w_img)
        cv2.rectangle(rgb, rect[:2], (rect[2] - 1, rect[3] - 1), tuple(int(c) for c in color[:3]), -1)
        cv2.putText(rgb, text, (rect[0] + pad, rect[1] + pad + th), _FONT, scale, _ink(color), stroke, cv2.LINE_AA)
    return placed
