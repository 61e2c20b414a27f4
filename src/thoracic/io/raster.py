"""PNG, JPEG and TIFF radiographs (8 or 16 bit, grayscale or color)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from thoracic._warnings import quiet
from thoracic.errors import (
    ConstantImageError,
    CorruptFileError,
    ImageTooLargeError,
    InvalidRadiographError,
    MultiFrameError,
    UnsupportedFormatError,
)
from thoracic.io.content import colour_fraction
from thoracic.io.radiograph import Radiograph, ReadConfig, check_max_pixels
from thoracic.io.voi import minmax, percentile_bounds, truncate_8bit, window

__all__ = ["CHAIN_TEXT_KEY", "chain_text", "looks_like_raster", "read_raster"]

#: The PNG text chunk (``tEXt``) in which ``thoracic dataset export`` records the chain it wrote
#: the image through (JSON: the chain's ``name`` and ``spec``, as :meth:`Chain.to_dict
#: <thoracic.preprocess.Chain.to_dict>` writes them).
CHAIN_TEXT_KEY = "thoracic-chain"
_SAFE = re.compile(r"[A-Za-z0-9_.,=()|+\- ]{0,200}")


def chain_text(name: str, spec: str) -> str:
    """The value of :data:`CHAIN_TEXT_KEY` for a chain (ASCII JSON, as a PNG ``tEXt`` chunk needs)."""
    return json.dumps({"name": name, "spec": spec}, sort_keys=True)


def _export_chain(text: object) -> tuple[str, str] | None:
    """``(name, spec)`` from a :data:`CHAIN_TEXT_KEY` value; only the characters of chain names and
    specs are kept (a message may quote it, and nothing else read from a file reaches one)."""
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = {"name": "unknown", "spec": text}
    if not isinstance(data, dict):
        data = {"name": "unknown", "spec": str(data)}

    def safe(value: object) -> str:
        v = str(value)
        return v if _SAFE.fullmatch(v) else "(unreadable)"

    return safe(data.get("name", "unknown")), safe(data.get("spec", "(unreadable)"))

_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "png",
    b"\xff\xd8\xff": "jpeg",
    b"II*\x00": "tiff",
    b"MM\x00*": "tiff",
}
_PIL_FORMATS = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "MPO": "jpeg"}


def looks_like_raster(head: bytes) -> str | None:
    """The format name if ``head`` starts with a PNG, JPEG or TIFF signature."""
    for sig, name in _SIGNATURES.items():
        if head.startswith(sig):
            return name
    return None


def _gray(im: Image.Image) -> tuple[np.ndarray, int, str, float]:
    """Pixels as a 2-D array, their bit depth, the source mode and the colour fraction."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16, copy=False), 16, mode, 0.0
    if mode == "I":
        arr = np.asarray(im)
        bits = 16 if arr.min() >= 0 and arr.max() <= 65535 else 32
        return arr, bits, mode, 0.0
    if mode == "F":
        return np.asarray(im, dtype=np.float32), 32, mode, 0.0
    if mode in ("L", "1"):
        return np.asarray(im.convert("L")), 8, mode, 0.0
    if mode in ("LA",):
        return np.asarray(im.getchannel("L")), 8, mode, 0.0
    # RGB, RGBA, P, CMYK, YCbCr ...: ITU-R 601 luma, as OpenCV and Pillow compute it
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    luma = rgb[..., 0] * np.float32(0.299) + rgb[..., 1] * np.float32(0.587) + rgb[..., 2] * np.float32(0.114)
    return luma, 8, mode, colour_fraction(rgb)


def read_raster(data: bytes, path: str, image_id: str, options: ReadConfig) -> Radiograph:
    """Read a PNG/JPEG/TIFF radiograph from its bytes (``path`` only names it in errors)."""
    kind = (looks_like_raster(data[:8]) or "image").upper()
    with quiet():
        # max_pixels below is the guard against bombs; damaged EXIF and the like surface when decoding
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as err:  # beyond twice Pillow's own limit
            raise ImageTooLargeError(
                f"the image declares more pixels than Pillow opens ({err}); refused as a likely decompression bomb",
                path=path,
            ) from err
        except UnidentifiedImageError as err:  # the signature matched, so the header is damaged
            raise CorruptFileError(
                f"the file starts like a {kind} but its header cannot be parsed; it is truncated or damaged",
                path=path,
            ) from err
        except Exception as err:
            raise CorruptFileError(
                f"the {kind} header cannot be parsed ({type(err).__name__}); it is truncated or damaged", path=path
            ) from err
    with im:
        fmt = _PIL_FORMATS.get(im.format or "")
        if fmt is None:
            raise UnsupportedFormatError(
                f"{im.format} images are not read; use DICOM, PNG, JPEG or TIFF", path=path
            )
        width, height = im.size
        if width < 1 or height < 1:
            raise CorruptFileError(f"the image declares an empty size ({width}x{height})", path=path)
        check_max_pixels(width, height, options, path, "the image")
        try:
            with quiet():
                n_frames = getattr(im, "n_frames", 1)  # TIFF: walks the chain of IFDs
        except Exception as err:
            raise CorruptFileError(
                f"the {kind} has a damaged image directory ({type(err).__name__}); it is truncated or damaged",
                path=path,
            ) from err
        if n_frames > 1 and im.format != "MPO":
            raise MultiFrameError(f"the image has {n_frames} frames; thoracic reads single images", path=path)
        try:
            with quiet():
                im.load()
        except Exception as err:
            raise CorruptFileError(
                f"the image data cannot be decoded ({type(err).__name__}: {str(err)[:200]}); the file is truncated or damaged",
                path=path,
            ) from err
        arr, bits, mode, colour = _gray(im)
        export_chain = _export_chain(im.info.get(CHAIN_TEXT_KEY)) if fmt == "png" else None
    values = arr.astype(np.float32, copy=False)
    vmin, vmax = float(values.min()), float(values.max())
    if not (np.isfinite(vmin) and np.isfinite(vmax)):  # a floating-point TIFF with NaN or infinities
        raise InvalidRadiographError(
            "the image holds NaN or infinite values; save it as 8/16-bit integers or replace them", path=path
        )
    if vmin == vmax:
        raise ConstantImageError(f"every pixel has the value {vmin:g}; the image is blank", path=path)
    if options.normalize == "minmax":  # the Kaggle recipe, 8-bit truncation included
        pixels, center, width_, voi = truncate_8bit(minmax(values)), (vmin + vmax) / 2, vmax - vmin, "minmax"
    elif options.normalize == "window" and bits <= 8:
        pixels, center, width_, voi = window(values, 128.0, 256.0), 128.0, 256.0, "full range"
    else:
        lo, hi = percentile_bounds(values, *options.percentiles)
        center, width_ = (lo + hi) / 2, hi - lo
        pixels, voi = window(values, center, width_, "LINEAR_EXACT"), "percentile"
    return Radiograph(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        image_id=image_id,
        source=path,
        format=fmt,
        original_width=width,
        original_height=height,
        photometric="MONOCHROME2" if mode in ("L", "1", "LA", "I;16", "I;16B", "I;16L", "I", "F") else f"{mode}->gray",
        transfer_syntax="",
        bits_stored=bits,
        window_center=center,
        window_width=width_,
        voi=voi,
        normalize=options.normalize,
        export_chain=export_chain,
        colour=colour,
    )
