"""What a DICOM must be before its pixels are decoded: a single-frame chest projection radiograph
with a sane Image Pixel module, a size within the limit and a pixel data decoder at hand."""

from __future__ import annotations

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from thoracic.errors import (
    NON_CHEST_HINT,
    CorruptFileError,
    MultiFrameError,
    NoPixelDataError,
    NotChestRadiographError,
    UnsupportedTransferSyntaxError,
)
from thoracic.io.dicom.header import sop_class_name, text
from thoracic.io.radiograph import ReadConfig, check_max_pixels

__all__ = [
    "LATERAL_VIEWS",
    "RADIOGRAPH_MODALITIES",
    "check_chest",
    "check_decoder",
    "check_image_attributes",
    "check_pixel_data",
    "check_size",
]

#: Modalities read without an override: projection radiographs, and "other"/absent as many
#: secondary captures of chest films carry them.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG", "DR", "OT", ""})
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"})
_CHEST_WORDS = ("CHEST", "THORA", "LUNG", "TORAX", "TORACE", "BRUST", "PECHO", "POUMON")

#: What to install for a compressed syntax (pydicom's pylibjpeg plugin needs pylibjpeg itself too).
_DECODER_PACKAGES = {
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
    "High-Throughput": "pylibjpeg pylibjpeg-openjpeg",
}

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


def check_pixel_data(ds: Dataset, path: str) -> None:
    """The dataset has a non-empty Pixel Data element (the error says what it is instead)."""
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        if other:
            what = f"has float pixel data ({other[0]}), which radiographs do not use"
        elif "Rows" in ds or "Image Storage" in sop_class_name(ds):
            what = "has an image header but no pixel data: it was saved without its pixels or cut short before them"
        else:
            what = "has no pixel data; it is not an image (a report or presentation state?)"
        raise NoPixelDataError(f"the DICOM {what}", path=path)
    if not ds.PixelData:
        raise CorruptFileError(
            "the DICOM's Pixel Data element is empty; the file is truncated or was saved without its pixels",
            path=path,
        )


def check_image_attributes(ds: Dataset, path: str) -> None:
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


def check_chest(ds: Dataset, options: ReadConfig, path: str) -> tuple[str, ...]:
    """Refuse a non-radiograph modality, a lateral view or another body part (unless
    ``options.allow_non_chest``); the flags of what was overridden."""
    problems: list[tuple[str, str]] = []
    modality = text(ds, "Modality")
    if modality not in RADIOGRAPH_MODALITIES:
        problems.append((f"modality:{modality}", f"modality {modality} is not a projection radiograph (CR/DX)"))
    view = text(ds, "ViewPosition")
    if view in LATERAL_VIEWS:
        problems.append((f"view:{view}", f"view position {view} is a lateral view; thoracic reads frontal (PA/AP) films"))
    part = text(ds, "BodyPartExamined")
    if part and not any(word in part for word in _CHEST_WORDS):
        problems.append((f"body_part:{part}", f"body part {part} is not the chest"))
    if problems and not options.allow_non_chest:
        raise NotChestRadiographError(
            "; ".join(msg for _, msg in problems) + NON_CHEST_HINT,
            path=path,
            reason=problems[0][0],
        )
    return tuple(tag for tag, _ in problems)


def check_size(ds: Dataset, options: ReadConfig, path: str) -> tuple[int, int]:
    """``(rows, columns)`` of a single frame, refused when empty or beyond ``options.max_pixels``."""
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
    check_max_pixels(cols, rows, options, path, "the DICOM")
    return rows, cols


def check_decoder(ds: Dataset, path: str) -> str:
    """The transfer syntax's name, once it is known to pydicom and its decoder is installed."""
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
