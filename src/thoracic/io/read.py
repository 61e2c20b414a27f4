"""One entry point that reads any supported radiograph."""

from __future__ import annotations

import dataclasses
import logging
import os
from os import PathLike
from typing import BinaryIO

from thoracic.errors import ReadError, UnsupportedFormatError
from thoracic.io.content import check_content
from thoracic.io.dicom.preamble import looks_like_dicom
from thoracic.io.ids import image_id as _image_id
from thoracic.io.radiograph import Radiograph, ReadConfig
from thoracic.io.raster import looks_like_raster, read_raster

__all__ = ["Source", "read"]

log = logging.getLogger(__name__)

Source = str | PathLike[str] | bytes | bytearray | memoryview | BinaryIO


def _load(src: Source) -> tuple[bytes, str]:
    if isinstance(src, bytes | bytearray | memoryview):
        return bytes(src), "<bytes>"
    if hasattr(src, "read"):
        data = src.read()
        if not isinstance(data, bytes):
            raise TypeError("file objects must be opened in binary mode")
        return data, str(getattr(src, "name", "<stream>"))
    if not isinstance(src, str | PathLike):
        raise TypeError(f"read() takes a path, bytes or a binary file, not {type(src).__name__}")
    path = os.fspath(src)
    try:
        with open(path, "rb") as fh:
            return fh.read(), path
    except IsADirectoryError as err:
        raise ReadError("is a folder, not a file", path=path) from err
    except FileNotFoundError as err:
        raise ReadError("no such file", path=path) from err
    except OSError as err:
        raise ReadError(f"cannot be read ({err.strerror or err})", path=path) from err


def read(src: Source, options: ReadConfig | None = None, *, image_id: str | None = None) -> Radiograph:
    """Read a chest radiograph (DICOM, PNG, JPEG or TIFF) from a path, bytes or a binary file.

    Parameters
    ----------
    src:
        A path, the file's bytes, or a file object opened in binary mode.
    options:
        How to normalize intensities and which inputs to refuse; see :class:`ReadConfig`.
    image_id:
        The id of the result; by default :func:`thoracic.io.image_id` of the path
        (``"image"`` for bytes without a name).

    Returns
    -------
    Radiograph
        ``float32`` pixels in ``[0, 1]``, white = dense, with the file's geometry and metadata.

    Raises
    ------
    thoracic.errors.ReadError
        The file cannot be read or decoded (an :class:`OSError`).
    thoracic.errors.InvalidRadiographError
        It was read but is not a radiograph thoracic analyzes (a :class:`ValueError`); a
        :class:`~thoracic.errors.NotChestRadiographError` when its header or (with
        ``options.check_content``) its pixels say it is not a frontal chest radiograph.
    """
    options = options or ReadConfig()
    data, path = _load(src)
    if image_id is None:
        image_id = "image" if path.startswith("<") else _image_id(path)
    if not data:
        raise UnsupportedFormatError("the file is empty", path=path)
    head = data[:132]
    if looks_like_raster(head) and not looks_like_dicom(head):
        rg = read_raster(data, path, image_id, options)
    else:  # DICOM, with or without the 128-byte preamble (older or hand-made files), or nothing we know
        from thoracic.io.dicom.read import read_dicom  # pydicom is imported with the first DICOM

        rg = read_dicom(data, path, image_id, options)
    if options.check_content:
        content = check_content(rg.pixels, colour=rg.colour, allow=options.allow_non_chest, path=path,
                                reference_size=rg.original_size, keep=True)
        if content:
            rg = dataclasses.replace(rg, flags=(*rg.flags, *content))
    # technical facts only: never anything from rg.phi or the header's patient/study elements
    log.debug("%s: %s %dx%d %s %s, %s (%s)%s", path, rg.format, rg.original_width, rg.original_height,
              rg.modality or "-", rg.photometric, rg.voi, rg.transfer_syntax or "-",
              f" flags {','.join(rg.flags)}" if rg.flags else "")
    return rg
