"""Fixtures of the io tests (the helpers live in ``io_helpers`` and ``helpers``)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import SAMPLES


@pytest.fixture(scope="session")
def chest_pixels() -> np.ndarray:
    """A small, non-square, non-symmetric 8-bit crop of a real chest film (rows x columns)."""
    from PIL import Image

    with Image.open(SAMPLES / "00000377_004.jpg") as im:
        arr = np.asarray(im.convert("L"))
    crop = np.ascontiguousarray(arr[200:520:2, 300:780:2])  # 160 x 240
    crop.flags.writeable = False
    return crop
