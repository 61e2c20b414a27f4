"""Image ids: the one rule that names every image in every output of thoracic."""

from __future__ import annotations

import os
from collections.abc import Iterable
from os import PathLike

from thoracic.errors import DuplicateImageIdError

__all__ = ["KNOWN_EXTENSIONS", "check_unique_ids", "image_id"]

#: Extensions stripped from a file name to make its id (compared case-insensitively).
KNOWN_EXTENSIONS = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


def image_id(path: str | PathLike[str]) -> str:
    """The id of an image file: its name with only a known extension removed.

    UID-named DICOMs keep their dots; unknown extensions are kept.

    >>> image_id("/data/train/000434271f63a053c4128a0ba6352c7f.dicom")
    '000434271f63a053c4128a0ba6352c7f'
    >>> image_id("1.2.840.113619.2.55.3.604688.dcm")
    '1.2.840.113619.2.55.3.604688'
    >>> image_id("1.2.840.113619.2.55.3.604688")
    '1.2.840.113619.2.55.3.604688'
    >>> image_id("scan.PNG"), image_id("notes.txt")
    ('scan', 'notes.txt')
    """
    name = os.path.basename(os.fspath(path).rstrip("/\\"))
    root, ext = os.path.splitext(name)
    if ext.lower() in KNOWN_EXTENSIONS and root:
        return root
    return name


def check_unique_ids(paths: Iterable[str | PathLike[str]]) -> dict[str, str]:
    """Map ``image_id -> path`` for the inputs of one run; two paths with one id are an error.

    Raises
    ------
    DuplicateImageIdError
        Naming both paths: their outputs would overwrite each other.
    """
    seen: dict[str, str] = {}
    for p in paths:
        key = image_id(p)
        if key in seen:
            raise DuplicateImageIdError(
                f"two inputs have the image id {key!r}: {seen[key]} and {os.fspath(p)}; "
                "rename one of them or process them in separate runs"
            )
        seen[key] = os.fspath(p)
    return seen
