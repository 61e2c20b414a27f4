"""DICOM radiographs: checks, decoding, Modality LUT, VOI LUT/window, photometric interpretation."""

from __future__ import annotations

import io
import logging
import math
import re
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from thoracic._warnings import quiet
from thoracic.errors import (
    ConstantImageError,
    CorruptFileError,
    ImageTooLargeError,
    InvalidRadiographError,
    MultiFrameError,
    NoPixelDataError,
    NotChestRadiographError,
    UnsupportedFormatError,
    UnsupportedTransferSyntaxError,
)
from thoracic.io.radiograph import Radiograph, ReadOptions
from thoracic.io.voi import minmax, percentile_bounds, truncate_8bit, window
from thoracic.transform import Affine

__all__ = ["read_dicom"]

#: Modalities read without an override: projection radiographs, and "other"/absent as many
#: secondary captures of chest films carry them.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "DR", "OT", ""})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})
_CHEST_WORDS = ("CHEST", "THORA", "LUNG", "TORAX", "TORACE", "BRUST", "PECHO", "POUMON")
_PHI_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "AccessionNumber",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "InstitutionName",
    "ReferringPhysicianName",
)
_J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})
#: Syntaxes whose codestream ends with an EOI/EOC marker (FFD9), which cannot occur inside its data
#: (byte stuffing); pylibjpeg decodes a stream cut short without a word, as gray or black pixels.
_EOI_SYNTAXES = frozenset(
    pydicom.uid.JPEGTransferSyntaxes + pydicom.uid.JPEGLSTransferSyntaxes + pydicom.uid.JPEG2000TransferSyntaxes
)
_JPEGLS_SYNTAXES = frozenset(pydicom.uid.JPEGLSTransferSyntaxes)
_charls: bool | None = None


def _has_charls() -> bool:
    """Whether pyjpegls (CharLS) is installed: it decodes JPEG-LS to the same pixels as
    pylibjpeg-libjpeg, 3.5x faster (RG1_JLSN: 88 vs 311 ms). The ``dicom`` extra brings it."""
    global _charls
    if _charls is None:
        import importlib.util

        _charls = importlib.util.find_spec("jpeg_ls") is not None
    return _charls


#: What to install for a compressed syntax (pydicom's pylibjpeg plugin needs pylibjpeg itself too).
_DECODER_PACKAGES = {
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
    "High-Throughput": "pylibjpeg pylibjpeg-openjpeg",
}


class _RedactValues(logging.Filter):
    """Keep element values out of pydicom's log records.

    pydicom logs an invalid value verbatim (``Invalid value for VR DA: '1937-04-12'``), and the
    value may be a patient's name, id or birth date. The record stays (tag, VR and rule are
    useful); quoted values become ``<value>``.
    """

    _QUOTED = re.compile(r"b?'(?:[^'\\]|\\.)*'" + r'|b?"(?:[^"\\]|\\.)*"')

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._QUOTED.sub("<value>", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


log = logging.getLogger(__name__)
_REDACT = _RedactValues()
logging.getLogger("pydicom").addFilter(_REDACT)


def looks_like_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def _parse(data: bytes, path: str) -> Dataset:
    with quiet(record=True) as caught:  # pydicom warns on fixable header oddities; we validate ourselves
        try:
            if looks_like_dicom(data[:132]):
                ds = pydicom.dcmread(io.BytesIO(data))
            else:
                ds = pydicom.dcmread(io.BytesIO(data), force=True)  # a dataset without preamble or meta
        except InvalidDicomError as err:
            raise UnsupportedFormatError(
                "not a DICOM file nor a PNG/JPEG/TIFF image", path=path
            ) from err
        except Exception as err:  # noqa: BLE001 - pydicom raises many kinds on damaged headers
            raise CorruptFileError(
                f"the DICOM header cannot be parsed ({type(err).__name__}); the file is damaged or truncated",
                path=path,
            ) from err
    if not looks_like_dicom(data[:132]) and not any(k in ds for k in ("Rows", "SOPClassUID", "PixelData")):
        raise UnsupportedFormatError("not a DICOM file nor a PNG/JPEG/TIFF image", path=path)
    implicit, little = ds.original_encoding
    if not ds.file_meta.get("TransferSyntaxUID") and implicit is not None:  # no (or an empty) syntax: as read
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    eof = any("end of file" in str(w.message).lower() for w in caught)
    if "PixelData" not in ds and (eof or _looks_truncated(ds, len(data))):
        raise CorruptFileError(
            "the DICOM is cut short before the end of its pixel data; the file is truncated "
            "(copy or download it again)",
            path=path,
        )
    _materialize(ds, path)
    return ds


#: Deeper nesting than any real header has (a few levels): a guard against crafted files.
_MAX_SEQUENCE_DEPTH = 64
#: Groups the reader decides and decodes with (file meta, SOP/modality, acquisition, image pixel,
#: pixel data): a damaged element there fails the read; one elsewhere is dropped from the header.
_ESSENTIAL_GROUPS = frozenset({0x0002, 0x0008, 0x0018, 0x0028, 0x7FE0})


def _materialize(ds: Dataset, path: str) -> None:
    """Decode every element now (pydicom decodes lazily), so a damaged one fails here, typed.

    A flipped bit in a VR (``'QI'``), a value that does not fit its VR or a broken sequence item
    would otherwise raise ``NotImplementedError``/``ValueError``/... from whichever lookup touches
    it first. Such an element outside :data:`_ESSENTIAL_GROUPS` (a patient, study or private
    element) is removed and the read goes on. Runs after the truncation checks, which look at
    the raw elements.
    """
    stack: list[tuple[Dataset, int, int]] = [(ds.file_meta, 0, 0x0002), (ds, 0, -1)]
    try:
        with quiet():
            while stack:  # iterative: pydicom's walk() is recursive and slow to fail on deep nesting
                item, depth, group = stack.pop()
                if depth > _MAX_SEQUENCE_DEPTH:
                    raise CorruptFileError(
                        f"the DICOM nests sequences more than {_MAX_SEQUENCE_DEPTH} deep; the header is damaged",
                        path=path,
                    )
                for tag in list(item.keys()):
                    top = tag.group if group < 0 else group  # the top-level element's group
                    try:
                        elem = item[tag]  # decodes it
                        children = elem.value if elem.VR == "SQ" else None
                    except (MemoryError, RecursionError):
                        raise
                    except Exception as err:  # noqa: BLE001 - see above
                        if top in _ESSENTIAL_GROUPS:
                            raise CorruptFileError(
                                f"the DICOM header element {tag} cannot be decoded ({type(err).__name__}); "
                                "the file is damaged",
                                path=path,
                            ) from err
                        del item[tag]
                        log.debug("%s: dropped the damaged header element %s (%s)", path, tag, type(err).__name__)
                        continue
                    if children:
                        stack.extend((child, depth + 1, top) for child in children)
    except (MemoryError, CorruptFileError):
        raise
    except Exception as err:  # noqa: BLE001 - see above
        tag = re.search(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)", str(err))  # the tag only, never a value
        where = f" in element {tag.group(0)}" if tag else ""
        raise CorruptFileError(
            f"the DICOM header has an element that cannot be decoded ({type(err).__name__}{where}); "
            "the file is damaged",
            path=path,
        ) from err


def _looks_truncated(ds: Dataset, size: int) -> bool:
    """Whether pydicom stopped at the end of the data, not at the end of the dataset.

    pydicom reads a truncated file silently: the last element comes short of its declared length,
    a partial tag is dropped, or nothing at all follows the file meta. (A file cut exactly between
    two elements cannot be told from one saved without its pixels.)
    """
    if len(ds) == 0:
        return True
    raw = [e for e in ds._dict.values() if isinstance(e, RawDataElement) and e.length != 0xFFFFFFFF]
    if not raw:
        return False
    last = max(raw, key=lambda e: e.value_tell)
    end = last.value_tell + last.length
    short = isinstance(last.value, bytes) and len(last.value) < last.length
    return short or end > size or 0 < size - end < 8


def _first(value: Any) -> Any:
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return str(_first(value) if value is not None else "").strip().upper()


def _check_chest(ds: Dataset, options: ReadOptions, path: str) -> tuple[str, ...]:
    problems: list[tuple[str, str]] = []
    modality = _text(ds, "Modality")
    if modality not in RADIOGRAPH_MODALITIES:
        problems.append((f"modality:{modality}", f"modality {modality} is not a projection radiograph (CR/DX)"))
    view = _text(ds, "ViewPosition")
    if view in LATERAL_VIEWS:
        problems.append((f"view:{view}", f"view position {view} is a lateral view; thoracic reads frontal (PA/AP) films"))
    part = _text(ds, "BodyPartExamined")
    if part and not any(word in part for word in _CHEST_WORDS):
        problems.append((f"body_part:{part}", f"body part {part} is not the chest"))
    if problems and not options.allow_non_chest:
        raise NotChestRadiographError(
            "; ".join(msg for _, msg in problems) + ". Use allow_non_chest (--allow-non-chest) to analyze it anyway",
            path=path,
            reason=problems[0][0],
        )
    return tuple(tag for tag, _ in problems)


def _check_decoder(ds: Dataset, path: str) -> str:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if not ts:
        return "Implicit VR Little Endian"
    if not isinstance(ts, UID):
        ts = UID(str(ts), validation_mode=pydicom.config.IGNORE)  # validity is judged below
    try:
        compressed = ts.is_compressed
    except ValueError as err:  # a syntax this pydicom does not know (newer standard or private)
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {ts} is not one pydicom {pydicom.__version__} knows; a newer pydicom may "
            "decode it (pip install --upgrade pydicom), or convert the file to an uncompressed syntax "
            "(e.g. with gdcmconv --raw)",
            path=path,
            transfer_syntax=str(ts),
        ) from err
    if not compressed:
        return ts.name
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError as err:
        raise UnsupportedTransferSyntaxError(
            f"transfer syntax {ts.name} ({ts}) has no pixel data decoder in pydicom {pydicom.__version__}; "
            "a newer pydicom may decode it (pip install --upgrade pydicom), or convert the file to an "
            "uncompressed syntax (e.g. with gdcmconv --raw)",
            path=path,
            transfer_syntax=str(ts),
        ) from err
    if not decoder.is_available:
        package = next((pkg for key, pkg in _DECODER_PACKAGES.items() if key in ts.name), "pylibjpeg")
        raise UnsupportedTransferSyntaxError(
            f"decoding {ts.name} ({ts}) needs a decoder that is not installed: pip install {package}",
            path=path,
            transfer_syntax=str(ts),
        )
    return ts.name


def _codestream_info(frame: bytes) -> tuple[int, int, bool] | None:
    """``(decomposition_levels, precision, signed)`` from a J2K codestream's SIZ and COD markers."""
    start = frame.find(b"\xff\x4f\xff\x51", 0, 4096)
    if start < 0:
        return None
    pos, levels, precision, signed = start + 2, None, None, False
    end = min(len(frame), start + 65536)
    while pos + 4 <= end:
        marker = frame[pos : pos + 2]
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        seg = frame[pos + 4 : pos + 2 + length]
        if marker == b"\xff\x51" and len(seg) >= 37:  # SIZ: first component's Ssiz
            ssiz = seg[36]
            precision, signed = (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
        elif marker == b"\xff\x52" and len(seg) >= 6:  # COD: number of decomposition levels
            levels = seg[5]
        elif marker == b"\xff\x90":  # first tile: end of the main header
            break
        pos += 2 + length
    if levels is None or precision is None:
        return None
    return levels, precision, signed


#: JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic; JPEG-LS).
_SOF_MARKERS = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7})


def _first_frame(ds: Dataset) -> bytes | None:
    from pydicom.encaps import generate_frames

    try:
        return next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # noqa: BLE001 - broken encapsulation: the decoder reports it
        return None


def _codestream_size(frame: bytes | None) -> tuple[int, int] | None:
    """``(width, height)`` a JPEG, JPEG-LS or JPEG 2000 codestream declares, if it can be found."""
    if not frame:
        return None
    start = frame.find(b"\xff\x4f\xff\x51", 0, 4096)  # J2K: SOC, SIZ
    if start >= 0:
        siz = frame[start + 8 : start + 24]
        if len(siz) < 16:
            return None
        x, y, x0, y0 = (int.from_bytes(siz[i : i + 4], "big") for i in (0, 4, 8, 12))
        return x - x0, y - y0
    pos = frame.find(b"\xff\xd8")  # JPEG / JPEG-LS: walk the marker segments to the frame header
    if pos < 0:
        return None
    pos += 2
    end = min(len(frame), 1 << 20)
    while pos + 4 <= end:
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            seg = frame[pos + 5 : pos + 9]
            if len(seg) < 4:
                return None
            # a height of 0 (to be given by a DNL marker) makes libjpeg grow its buffer without bound
            return int.from_bytes(seg[2:4], "big"), int.from_bytes(seg[0:2], "big")
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + int.from_bytes(frame[pos + 2 : pos + 4], "big")
    return None


def _decode_j2k_reduced(ds: Dataset, target: int) -> tuple[np.ndarray, int] | None:
    """Decode a single-frame JPEG 2000 image at the coarsest resolution level >= ``target``."""
    from pydicom.encaps import generate_frames

    rows, cols = int(ds.Rows), int(ds.Columns)
    longest = max(rows, cols)
    level = 0
    while math.ceil(longest / 2 ** (level + 1)) >= target:
        level += 1
    if level == 0:
        return None
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    info = _codestream_info(frame)
    if info is None or info[2] or info[1] > 16:
        return None
    levels, precision, _ = info
    level = min(level, levels)
    if level == 0:
        return None
    # OpenJPEG refuses some levels on some encoders' streams ("broken data stream" for levels >= 2
    # of the Kakadu-made RG1 files): step down to the next finer level, and to a full decode.
    for level in range(level, 0, -1):
        try:
            with Image.open(io.BytesIO(frame)) as im:
                im.reduce = level
                im.load()
                arr = np.asarray(im)
                mode = im.mode
            break
        except OSError:
            continue
    else:
        return None
    if mode.startswith("I;16") and precision < 16:
        arr = arr >> (16 - precision)  # Pillow scales J2K samples up to 16 bits
    elif mode not in ("L",) and not mode.startswith("I;16"):
        return None
    if arr.shape != (math.ceil(rows / 2**level), math.ceil(cols / 2**level)):
        return None
    return arr, level


def _decode(ds: Dataset, options: ReadOptions, path: str) -> tuple[np.ndarray, Affine]:
    rows, cols = int(ds.Rows), int(ds.Columns)
    ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
    if ts in _EOI_SYNTAXES and b"\xff\xd9" not in bytes(ds.PixelData[-16:]):  # single frame: its end
        raise CorruptFileError(
            "the compressed pixel data stops before its end-of-image marker; the file is truncated or damaged",
            path=path,
        )
    if ts in _EOI_SYNTAXES:
        declared = _codestream_size(_first_frame(ds))
        if declared is not None and declared != (cols, rows):
            # the decoder allocates what the codestream says: 65535 x 65535 is a 4 GB decompression bomb
            raise CorruptFileError(
                f"the compressed pixel data declares {declared[0]}x{declared[1]} pixels, the header {cols}x{rows}; "
                "the file is damaged",
                path=path,
            )
    with quiet():
        try:
            if (
                options.target_size
                and ts in _J2K_SYNTAXES
                and int(ds.get("SamplesPerPixel", 1)) == 1
                and int(ds.get("PixelRepresentation", 0)) == 0
            ):
                reduced = _decode_j2k_reduced(ds, options.target_size)
                if reduced is not None:
                    arr, level = reduced
                    # sample i of level L is the low-pass value centred on original pixel 2**L * i
                    # (centre 2**L * i + 0.5): x_original = 2**L * x + 0.5 - 2**(L - 1)
                    s = float(2**level)
                    return arr, Affine(sx=s, sy=s, tx=0.5 - s / 2, ty=0.5 - s / 2)
            if ts in _JPEGLS_SYNTAXES and _has_charls():
                ds.pixel_array_options(decoding_plugin="pyjpegls")
            arr = ds.pixel_array
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


def _to_gray(arr: np.ndarray, ds: Dataset, path: str) -> np.ndarray:
    pi = _text(ds, "PhotometricInterpretation")
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


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _modality_lut(arr: np.ndarray, ds: Dataset, path: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Stored values to modality values (float32), and the modality range of the stored range."""
    lo, hi = _stored_range(ds)
    if "ModalityLUTSequence" in ds and ds.ModalityLUTSequence:
        from pydicom.pixels import apply_modality_lut

        depth = _lut_depth(ds.ModalityLUTSequence, "Modality LUT", path)
        out = _lut_call("Modality LUT", apply_modality_lut, arr, ds, path=path).astype(np.float32)
        return out, (0.0, 2.0**depth - 1)
    slope = _number(ds, "RescaleSlope", 1.0, path) or 1.0
    intercept = _number(ds, "RescaleIntercept", 0.0, path)
    r = sorted((lo * slope + intercept, hi * slope + intercept))
    if max(abs(slope), abs(intercept), -r[0], r[1]) > _FLOAT32_MAX:
        raise CorruptFileError(
            "the DICOM's Rescale Slope/Intercept map its values beyond the floating-point range; "
            "the header is damaged",
            path=path,
        )
    out = arr.astype(np.float32, copy=False)
    if slope != 1.0 or intercept != 0.0:
        out = out * np.float32(slope) + np.float32(intercept)
    return out, (r[0], r[1])


def _window_from_file(ds: Dataset) -> tuple[float, float, str] | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None:
        return None
    try:
        c, w = float(center), float(width)
    except (TypeError, ValueError):
        return None
    func = _text(ds, "VOILUTFunction") or "LINEAR"
    if not (math.isfinite(c) and math.isfinite(w)) or w <= 0 or (func == "LINEAR" and w < 1):
        return None
    if abs(c) > _FLOAT32_MAX or w > _FLOAT32_MAX:  # a damaged value: the pixels are windowed in float32
        return None
    if func not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        func = "LINEAR"
    return c, w, func


def _apply_voi(
    values: np.ndarray, ds: Dataset, full_range: tuple[float, float], options: ReadOptions, bits: int, path: str
) -> tuple[np.ndarray, float | None, float | None, str]:
    if options.normalize != "percentile":
        lut_seq = ds.get("VOILUTSequence")
        if lut_seq and "LUTData" in lut_seq[0] and "LUTDescriptor" in lut_seq[0]:
            from pydicom.pixels import apply_voi

            depth = _lut_depth(lut_seq, "VOI LUT", path)
            ints = np.rint(values).astype(np.int64) if values.dtype.kind == "f" else values
            out = _lut_call("VOI LUT", apply_voi, ints, ds, path=path).astype(np.float32)
            return out * np.float32(1.0 / (2.0**depth - 1)), None, None, "VOI LUT"
        win = _window_from_file(ds)
        if win is not None:
            c, w, func = win
            return window(values, c, w, func), c, w, f"window {func}"
        if options.normalize == "minmax":  # no window in the file: stretch the values themselves
            lo, hi = float(values.min()), float(values.max())
            return minmax(values), (lo + hi) / 2, hi - lo, "minmax"
        if bits <= 8:
            lo, hi = full_range
            c, w = (lo + hi + 1) / 2, hi - lo + 1
            return window(values, c, w, "LINEAR"), c, w, "full range"
    lo, hi = percentile_bounds(values, *options.percentiles)
    return window(values, (lo + hi) / 2, hi - lo, "LINEAR_EXACT"), (lo + hi) / 2, hi - lo, "percentile"


def _spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if isinstance(value, pydicom.multival.MultiValue | list | tuple) and len(value) == 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0 and math.isfinite(row) and math.isfinite(col):
                return row, col
    return None


#: Image Pixel attributes used as single integers; a damaged header can make them empty,
#: multi-valued or out of range.
_IMAGE_INTS = {
    "Rows": (0, 65535),
    "Columns": (0, 65535),
    "SamplesPerPixel": (1, 4),
    "BitsAllocated": (1, 64),
    "BitsStored": (1, 64),
    "HighBit": (0, 63),
    "PixelRepresentation": (0, 1),
    "PlanarConfiguration": (0, 1),
}


def _check_image_attributes(ds: Dataset, path: str) -> None:
    """Each Image Pixel attribute that is present holds one integer in its allowed range."""
    for keyword, (lo, hi) in _IMAGE_INTS.items():
        if keyword not in ds:
            continue
        value = ds[keyword].value
        if value in (None, "") and keyword == "PlanarConfiguration":
            continue  # left empty by some writers of grayscale images, where it means nothing
        try:
            number = int(value)  # None (empty), a list (VM > 1) or text fail here
        except (TypeError, ValueError) as err:
            raise CorruptFileError(f"the DICOM's {keyword} is not a single integer; the header is damaged",
                                   path=path) from err
        if not lo <= number <= hi:
            raise CorruptFileError(f"the DICOM's {keyword} is {number}, outside {lo}..{hi}; the header is damaged",
                                   path=path)


def _number(ds: Dataset, keyword: str, default: float, path: str) -> float:
    """A finite decimal attribute (first value), ``default`` when absent or empty."""
    value = _first(ds.get(keyword))
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise CorruptFileError(f"the DICOM's {keyword} is not a number; the header is damaged", path=path) from err
    if not math.isfinite(number):
        raise CorruptFileError(f"the DICOM's {keyword} is {number}; the header is damaged", path=path)
    return number


def _sop_class_name(ds: Dataset) -> str:
    """The SOP Class UID's name ("" for an unknown or malformed one, without pydicom's warning)."""
    return UID(str(ds.get("SOPClassUID", "")), validation_mode=pydicom.config.IGNORE).name


def read_dicom(data: bytes, path: str, image_id: str, options: ReadOptions) -> Radiograph:
    """Read a DICOM radiograph from its bytes (``path`` only names it in errors)."""
    ds = _parse(data, path)
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            what = f"has float pixel data ({other[0]}), which radiographs do not use"
        elif "Rows" in ds or "Image Storage" in _sop_class_name(ds):
            what = "has an image header but no pixel data: it was saved without its pixels or cut short before them"
        else:
            what = "has no pixel data; it is not an image (a report or presentation state?)"
        raise NoPixelDataError(f"the DICOM {what}", path=path)
    if not ds.PixelData:
        raise CorruptFileError(
            "the DICOM's Pixel Data element is empty; the file is truncated or was saved without its pixels",
            path=path,
        )
    _check_image_attributes(ds, path)
    flags = _check_chest(ds, options, path)
    frames = ds.get("NumberOfFrames", 1)
    try:
        n_frames = int(frames or 1)
    except (TypeError, ValueError):
        n_frames = 1
    if n_frames > 1:
        raise MultiFrameError(f"the DICOM has {n_frames} frames; thoracic reads single-frame radiographs", path=path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as err:
        raise CorruptFileError("the DICOM has pixel data but no valid Rows/Columns", path=path) from err
    if rows < 1 or cols < 1:
        raise CorruptFileError(f"the DICOM declares an empty image ({cols}x{rows})", path=path)
    if rows * cols > options.max_pixels:
        raise ImageTooLargeError(
            f"the DICOM declares {cols}x{rows} pixels, more than the limit of {options.max_pixels:,}; "
            "raise max_pixels (--max-pixels) if this film is genuine",
            path=path,
        )
    ts_name = _check_decoder(ds, path)
    stored, to_original = _decode(ds, options, path)
    stored = _to_gray(stored, ds, path)
    photometric = _text(ds, "PhotometricInterpretation") or "MONOCHROME2"
    if stored.ndim == 2 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        values, full_range = _modality_lut(stored, ds, path)
    else:
        values, full_range = stored.astype(np.float32, copy=False), (0.0, 255.0)
    vmin, vmax = float(values.min()), float(values.max())
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        raise CorruptFileError(
            "the modality values overflow (a Rescale Slope/Intercept or Modality LUT out of range); "
            "the header is damaged",
            path=path,
        )
    if vmin == vmax:
        raise ConstantImageError(f"every pixel has the value {vmin:g}; the image is blank", path=path)
    bits = int(ds.get("BitsStored", 8))
    pixels, center, width, voi = _apply_voi(values, ds, full_range, options, bits, path)
    if options.normalize == "minmax" and voi != "minmax":
        pixels = minmax(pixels)
    if photometric == "MONOCHROME1":
        pixels = np.subtract(np.float32(1.0), pixels, dtype=np.float32)
    if options.normalize == "minmax":
        pixels = truncate_8bit(pixels)  # exactly the Kaggle recipe's 8-bit image
    phi = {k: str(ds.get(k)) for k in _PHI_KEYWORDS if ds.get(k) not in (None, "")}
    del ds.PixelData  # the header stays for DICOM outputs; the pixels live in `pixels`
    return Radiograph(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        image_id=image_id,
        source=path,
        format="dicom",
        original_width=cols,
        original_height=rows,
        to_original=to_original,
        photometric=photometric,
        transfer_syntax=ts_name,
        bits_stored=bits,
        window_center=center,
        window_width=width,
        voi=voi,
        normalize=options.normalize,
        pixel_spacing=_spacing(ds),
        modality=_text(ds, "Modality"),
        view_position=_text(ds, "ViewPosition"),
        body_part=_text(ds, "BodyPartExamined"),
        flags=flags,
        phi=phi,
        dataset=ds,
    )
