"""From pixel data to display values: decoding, grayscale, Modality LUT and VOI LUT or window."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from thoracic._warnings import quiet
from thoracic.errors import CorruptFileError, InvalidRadiographError, UnsupportedTransferSyntaxError
from thoracic.io.dicom.codestream import (
    J2K_SYNTAXES,
    JPEGLS_SYNTAXES,
    check_codestream,
    decode_j2k_reduced,
    has_charls,
)
from thoracic.io.dicom.header import first, number, text
from thoracic.io.radiograph import ReadConfig
from thoracic.io.voi import minmax, percentile_bounds, window
from thoracic.transform import Affine

__all__ = ["apply_voi", "decode", "modality_lut", "to_gray"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def decode(ds: Dataset, options: ReadConfig, path: str) -> tuple[np.ndarray, Affine]:
    """The stored pixel values, and the map of their coordinates to the original image's.

    A JPEG 2000 image is decoded at a reduced resolution when ``options.target_size`` allows it;
    the map is the identity otherwise.
    """
    rows, cols = int(ds.Rows), int(ds.Columns)
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    check_codestream(ds, ts, path)
    with quiet():
        try:
            if (
                options.target_size
                and ts in J2K_SYNTAXES
                and int(ds.get("SamplesPerPixel", 1)) == 1
                and int(ds.get("PixelRepresentation", 0)) == 0
            ):
                reduced = decode_j2k_reduced(ds, options.target_size)
                if reduced is not None:
                    arr, level = reduced
                    # sample i of level L is the low-pass value centred on original pixel 2**L * i
                    # (centre 2**L * i + 0.5): x_original = 2**L * x + 0.5 - 2**(L - 1)
                    s = float(2**level)
                    return arr, Affine(sx=s, sy=s, tx=0.5 - s / 2, ty=0.5 - s / 2)
            if ts in JPEGLS_SYNTAXES and has_charls():
                ds.pixel_array_options(decoding_plugin="pyjpegls")
            native = _native_unsigned_16(ds, ts, rows, cols)
            arr = native if native is not None else ds.pixel_array
        except (UnsupportedTransferSyntaxError, InvalidRadiographError):
            raise
        except MemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - decoders raise anything on corrupt streams
            raise CorruptFileError(
                f"the pixel data cannot be decoded ({type(err).__name__}: {str(err)[:200]}); "
                "the file is truncated or damaged",
                path=path,
            ) from err
    samples = int(ds.get("SamplesPerPixel", 1))
    expected = (rows, cols) if samples == 1 else (rows, cols, samples)
    if arr.shape != expected:
        raise CorruptFileError(
            f"decoded pixel data has shape {arr.shape}, the header says {expected}; the file is damaged",
            path=path,
        )
    return arr, Affine.identity()


#: Uncompressed little-endian transfer syntaxes: the pixel data is the pixels' bytes as they are.
_NATIVE_LE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def _native_unsigned_16(ds: Dataset, ts: str, rows: int, cols: int) -> np.ndarray | None:
    """The stored values of the commonest radiograph, read in place from the pixel data's bytes.

    One frame of unsigned 16-bit grayscale in an uncompressed little-endian syntax whose bits above
    Bits Stored are all 0: exactly what pydicom's ``pixel_array`` returns (a read-only view here,
    without its copy and its pass clearing the unused bits). Anything else: ``None`` (pydicom decodes).
    """
    if (
        ts not in _NATIVE_LE
        or int(ds.get("BitsAllocated", 0)) != 16
        or int(ds.get("SamplesPerPixel", 1)) != 1
        or int(ds.get("PixelRepresentation", 0)) != 0
        or int(ds.get("NumberOfFrames", 1) or 1) != 1
        or text(ds, "PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2")
    ):
        return None
    raw = ds.get("PixelData")
    if not isinstance(raw, bytes | bytearray) or len(raw) < rows * cols * 2:
        return None
    arr = np.frombuffer(raw, dtype="<u2", count=rows * cols).reshape(rows, cols)
    bits = int(ds.get("BitsStored", 16))
    if 0 < bits < 16 and int(arr.max()) >> bits:  # unused high bits set: pydicom clears them
        return None
    return arr


def _lut_call(what: str, fn: Any, *args: Any, path: str) -> np.ndarray:
    """Apply one of pydicom's lookup-table functions; a malformed table becomes a typed error.

    pydicom raises ``TypeError``, ``ValueError``, ``IndexError``, ``NotImplementedError``,
    ``struct.error``, ... on a LUT whose descriptor and data do not agree (bits per entry other
    than 8/16, data shorter than declared, no data at all).
    """
    try:
        with quiet():
            return fn(*args)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - see above
        raise CorruptFileError(
            f"the DICOM's {what} is malformed ({type(err).__name__}: {str(err)[:120]}); the header is damaged",
            path=path,
        ) from err


def _lut_depth(seq: Any, what: str, path: str) -> int:
    """Bits per entry of the first LUT item's descriptor (8..16, as the standard allows)."""
    try:
        depth = int(seq[0].LUTDescriptor[2])
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise CorruptFileError(f"the DICOM's {what} has no valid LUT Descriptor; the header is damaged",
                               path=path) from err
    if not 8 <= depth <= 16:
        raise CorruptFileError(f"the DICOM's {what} declares {depth} bits per entry (8 to 16 allowed); "
                               "the header is damaged", path=path)
    return depth


def to_gray(arr: np.ndarray, ds: Dataset, path: str) -> np.ndarray:
    """One sample per pixel: a palette mapped to RGB, RGB to its ITU-R 601 luma."""
    pi = text(ds, "PhotometricInterpretation")
    if pi == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        if arr.ndim != 2:  # the palette maps one sample per pixel; pydicom would map each of them
            raise CorruptFileError(
                f"the DICOM says PALETTE COLOR but has {arr.shape[-1]} samples per pixel; the header is damaged",
                path=path,
            )
        arr = _lut_call("palette color lookup table", apply_color_lut, arr, ds, path=path)
    if arr.ndim == 3:
        if arr.shape[2] != 3:
            raise InvalidRadiographError(f"{arr.shape[2]} samples per pixel is not a grayscale or RGB image", path=path)
        a = arr.astype(np.float32)
        return a[..., 0] * np.float32(0.299) + a[..., 1] * np.float32(0.587) + a[..., 2] * np.float32(0.114)
    return arr


def _stored_range(ds: Dataset) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def modality_lut(arr: np.ndarray, ds: Dataset, path: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Stored values to modality values (float32; 8- and 16-bit integers under the identity rescale
    are returned as they are, each exact in float32), and the modality range of the stored range."""
    lo, hi = _stored_range(ds)
    if "ModalityLUTSequence" in ds and ds.ModalityLUTSequence:
        from pydicom.pixels import apply_modality_lut

        depth = _lut_depth(ds.ModalityLUTSequence, "Modality LUT", path)
        out = _lut_call("Modality LUT", apply_modality_lut, arr, ds, path=path).astype(np.float32)
        return out, (0.0, 2.0**depth - 1)
    slope = number(ds, "RescaleSlope", 1.0, path) or 1.0
    intercept = number(ds, "RescaleIntercept", 0.0, path)
    r = sorted((lo * slope + intercept, hi * slope + intercept))
    if max(abs(slope), abs(intercept), -r[0], r[1]) > _FLOAT32_MAX:
        raise CorruptFileError(
            "the DICOM's Rescale Slope/Intercept map its values beyond the floating-point range; "
            "the header is damaged",
            path=path,
        )
    if slope == 1.0 and intercept == 0.0 and arr.dtype.kind in "iu" and arr.dtype.itemsize <= 2:
        # the values are the stored integers, each exact in float32: the window makes its float32
        # image from them directly (one pass over the image fewer), every other use converts them
        return arr, (r[0], r[1])
    out = arr.astype(np.float32, copy=False)
    if slope != 1.0 or intercept != 0.0:
        out = out * np.float32(slope) + np.float32(intercept)
    return out, (r[0], r[1])


def _window_from_file(ds: Dataset) -> tuple[float, float, str] | None:
    center, width = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        return None
    func = text(ds, "VOILUTFunction") or "LINEAR"
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (func == "LINEAR" and w < 1):
        return None
    if abs(c) > _FLOAT32_MAX or w > _FLOAT32_MAX:  # a damaged value: the pixels are windowed in float32
        return None
    if func not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        func = "LINEAR"
    return c, w, func


def apply_voi(
    values: np.ndarray, ds: Dataset, full_range: tuple[float, float], options: ReadConfig, bits: int, path: str
) -> tuple[np.ndarray, float | None, float | None, str]:
    """Modality values to ``[0, 1]``: ``(pixels, window center, window width, what was applied)``.

    The file's VOI LUT, else its window, else (``normalize="window"``) the full range of data of at
    most 8 bits or a percentile window.
    """
    if options.normalize != "percentile":
        lut_seq = ds.get("VOILUTSequence")
        if lut_seq and "LUTData" in lut_seq[0] and "LUTDescriptor" in lut_seq[0]:
            from pydicom.pixels import apply_voi as apply_voi_lut

            depth = _lut_depth(lut_seq, "VOI LUT", path)
            ints = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values.astype(np.int64)
            out = _lut_call("VOI LUT", apply_voi_lut, ints, ds, path=path).astype(np.float32)
            return out * np.float32(1.0 / (2.0**depth - 1)), None, None, "VOI LUT"
        win = _window_from_file(ds)
        if win is not None:
            c, w, func = win
            return window(values, c, w, func), c, w, f"window {func}"
    values = np.asarray(values, dtype=np.float32)  # stored integers as they are (modality_lut) become float32 here
    if options.normalize != "percentile":
        if options.normalize == "minmax":  # no window in the file: stretch the values themselves
            lo, hi = float(values.min()), float(values.max())
            return minmax(values), (lo + hi) / 2, hi - lo, "minmax"
        if bits <= 8:
            lo, hi = full_range
            c, w = (lo + hi + 1) / 2, hi - lo + 1
            return window(values, c, w, "LINEAR"), c, w, "full range"
    lo, hi = percentile_bounds(values, *options.percentiles)
    return window(values, (lo + hi) / 2, hi - lo, "LINEAR_EXACT"), (lo + hi) / 2, hi - lo, "percentile"
