"""Batch commands over files and folders: each input once, all cores, resumable, crash-isolated.

- :mod:`.convert`: ``thoracic convert`` (8-bit PNGs through a chain, with a manifest);
- :mod:`.segment`: ``thoracic segment`` (lung masks, overlays, ``masks.csv``);
- :mod:`.export`: ``thoracic dataset export`` (YOLO / COCO training sets);
- :mod:`.predictions`: the files of ``thoracic predict`` (``preds.csv`` and its sidecar, resumable);
- :mod:`.deidentify`: ``thoracic deidentify`` (de-identified DICOM copies, ``deidentify.csv``);
- :mod:`.runner`: what they share: the settings file, the manifest, atomic writes, the
  crash-isolated process pool.
"""

from thoracic.batch.convert import ConvertConfig, ConvertResult, ConvertSummary, convert, convert_chain
from thoracic.batch.deidentify import DeidentifyConfig, DeidentifyResult, DeidentifySummary, deidentify_files
from thoracic.batch.export import (
    EXPORT_FORMATS,
    ExportConfig,
    ExportSummary,
    export_dataset,
    read_export_manifest,
    yolo_names_yaml,
)
from thoracic.batch.predictions import PredictionCsv
from thoracic.batch.segment import MASK_COLUMNS, SegmentConfig, SegmentResult, SegmentSummary, segment_files

__all__ = [
    "EXPORT_FORMATS",
    "MASK_COLUMNS",
    "ConvertConfig",
    "ConvertResult",
    "ConvertSummary",
    "DeidentifyConfig",
    "DeidentifyResult",
    "DeidentifySummary",
    "ExportConfig",
    "ExportSummary",
    "PredictionCsv",
    "SegmentConfig",
    "SegmentResult",
    "SegmentSummary",
    "convert",
    "convert_chain",
    "deidentify_files",
    "export_dataset",
    "read_export_manifest",
    "segment_files",
    "yolo_names_yaml",
]
