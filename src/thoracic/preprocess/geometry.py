"""Geometric steps and the transforms that undo them.

Coordinates everywhere in thoracic are continuous pixel coordinates of the stored pixel matrix:
x to the right, y down, pixel corners on integers (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``),
as VinBigData boxes and DICOM SCOORD use them. Boxes are ``xyxy`` floats.

Every geometric step returns the resulting image and an :class:`Affine` that maps coordinates of
its *input* to coordinates of its *output*; ``transform.inverse()`` maps results back. All the
steps thoracic needs (resize, letterbox, crop, flip) are axis-aligned scalings and translations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from thoracic.errors import ConfigError
from thoracic.io.content import take_shrunk
from thoracic.transform import Affine, longest_side_size

__all__ = [
    "Affine",
    "Interpolation",
    "crop",
    "hflip",
    "letterbox",
    "resize",
    "resize_longest",
]

Interpolation = Literal["area", "linear", "cubic", "lanczos", "nearest"]
_CV2_INTERP = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}


def _check_size(width: int, height: int) -> None:
    if int(width) < 1 or int(height) < 1:
        raise ConfigError(f"output size must be at least 1x1 pixel, got {width}x{height}")


def _resize_array(
    img: np.ndarray, width: int, height: int, interpolation: Interpolation,
    box: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    if img.shape[1] == width and img.shape[0] == height and box is None:
        return img
    if interpolation == "lanczos":
        # Pillow's antialiased Lanczos: the filter of the common Kaggle recipe (PIL thumbnail),
        # applied to float32 so nothing is quantized before the final 8-bit conversion.
        if img.dtype != np.float32:
            raise ConfigError("lanczos resize works on float32 images")
        out = Image.fromarray(np.ascontiguousarray(img), mode="F").resize(
            (width, height), Image.Resampling.LANCZOS, box=box
        )
        return np.asarray(out, dtype=np.float32)
    try:
        flag = _CV2_INTERP[interpolation]
    except KeyError:
        raise ConfigError.unknown("interpolation", str(interpolation), [*_CV2_INTERP, "lanczos"]) from None
    if interpolation == "area" and (width > img.shape[1] or height > img.shape[0]):
        flag = cv2.INTER_LINEAR  # area is a downsampling filter
    elif interpolation == "area" and box is None:
        shrunk = take_shrunk(img, width, height)  # the content check made this very image already
        if shrunk is not None:
            return shrunk
    return cv2.resize(img, (width, height), interpolation=flag)


def resize(
    img: np.ndarray,
    width: int,
    height: int,
    *,
    interpolation: Interpolation = "area",
    box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, Affine]:
    """Resize to exactly ``width x height`` (aspect ratio not kept).

    ``box`` (``lanczos`` only) is the region of ``img``, in its coordinates, that becomes the
    output, e.g. the exact extent of the full-resolution image within a JPEG 2000 image decoded
    at a reduced level; other interpolations resize the whole image.
    """
    _check_size(width, height)
    h, w = img.shape[:2]
    if box is None or interpolation != "lanczos":
        out = _resize_array(img, int(width), int(height), interpolation)
        return out, Affine(sx=width / w, sy=height / h)
    x0, y0, x1, y1 = (float(v) for v in box)
    out = _resize_array(img, int(width), int(height), interpolation, (x0, y0, x1, y1))
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    return out, Affine(sx=sx, sy=sy, tx=-x0 * sx, ty=-y0 * sy)


def resize_longest(
    img: np.ndarray,
    longest: int,
    *,
    interpolation: Interpolation = "area",
    reference_size: tuple[int, int] | None = None,
    box: tuple[float, float, float, float] | None = None,
) -> tuple[np.ndarray, Affine]:
    """Resize so that the longest side is ``longest`` pixels, keeping the aspect ratio (no padding).

    ``reference_size`` (``width, height``) computes the output size from another size than the
    image's own, e.g. the full-resolution size of an image that was decoded at a reduced
    resolution, so the output size never depends on how the input was decoded.
    """
    if int(longest) < 1:
        raise ConfigError(f"longest side must be at least 1 pixel, got {longest}")
    h, w = img.shape[:2]
    rw, rh = reference_size if reference_size is not None else (w, h)
    width, height = longest_side_size(rw, rh, int(longest))
    return resize(img, width, height, interpolation=interpolation, box=box)


def letterbox(
    img: np.ndarray,
    size: int | tuple[int, int],
    *,
    pad_value: float = 114 / 255,
    interpolation: Interpolation = "linear",
    scaleup: bool = True,
) -> tuple[np.ndarray, Affine]:
    """Scale to fit ``size`` (``int`` or ``(width, height)``) keeping the aspect ratio, then pad.

    Padding is centered as ultralytics' ``LetterBox`` does it (grey 114 by default), so a model
    exported from ultralytics sees the same input it was trained on.
    """
    tw, th = (size, size) if isinstance(size, int) else size
    _check_size(tw, th)
    h, w = img.shape[:2]
    r = min(th / h, tw / w)
    if not scaleup:
        r = min(r, 1.0)
    nw, nh = max(1, round(w * r)), max(1, round(h * r))
    resized = _resize_array(img, nw, nh, interpolation)
    dw, dh = (tw - nw) / 2, (th - nh) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=pad_value)
    return out, Affine(sx=nw / w, sy=nh / h, tx=float(left), ty=float(top))


def crop(img: np.ndarray, box: Sequence[float] | np.ndarray) -> tuple[np.ndarray, Affine]:
    """Crop to the integer box ``x_min, y_min, x_max, y_max``; parts outside the image are padded with 0."""
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"empty crop box {box}")
    h, w = img.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0) + img.shape[2:], dtype=img.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out, Affine(tx=float(-x0), ty=float(-y0))


def hflip(img: np.ndarray) -> tuple[np.ndarray, Affine]:
    """Mirror left-right (for test-time augmentation)."""
    w = img.shape[1]
    return np.ascontiguousarray(img[:, ::-1]), Affine(sx=-1.0, tx=float(w))
