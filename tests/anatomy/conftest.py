"""Fixtures of the anatomy tests: the shipped lung model run once on the bundled samples
(``segmenter`` and ``sample_radiographs`` are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sample_masks(segmenter, sample_radiographs):
    return {name: segmenter.segment(rg) for name, rg in sample_radiographs.items()}
