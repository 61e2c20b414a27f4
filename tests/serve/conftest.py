"""Fixtures of the ``thoracic serve`` tests: in-process clients of the real analyzer (``analyzer``,
loaded once, is in tests/conftest.py) and images built from the bundled samples (helpers in
``serve_helpers``). ``chest_png`` here is the PNG's bytes (tests/conftest.py's is a path)."""

from __future__ import annotations

import io

import pytest
from helpers import SAMPLES
from serve_helpers import PHI, TOKEN, dicom_bytes, need, starlette_test_client


@pytest.fixture
def make_client(analyzer):
    """``make_client(**settings)`` -> an in-process client of a fresh app (closed after the test)."""
    need("fastapi")
    from thoracic.serve import ServeConfig, create_app

    clients = []

    def make(analyzer_=None, **kwargs):
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("max_upload_mb", 1.0)
        app = create_app(ServeConfig(**kwargs), analyzer=analyzer_ or analyzer)
        client = starlette_test_client()(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture(scope="session")
def cr_dicom() -> bytes:
    """A real chest CR (JPEG baseline, 127 kB)."""
    return (SAMPLES / "siim_cr_jpeg_baseline.dcm").read_bytes()


@pytest.fixture(scope="session")
def phi_dicom() -> bytes:
    """The CR sample with distinctive identifying values in its header."""
    return dicom_bytes(SAMPLES / "siim_cr_jpeg_baseline.dcm", **PHI)


@pytest.fixture(scope="session")
def chest_png() -> bytes:
    """A real chest film (an NIH sample) as 8-bit PNG."""
    from PIL import Image

    with Image.open(SAMPLES / "00000377_004.jpg") as im:
        buf = io.BytesIO()
        im.convert("L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def chest_jpeg() -> bytes:
    return (SAMPLES / "00000377_004.jpg").read_bytes()
