"""The one radiograph type every reader returns, and the options of reading."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from thoracic.errors import ConfigError, ImageTooLargeError
from thoracic.transform import Affine

__all__ = ["DEFAULT_MAX_PIXELS", "Normalize", "Radiograph", "ReadConfig", "check_max_pixels"]

Normalize = Literal["window", "minmax", "percentile"]
_NORMALIZE = ("window", "minmax", "percentile")

#: Decompression-bomb guard: the largest chest films are about 4,300 x 4,300 (18.5 megapixels).
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ReadConfig:
    """How to turn a file into display pixels.

    Attributes
    ----------
    normalize:
        ``"window"``: the file's VOI LUT or window (DICOM), else its full range for data of at most
        8 bits, else a percentile window. ``"minmax"``: the common Kaggle recipe: the file's VOI,
        then the image's own minimum..maximum stretched to 0..1 and truncated to 256 grey levels
        as its ``(x * 255).astype(np.uint8)`` does, so converted PNGs match the community's. ``"percentile"``:
        ignore the file's window and clip to the ``percentiles``.
    percentiles:
        ``(low, high)`` for the percentile window.
    target_size:
        The longest side the caller will resize to. Lets the reader decode JPEG 2000 at a reduced
        resolution level that is still at least this large; ``None`` always decodes in full.
    allow_non_chest:
        Read non-radiograph modalities, lateral views and other body parts instead of refusing
        them; the radiograph's ``flags`` then say what was overridden.
    max_pixels:
        Refuse images whose declared rows x columns exceed this (before decoding anything).
    check_content:
        Check the pixels too (:mod:`thoracic.io.content`): refuse photos, documents, screenshots,
        CT slices, lateral views and colour images (or, with ``allow_non_chest``, flag them).
        Off by default for the library; ``thoracic predict``, ``segment``, ``serve`` and
        ``dicom-node`` turn it on (``convert`` with ``--check``).
    """

    normalize: Normalize = "window"
    percentiles: tuple[float, float] = (0.5, 99.5)
    target_size: int | None = None
    allow_non_chest: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    check_content: bool = False

    def __post_init__(self) -> None:
        if self.normalize not in _NORMALIZE:
            raise ConfigError.unknown("normalization", str(self.normalize), _NORMALIZE)
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if self.target_size is not None and self.target_size < 1:
            raise ConfigError(f"target_size must be a positive number of pixels, got {self.target_size}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {self.max_pixels}")


def check_max_pixels(width: int, height: int, options: ReadConfig, path: str, what: str) -> None:
    """Refuse a declared ``width`` x ``height`` beyond ``options.max_pixels``, before decoding anything.

    Raises
    ------
    thoracic.errors.ImageTooLargeError
        Naming ``what`` declared the size (``"the DICOM"``, ``"the image"``).
    """
    if width * height > options.max_pixels:
        raise ImageTooLargeError(
            f"{what} declares {width}x{height} pixels, more than the limit of {options.max_pixels:,}; "
            "raise max_pixels (--max-pixels) if this film is genuine",
            path=path,
        )


@dataclass(frozen=True, eq=False)
class Radiograph:
    """A chest radiograph ready for display and analysis.

    ``pixels`` is a 2-D ``float32`` array in ``[0, 1]`` with 1 = white (dense), in the stored
    pixel matrix's orientation (never flipped or rotated). It has the original size unless the
    file was decoded at a reduced resolution; ``to_original`` maps its pixel coordinates to those
    of the original image (identity otherwise), where all boxes of thoracic live.

    Identifying data (patient name, ids, dates, UIDs) is kept in ``phi`` and the DICOM header in
    ``dataset``; neither appears in ``repr`` nor in any message or log.

    ``export_chain`` is ``(name, spec)`` of the preprocessing chain ``thoracic dataset export``
    wrote this PNG through (its ``thoracic-chain`` text chunk), ``None`` for any other image: a
    model whose chain would apply steps again refuses such an image
    (:class:`~thoracic.errors.PreprocessedImageError`).

    ``colour`` is the fraction of a colour raster's pixels whose channels differ (0 for grey
    images), which the content check (:mod:`thoracic.io.content`) refuses above its limit.
    """

    pixels: np.ndarray = field(repr=False)
    image_id: str
    source: str
    format: str
    original_width: int
    original_height: int
    to_original: Affine = field(default_factory=Affine.identity)
    photometric: str = "MONOCHROME2"
    transfer_syntax: str = ""
    bits_stored: int = 8
    window_center: float | None = None
    window_width: float | None = None
    voi: str = ""
    normalize: str = "window"
    pixel_spacing: tuple[float, float] | None = None
    modality: str = ""
    view_position: str = ""
    body_part: str = ""
    flags: tuple[str, ...] = ()
    phi: Mapping[str, str] = field(default_factory=dict, repr=False)
    dataset: Any = field(default=None, repr=False)
    export_chain: tuple[str, str] | None = None
    colour: float = 0.0

    @property
    def width(self) -> int:
        """Width of ``pixels`` (the original width unless decoded at a reduced resolution)."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def original_size(self) -> tuple[int, int]:
        """``(width, height)`` of the stored pixel matrix."""
        return self.original_width, self.original_height

    def summary(self) -> dict[str, Any]:
        """Technical, non-identifying facts, safe to log and to write next to outputs."""
        return {
            "image_id": self.image_id,
            "format": self.format,
            "width": self.original_width,
            "height": self.original_height,
            "decoded_width": self.width,
            "decoded_height": self.height,
            "photometric": self.photometric,
            "transfer_syntax": self.transfer_syntax,
            "bits_stored": self.bits_stored,
            "window_center": self.window_center,
            "window_width": self.window_width,
            "voi": self.voi,
            "normalize": self.normalize,
            "pixel_spacing": self.pixel_spacing,
            "modality": self.modality,
            "view_position": self.view_position,
            "body_part": self.body_part,
            "flags": list(self.flags),
            "export_chain": None if self.export_chain is None else list(self.export_chain),
        }
