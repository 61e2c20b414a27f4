"""The lung region of interest: the smallest square that encloses the lung mask, as in the paper.

:func:`lung_roi` finds the square (with a margin) in original-image pixels and decides whether the
mask is plausible; :func:`lung_roi_crop` cuts it out and resizes it, returning, like every
geometric step of thoracic, the image and the :class:`~thoracic.transform.Affine` from original
coordinates to the crop's (``.inverse()`` maps boxes found on the crop back).

An empty or implausible mask falls back to the full image: the smallest square centred on the
image that encloses it (padded with 0), so the crop keeps the aspect ratio either way.

>>> import numpy as np
>>> mask = np.zeros((100, 200), np.uint8)
>>> mask[20:80, 40:90] = mask[20:80, 110:160] = 255
>>> roi = lung_roi(mask, margin=0.0)
>>> roi.box, roi.fallback
((40, -10, 160, 110), False)
>>> crop, t = lung_roi_crop(np.ones((100, 200), np.float32), roi, size=60)
>>> crop.shape, t.inverse().apply_boxes([[0, 0, 60, 60]]).tolist()
((60, 60), [[40.0, -10.0, 160.0, 110.0]])
>>> lung_roi(np.zeros((100, 200), np.uint8)).fallback_reason
'empty mask'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from thoracic.errors import ConfigError
from thoracic.io.radiograph import Radiograph
from thoracic.preprocess.geometry import Interpolation, crop, resize
from thoracic.transform import Affine

__all__ = ["LungRoi", "RoiConfig", "lung_roi", "lung_roi_crop"]


@dataclass(frozen=True)
class RoiConfig:
    """How the lung square is drawn and when a mask is not believed.

    Attributes
    ----------
    margin:
        Added on every side, as a fraction of the square's side before the margin.
    min_fraction, max_fraction:
        A mask covering less or more of the image than this is implausible (fall back).
    min_box_fraction:
        A lung square whose side is less than this fraction of the image's shorter side is
        implausible (a speck, not lungs).
    """

    margin: float = 0.05
    min_fraction: float = 0.05
    max_fraction: float = 0.70
    min_box_fraction: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise ConfigError(f"margin must lie in 0..1 (a fraction of the lung square's side), got {self.margin}")
        if not 0.0 <= self.min_fraction < self.max_fraction <= 1.0:
            raise ConfigError(
                f"need 0 <= min_fraction < max_fraction <= 1, got {self.min_fraction}, {self.max_fraction}"
            )
        if not 0.0 <= self.min_box_fraction <= 1.0:
            raise ConfigError(f"min_box_fraction must lie in 0..1, got {self.min_box_fraction}")


@dataclass(frozen=True)
class LungRoi:
    """The lung square in pixels of the original image.

    ``box`` is integer ``x_min, y_min, x_max, y_max`` (it may extend beyond the image: the crop
    pads with 0). ``fallback_reason`` is empty when the mask was used, else why the full image
    was used instead.
    """

    box: tuple[int, int, int, int]
    image_size: tuple[int, int]
    lung_fraction: float
    fallback_reason: str = ""

    @property
    def fallback(self) -> bool:
        return bool(self.fallback_reason)

    @property
    def side(self) -> int:
        return self.box[2] - self.box[0]


def _full_square(width: int, height: int) -> tuple[int, int, int, int]:
    side = max(width, height)
    x0 = (width - side) // 2
    y0 = (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def lung_roi(mask: np.ndarray, options: RoiConfig | None = None, *, margin: float | None = None) -> LungRoi:
    """The smallest square enclosing a lung mask (nonzero = lung, original size), with a margin."""
    opts = options or RoiConfig()
    if margin is not None:
        opts = RoiConfig(margin, opts.min_fraction, opts.max_fraction, opts.min_box_fraction)
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise ConfigError(f"a lung mask is a non-empty 2-D array, got shape {m.shape}")
    h, w = m.shape
    lung = m > 0
    fraction = float(lung.mean())
    reason = ""
    if not lung.any():
        reason = "empty mask"
    elif fraction < opts.min_fraction:
        reason = f"lung fraction {fraction:.3f} < {opts.min_fraction}"
    elif fraction > opts.max_fraction:
        reason = f"lung fraction {fraction:.3f} > {opts.max_fraction}"
    if not reason:
        rows = np.flatnonzero(lung.any(axis=1))
        cols = np.flatnonzero(lung.any(axis=0))
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
        side0 = max(x1 - x0, y1 - y0)
        if side0 < opts.min_box_fraction * min(w, h):
            reason = f"lung square {side0} px < {opts.min_box_fraction} of the image"
        else:
            side = max(1, math.ceil(side0 * (1 + 2 * opts.margin)))
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            bx, by = math.floor(cx - side / 2), math.floor(cy - side / 2)
            return LungRoi((bx, by, bx + side, by + side), (w, h), fraction)
    return LungRoi(_full_square(w, h), (w, h), fraction, reason)


def lung_roi_crop(
    image: np.ndarray | Radiograph,
    roi: LungRoi | np.ndarray,
    size: int = 512,
    *,
    margin: float = 0.05,
    interpolation: Interpolation = "area",
) -> tuple[np.ndarray, Affine]:
    """Cut the lung square out of ``image`` and resize it to ``size x size``.

    Parameters
    ----------
    image:
        A radiograph (its ``pixels``, which may be decoded at a reduced resolution) or a 2-D array
        at the original size.
    roi:
        A :class:`LungRoi` (e.g. ``LungMask.roi``) or a mask at the original size (then
        :func:`lung_roi` with ``margin`` runs first).
    size:
        Side of the output square.

    Returns
    -------
    (pixels, transform):
        ``transform`` maps original-image coordinates to the crop's; ``transform.inverse()``
        maps boxes found on the crop back to the original image.
    """
    if int(size) < 1:
        raise ConfigError(f"ROI size must be at least 1 pixel, got {size}")
    if isinstance(roi, np.ndarray):
        roi = lung_roi(roi, margin=margin)
    if isinstance(image, Radiograph):
        pixels = image.pixels
        to_pixels = image.to_original.inverse()  # original -> decoded pixels
        if image.original_size != roi.image_size:
            raise ConfigError(f"the ROI is for a {roi.image_size} image, the radiograph is {image.original_size}")
    else:
        pixels = np.asarray(image)
        to_pixels = Affine.identity()
        if (pixels.shape[1], pixels.shape[0]) != roi.image_size:
            raise ConfigError(
                f"the ROI is for a {roi.image_size[0]}x{roi.image_size[1]} image, got {pixels.shape[1]}x{pixels.shape[0]}"
            )
    x0, y0, x1, y1 = to_pixels.apply_boxes([roi.box])[0]
    box = (math.floor(x0), math.floor(y0), max(math.ceil(x1), math.floor(x0) + 1), max(math.ceil(y1), math.floor(y0) + 1))
    cut, t_crop = crop(pixels, box)
    out, t_resize = resize(cut, int(size), int(size), interpolation=interpolation)
    return out, to_pixels.then(t_crop).then(t_resize)
