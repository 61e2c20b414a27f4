"""Fixtures of the anatomy tests: the shipped lung model run once on the bundled samples."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "thoracic" / "samples"
SAMPLE_FILES = ("00000377_004.jpg", "00001437_012.jpg", "00001555_002.jpg", "RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm")


@pytest.fixture(scope="session")
def segmenter():
    from thoracic.anatomy import LungSegmenter

    return LungSegmenter.load()


@pytest.fixture(scope="session")
def sample_radiographs():
    from thoracic.io import read

    return {name: read(SAMPLES / name) for name in SAMPLE_FILES}


@pytest.fixture(scope="session")
def sample_masks(segmenter, sample_radiographs):
    return {name: segmenter.segment(rg) for name, rg in sample_radiographs.items()}
