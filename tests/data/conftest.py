"""Fixtures of the ``thoracic.data`` tests (``vinbig_csv`` and ``meta_subset`` are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from thoracic.data import load_vinbigdata


@pytest.fixture(scope="session")
def vinbig(vinbig_csv):
    """The real VinBigData table (67,914 rows), without sizes."""
    return load_vinbigdata(vinbig_csv)


@pytest.fixture(scope="session")
def vinbig_subset(vinbig_csv, meta_subset):
    """The real table restricted to the 200 images of the committed size fixture, with sizes."""
    ann = load_vinbigdata(vinbig_csv, meta_subset)
    return ann.select_images(i for i, info in ann.images.items() if info.width)
