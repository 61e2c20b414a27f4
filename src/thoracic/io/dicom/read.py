"""Reading a DICOM radiograph: the header parsed and checked, the pixels decoded and mapped to ``[0, 1]``."""

from __future__ import annotations

import io
import logging
import math
import re

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from thoracic._warnings import quiet
from thoracic.errors import ConstantImageError, CorruptFileError, UnsupportedFormatError
from thoracic.io.dicom.checks import check_chest, check_decoder, check_image_attributes, check_pixel_data, check_size
from thoracic.io.dicom.header import phi, spacing, text
from thoracic.io.dicom.pixels import apply_voi, decode, modality_lut, to_gray
from thoracic.io.dicom.preamble import looks_like_dicom
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.voi import minmax, truncate_8bit

__all__ = ["looks_like_dicom", "parse", "read_dicom"]

log = logging.getLogger(__name__)


def parse(data: bytes, path: str) -> Dataset:
    """The header of a DICOM (with or without preamble and file meta), every element decoded."""
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
        found = re.search(r"\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)", str(err))  # the tag only, never a value
        where = f" in element {found.group(0)}" if found else ""
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


def _value_range(stored: np.ndarray, values: np.ndarray, ds: Dataset, path: str) -> tuple[float, float]:
    """The least and greatest of ``values``, the modality values of grayscale ``stored``: from the
    stored integers when the Modality LUT is the linear rescale (monotonic in float32 too, so the
    extremes map to the extremes: the same numbers, for a pass over half or a quarter of the
    bytes), else from ``values``."""
    if stored.dtype.kind in "iu" and stored.size and "ModalityLUTSequence" not in ds:
        ends = np.array([stored.min(), stored.max()], dtype=stored.dtype)
        mapped, _ = modality_lut(ends, ds, path)
        return float(mapped.min()), float(mapped.max())
    return float(values.min()), float(values.max())


def read_dicom(data: bytes, path: str, image_id: str, options: ReadConfig) -> Radiograph:
    """Read a DICOM radiograph from its bytes (``path`` only names it in errors)."""
    ds = parse(data, path)
    check_pixel_data(ds, path)
    check_image_attributes(ds, path)
    flags = check_chest(ds, options, path)
    rows, cols = check_size(ds, options, path)
    ts_name = check_decoder(ds, path)
    stored, to_original = decode(ds, options, path)
    stored = to_gray(stored, ds, path)
    photometric = text(ds, "PhotometricInterpretation") or "MONOCHROME2"
    if stored.ndim == 2 and photometric in ("MONOCHROME1", "MONOCHROME2"):
        values, full_range = modality_lut(stored, ds, path)
        vmin, vmax = _value_range(stored, values, ds, path)
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
    pixels, center, width, voi = apply_voi(values, ds, full_range, options, bits, path)
    if options.normalize == "minmax" and voi != "minmax":
        pixels = minmax(pixels)
    if photometric == "MONOCHROME1":
        pixels = np.subtract(np.float32(1.0), pixels, dtype=np.float32)
    if options.normalize == "minmax":
        pixels = truncate_8bit(pixels)  # exactly the Kaggle recipe's 8-bit image
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
        pixel_spacing=spacing(ds),
        modality=text(ds, "Modality"),
        view_position=text(ds, "ViewPosition"),
        body_part=text(ds, "BodyPartExamined"),
        flags=flags,
        phi=phi(ds),
        dataset=ds,
    )
