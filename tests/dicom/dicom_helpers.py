"""Helpers of the DICOM output tests: an analysis with known boxes of the PHI-laden radiograph
(``helpers.phi_radiograph``), dciodvfy, and reading the result objects back.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from helpers import HEIGHT, WIDTH, require_tool
from pydicom.dataset import Dataset


def lung_mask() -> np.ndarray:
    """Two rectangles of "lung" on the built radiograph (uint8 0/255, HEIGHT x WIDTH)."""
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[40:170, 30:105] = 255
    mask[40:170, 135:210] = 255
    return mask


#: Known boxes of the built analysis: (label, score, xyxy).
BOXES = (
    ("Cardiomegaly", 0.91, (80.25, 100.5, 170.75, 160.0)),
    ("Pleural effusion", 0.42, (20.0, 120.0, 90.0, 190.0)),
    ("Nodule/Mass", 0.05, (150.0, 60.0, 170.0, 80.0)),  # below the default min_score
    ("Pneumothorax", 0.33, (-5.0, 10.0, 60.0, 70.0)),  # starts left of the image: clipped to 0
)


def built_analysis(path: Path, boxes=BOXES, *, lungs: bool = True, p_abnormal: float | None = 0.87):
    """An :class:`~thoracic.inference.analyzer.Analysis` of the built radiograph with the known ``boxes``."""
    from thoracic.anatomy import LungMask, LungRoi
    from thoracic.detect.types import Detections
    from thoracic.inference.analyzer import Analysis
    from thoracic.inference.predictor import ImagePrediction, ModelInfo
    from thoracic.io import read
    from thoracic.labels import CLASS_IDS

    rg = read(path)
    det = Detections(
        np.array([b for _, _, b in boxes], np.float32).reshape(-1, 4),
        np.array([s for _, s, _ in boxes], np.float32),
        np.array([CLASS_IDS[label] for label, _, _ in boxes], np.int64),
        (WIDTH, HEIGHT),
    )
    pred = ImagePrediction(rg.image_id, det, p_abnormal, 1.0 - (p_abnormal or 0.0))
    mask = None
    if lungs:
        m = lung_mask()
        mask = LungMask(rg.image_id, m, LungRoi((20, 0, 220, 200), (WIDTH, HEIGHT), 0.4), 2)
    models = (
        ModelInfo("detector", "detector", "detector.onnx", "ab" * 32),
        ModelInfo("classifier", "classifier", "classifier.onnx", "cd" * 32),
        ModelInfo("lungs", "lungs", "lungs.onnx", "ef" * 32),
    )
    return Analysis(rg.image_id, rg, pred, lungs=mask, models=models)


def dciodvfy_lines(path: Path) -> list[str]:
    """What dciodvfy prints for a file, line by line (skip without dciodvfy, fail in CI)."""
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
    return (proc.stdout + proc.stderr).splitlines()


def dciodvfy_errors(path: Path) -> list[str]:
    """The "Error" lines dciodvfy prints for a file."""
    return [line for line in dciodvfy_lines(path) if line.startswith("Error")]


#: The dciodvfy warnings docs/clinic/dicom.md explains (empty type 2 study attributes).
EXPLAINED_WARNING = "Warning - Missing attribute or value that would be needed to build DICOMDIR - Study "


def dciodvfy_unexplained(path: Path) -> list[str]:
    """Errors and the warnings that docs/clinic/dicom.md does not explain."""
    return [line for line in dciodvfy_lines(path)
            if line.startswith(("Error", "Warning")) and not line.startswith(EXPLAINED_WARNING)]


def read_back(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def sr_findings(ds: Dataset) -> list[dict]:
    """The findings of a thoracic SR read back with highdicom: label code, score, polyline, reference."""
    import highdicom as hd

    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    out = []
    for group in sr.content.get_planar_roi_measurement_groups():
        roi = group.roi
        score = [m for m in group.get_measurements() if m.name.value == "111012"]
        out.append({
            "finding": (group.finding_type.scheme_designator, group.finding_type.value),
            "meaning": group.finding_type.meaning,
            "score": float(score[0].value) if score else None,
            "points": np.asarray(roi.value, dtype=np.float64),
            "graphic_type": roi.graphic_type.value,
            "referenced": roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
        })
    return out


def all_text(ds: Dataset) -> str:
    """Every value of a dataset and its sequences, untruncated, one per line."""
    return "\n".join(str(elem.value) for elem in ds.iterall() if elem.VR != "SQ")
