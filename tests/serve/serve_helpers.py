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


def phi_needles(dicom: bytes) -> list[str]:
    """:data:`PHI_NEEDLES` and the UIDs of ``dicom`` (identifiers too): none may reach a log."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom), stop_before_pixels=True)
    uids = [str(ds[k].value) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")]
    return [*PHI_NEEDLES, *uids]


def need(module: str):
    """Import a module the serve tests need (the ``serve`` extra): skip without it, fail in CI."""
    return require(module, " (pip install 'thoracic[serve]')")


def server_command() -> list[str]:
    """How to start the server: ``thoracic serve`` (as ``python -m thoracic.cli.main serve``)."""
    import sys

    return [sys.executable, "-m", "thoracic.cli.main", "serve"]


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chrome(require, tmp_path: Path, monkeypatch, *extra: str):
    """Headless Chromium under Selenium (its own profile in ``tmp_path``), ``extra`` flags added."""
    import os

    import pytest

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)")
        pytest.skip("chromium/chromedriver are not installed")
    webdriver = require("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,860", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'chrome'}",
                "--no-first-run", "--disable-extensions", "--disable-background-networking", *extra):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))


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


def wait_until_healthy(url: str, proc, log: Path, verify=True, timeout: float = 120) -> None:
    """Poll ``url``/health until it answers 200; fail with the server's log if it exits or times out."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=2, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the server did not start; log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(proc) -> None:
    """Terminate a server process (kill it if it does not exit within 15 s) and close its stdout."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    proc.stdout.close()
