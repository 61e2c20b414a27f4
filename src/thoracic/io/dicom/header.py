"""Single values from a DICOM header, typed: a damaged number is a :class:`CorruptFileError`."""

from __future__ import annotations

import math
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from thoracic.errors import CorruptFileError

__all__ = ["PHI_KEYWORDS", "first", "number", "phi", "sop_class_name", "spacing", "text"]

#: The identifying elements a radiograph keeps in ``phi`` (never in a message or log).
PHI_KEYWORDS = (
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


def first(value: Any) -> Any:
    """The first value of a multi-valued element (``None`` when it has none), else the value."""
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return value[0] if len(value) else None
    return value


def text(ds: Dataset, keyword: str) -> str:
    """The (first) value as upper-case text without surrounding spaces; ``""`` when absent."""
    value = ds.get(keyword, "")
    return str(first(value) if value is not None else "").strip().upper()


def number(ds: Dataset, keyword: str, default: float, path: str) -> float:
    """A finite decimal attribute (first value), ``default`` when absent or empty."""
    value = first(ds.get(keyword))
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise CorruptFileError(f"the DICOM's {keyword} is not a number; the header is damaged", path=path) from err
    if not math.isfinite(out):
        raise CorruptFileError(f"the DICOM's {keyword} is {out}; the header is damaged", path=path)
    return out


def spacing(ds: Dataset) -> tuple[float, float] | None:
    """``(row, column)`` pixel spacing in mm (Pixel Spacing, else Imager Pixel Spacing), if valid."""
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


def sop_class_name(ds: Dataset) -> str:
    """The SOP Class UID's name ("" for an unknown or malformed one, without pydicom's warning)."""
    return UID(str(ds.get("SOPClassUID", "")), validation_mode=pydicom.config.IGNORE).name


def phi(ds: Dataset) -> dict[str, str]:
    """The identifying values the header holds (:data:`PHI_KEYWORDS`), as text."""
    return {k: str(ds.get(k)) for k in PHI_KEYWORDS if ds.get(k) not in (None, "")}
