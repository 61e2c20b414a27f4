"""Helpers of the DICOM output tests: a PHI-laden radiograph built in the test, an analysis of it
with known boxes, dciodvfy, and reading the result objects back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "src" / "thoracic" / "samples"
DATA = ROOT / "tests" / "data"

#: Identifying values of the built radiograph: none may survive de-identification.
PHI = {
    "PatientName": "Doe^Jane^Quincy",
    "PatientID": "PID-31415926",
    "PatientBirthDate": "19421107",
    "AccessionNumber": "ACC-2718281",
    "InstitutionName": "Saint Nowhere General",
    "InstitutionAddress": "42 Elm Street Springfield",
    "ReferringPhysicianName": "House^Gregory",
    "OtherPatientIDs": "OTHER-1618033",
    "PatientAddress": "7 Privet Drive Little Whinging",
    "StationName": "XRAYROOM-ZETA",
    "OperatorsName": "Tech^Tina",
    "StudyID": "STUDY-5772156",
    "ImageComments": "phone Dr Quackenbush re Jane",
    "PatientTelephoneNumbers": "555-0199-8765",
}
PRIVATE_VALUE = "PRIVATE-SECRET-6626070"
#: Distinctive fragments that must not appear in any de-identified byte: every full value and
#: the parts of names, addresses and numbers.
PHI_FRAGMENTS = (
    *PHI.values(), PRIVATE_VALUE, "SEQ-ID-9999271", "NESTED-SECRET-4669201",
    "Quincy", "Gregory", "Quackenbush", "Nowhere", "Springfield", "Privet", "Whinging", "ZETA",
    "31415926", "19421107", "2718281", "1618033", "6626070", "5772156", "9999271", "0199-8765",
    "HOSPITALPACS",
)

STUDY_UID = "1.2.40.0.13.1.8675309.11"
SERIES_UID = "1.2.40.0.13.1.8675309.12"
SOP_UID = "1.2.40.0.13.1.8675309.13"
FOR_UID = "1.2.40.0.13.1.8675309.14"
SOURCE_REF_UID = "1.2.40.0.13.1.8675309.15"
ORIGINAL_UIDS = (STUDY_UID, SERIES_UID, SOP_UID, FOR_UID, SOURCE_REF_UID)
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
WIDTH, HEIGHT = 240, 200


def phi_radiograph(path: Path) -> Path:
    """Write a small 12-bit CR chest radiograph full of identifying data (and return its path)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = SOP_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "HOSPITALPACS"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = SOP_UID
    ds.StudyInstanceUID = STUDY_UID
    ds.SeriesInstanceUID = SERIES_UID
    ds.FrameOfReferenceUID = FOR_UID
    ds.StudyDate, ds.StudyTime = "20240229", "101112"
    ds.SeriesDate, ds.ContentDate, ds.ContentTime = "20240229", "20240229", "101113"
    ds.AcquisitionDate = "20240229"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.Manufacturer = "Acme"
    ds.PatientSex = "F"
    ds.PatientAge = "081Y"
    ds.StudyDescription = "Chest PA for Jane Quincy"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    other = Dataset()
    other.PatientID = "SEQ-ID-9999271"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CR_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = SOURCE_REF_UID
    nested = ref.private_block(0x0031, "ACME NESTED", create=True)
    nested.add_new(0x01, "LO", "NESTED-SECRET-4669201")
    ds.SourceImageSequence = Sequence([ref])
    block = ds.private_block(0x0029, "ACME PHI", create=True)
    block.add_new(0x10, "LO", PRIVATE_VALUE)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = HEIGHT, WIDTH
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.5, 0.5]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = ((xx * 7 + yy * 13) % 4096).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


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


def require_tool(name: str, package: str) -> str:
    """The path of a command-line tool: skip the test without it, but fail in CI (CI=true)."""
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} (Debian {package}) is required in CI but is not installed")
        pytest.skip(f"{name} (Debian {package}) is not installed")
    return exe


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
