"""Image sizes from headers alone: DICOM Rows/Columns, PNG/JPEG, and what is refused."""

from __future__ import annotations

import pytest
from helpers import SAMPLES, vindr_standin

from thoracic.errors import CorruptFileError, ReadError, UnsupportedFormatError
from thoracic.io import image_size, read


def test_dicom_and_raster_sizes_match_read(tmp_path):
    vindr_standin(tmp_path, 2, big=1)
    for path in [*sorted((tmp_path / "train").glob("*.dicom")), SAMPLES / "00000377_004.jpg", SAMPLES / "RG1_J2KI.dcm"]:
        rg = read(path)
        assert image_size(path) == (rg.original_width, rg.original_height), path.name
    assert (2000, 2000) in {image_size(p) for p in (tmp_path / "train").glob("*.dicom")}


def test_bad_files(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        image_size(tmp_path / "gone.dicom")
    (tmp_path / "empty.dicom").write_bytes(b"")
    with pytest.raises(UnsupportedFormatError, match="empty"):
        image_size(tmp_path / "empty.dicom")
    (tmp_path / "text.dicom").write_bytes(b"hello, not an image at all")
    with pytest.raises(UnsupportedFormatError):
        image_size(tmp_path / "text.dicom")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    with pytest.raises(CorruptFileError, match="header"):
        image_size(tmp_path / "cut.png")
