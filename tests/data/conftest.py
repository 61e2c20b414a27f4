"""Fixtures of the data-set tests (helpers in ``ds_helpers``)."""

from __future__ import annotations

import pytest
from ds_helpers import META_SUBSET, txv_data

from thoracic.data import load_vinbigdata


@pytest.fixture(scope="session")
def vinbig_csv():
    return txv_data("vinbigdata-train.csv.gz")


@pytest.fixture(scope="session")
def vinbig(vinbig_csv):
    """The real VinBigData table (67,914 rows), without sizes."""
    return load_vinbigdata(vinbig_csv)


@pytest.fixture(scope="session")
def vinbig_subset(vinbig_csv):
    """The real table restricted to the 200 images of the committed size fixture, with sizes."""
    from ds_helpers import META_SUBSET as meta

    ann = load_vinbigdata(vinbig_csv, meta)
    return ann.select_images(i for i, info in ann.images.items() if info.width)


@pytest.fixture(scope="session")
def meta_subset():
    return META_SUBSET
