"""Batch commands over files and folders: each input once, all cores, resumable, crash-isolated.

- :mod:`.convert`: ``thoracic convert`` (8-bit PNGs through a chain, with a manifest);
- :mod:`.segment`: ``thoracic segment`` (lung masks, overlays, ``masks.csv``);
- :mod:`.export`: ``thoracic dataset export`` (YOLO / COCO training sets);
- :mod:`.pool`: the crash-isolated process pool they share.
"""

from thoracic.batch.convert import ConvertOptions, ConvertResult, ConvertSummary, convert, convert_chain
from thoracic.batch.export import (
    EXPORT_FORMATS,
    ExportOptions,
    ExportSummary,
    export_dataset,
    read_export_manifest,
    yolo_names_yaml,
)
from thoracic.batch.segment import MASK_COLUMNS, SegmentOptions, SegmentResult, SegmentSummary, segment_files

__all__ = [
    "EXPORT_FORMATS",
    "MASK_COLUMNS",
    "ConvertOptions",
    "ConvertResult",
    "ConvertSummary",
    "ExportOptions",
    "ExportSummary",
    "SegmentOptions",
    "SegmentResult",
    "SegmentSummary",
    "convert",
    "convert_chain",
    "export_dataset",
    "read_export_manifest",
    "segment_files",
    "yolo_names_yaml",
]
