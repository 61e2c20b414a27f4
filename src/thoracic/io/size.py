"""The size of an image file from its header alone, without decoding a pixel.

DICOM: ``Columns`` x ``Rows`` (pydicom with ``stop_before_pixels``); PNG, JPEG, TIFF: the size in
the header as Pillow reads it before decoding. This is the size :func:`thoracic.io.read` reports
as ``original_width`` x ``original_height``, the pixels boxes are drawn in.
"""

from __future__ import annotations

import os
from os import PathLike
from typing import BinaryIO

from thoracic._warnings import quiet
from thoracic.errors import CorruptFileError, ReadError, UnsupportedFormatError
from thoracic.io.dicom.preamble import looks_like_dicom
from thoracic.io.raster import looks_like_raster

__all__ = ["image_size"]


def image_size(path: str | PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only.

    Raises
    ------
    ReadError
        The file cannot be opened or read.
    UnsupportedFormatError
        Neither DICOM nor PNG/JPEG/TIFF.
    CorruptFileError
        The header is damaged, or a DICOM has no valid ``Rows``/``Columns``.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
            fh.seek(0)
            if not head:
                raise UnsupportedFormatError("the file is empty", path=p)
            if looks_like_raster(head):
                return _raster_size(fh, p)
            return _dicom_size(fh, p, preamble=looks_like_dicom(head))
    except FileNotFoundError as err:
        raise ReadError("no such file", path=p) from err
    except IsADirectoryError as err:
        raise ReadError("is a folder, not a file", path=p) from err
    except OSError as err:
        if isinstance(err, ReadError):
            raise
        raise ReadError(f"cannot be read ({err.strerror or err})", path=p) from err


def _raster_size(fh: BinaryIO, path: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with quiet(), Image.open(fh) as im:  # opening parses the header; pixels are decoded on load()
            width, height = im.size
    except Exception as err:
        raise CorruptFileError(f"the image header cannot be read ({type(err).__name__})", path=path) from err
    return int(width), int(height)


def _dicom_size(fh: BinaryIO, path: str, *, preamble: bool) -> tuple[int, int]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with quiet():
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=not preamble)
            rows, cols = ds.get("Rows"), ds.get("Columns")
    except InvalidDicomError as err:
        raise UnsupportedFormatError("not a DICOM file nor a PNG/JPEG/TIFF image", path=path) from err
    except Exception as err:
        raise CorruptFileError(
            f"the DICOM header cannot be parsed ({type(err).__name__}); the file is damaged or truncated", path=path
        ) from err
    if rows is None and cols is None and not preamble:
        raise UnsupportedFormatError("not a DICOM file nor a PNG/JPEG/TIFF image", path=path)
    try:
        width, height = int(cols), int(rows)
    except (TypeError, ValueError) as err:
        raise CorruptFileError("the DICOM has no valid Rows/Columns", path=path) from err
    if width < 1 or height < 1:
        raise CorruptFileError(f"the DICOM declares an empty image ({width}x{height})", path=path)
    return width, height
