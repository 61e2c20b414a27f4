"""Fixtures of the DICOM output tests: the shipped models run once on the two sample DICOMs."""

from __future__ import annotations

import pytest
from dicom_helpers import built_analysis
from helpers import SAMPLES, phi_radiograph

SAMPLE_DICOMS = ("RG1_J2KI.dcm", "siim_cr_jpeg_baseline.dcm")  # JPEG 2000 and JPEG baseline


@pytest.fixture(scope="session")
def sample_analyses(analyzer):
    """name -> Analysis of each sample DICOM (a few seconds in all)."""
    return {name: analyzer.analyze(SAMPLES / name) for name in SAMPLE_DICOMS}


@pytest.fixture(scope="session")
def phi_file(tmp_path_factory):
    """A small CR radiograph full of identifying data, built in the test."""
    return phi_radiograph(tmp_path_factory.mktemp("phi") / "phi.dcm")


@pytest.fixture(scope="session")
def phi_analysis(phi_file):
    """An analysis of the built radiograph with known boxes and a known lung mask."""
    return built_analysis(phi_file)
