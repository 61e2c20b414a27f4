"""Data sets and annotations: the label schema, loaders, fusion of readers, export, splits."""

from .annotations import Annotations, ImageInfo, Problem
from .labels import (
    CLASS_IDS,
    FINDINGS,
    LABELS,
    NIH_TO_VINDR,
    NO_FINDING,
    NO_FINDING_BOX,
    NO_FINDING_ID,
    class_id,
    class_name,
    nih_to_vindr,
)

__all__ = [
    "Annotations",
    "CLASS_IDS",
    "FINDINGS",
    "ImageInfo",
    "LABELS",
    "NIH_TO_VINDR",
    "NO_FINDING",
    "NO_FINDING_BOX",
    "NO_FINDING_ID",
    "Problem",
    "class_id",
    "class_name",
    "nih_to_vindr",
]
