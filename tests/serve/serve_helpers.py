"""Shared helpers of the ``thoracic serve`` tests (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from helpers import require

TOKEN = "test-token-7f3a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: Distinctive identifying values written into the PHI test DICOMs; none may reach a log.
PHI = {
    "PatientName": "Zyxwvut^Quentinella",
    "PatientID": "MRN-99812377",
    "PatientBirthDate": "19230417",
    "AccessionNumber": "ACC-55501234",
    "InstitutionName": "Saint Phineas Hospital",
    "ReferringPhysicianName": "Drquorn^Hieronymus",
    "StudyDescription": "CHEST Zyxwvut private",
}
#: A file name that carries a patient's name, as uploads often do.
PHI_FILENAME = "Zyxwvut_Quentinella_MRN-99812377.dcm"
#: What must never appear in a log: each value and its parts.
PHI_NEEDLES = sorted({v for v in PHI.values()} | {"Zyxwvut", "Quentinella", "99812377", "55501234", "Phineas",
                                                   "Drquorn", "Hieronymus", "19230417"})


def need(module: str):
    """Import a module the serve tests need (the ``serve`` extra): skip without it, fail in CI."""
    return require(module, " (pip install 'thoracic[serve]')")


def server_command() -> list[str]:
    """How to start the server: ``thoracic serve`` (as ``python -m thoracic.cli.main serve``)."""
    import sys

    return [sys.executable, "-m", "thoracic.cli.main", "serve"]


def starlette_test_client():
    """Starlette's TestClient, imported without its warning about httpx (warnings are errors here)."""
    from starlette.exceptions import StarletteDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient
    return TestClient


def dicom_bytes(path: Path, **changes) -> bytes:
    """The file at ``path`` with header attributes changed (pixels untouched), as bytes."""
    import pydicom

    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_pixels(data: bytes) -> np.ndarray:
    """The pixels of a PNG (or any image Pillow reads) given as bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)
