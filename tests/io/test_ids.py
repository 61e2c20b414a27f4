"""Image ids: the file name with only a known extension removed; duplicates are a typed error."""

from __future__ import annotations

import pickle
from pathlib import Path, PurePosixPath

import pytest

from thoracic.errors import DuplicateImageIdError, ThoracicError
from thoracic.io import KNOWN_EXTENSIONS, check_unique_ids, image_id, read

CASES = [
    # VinDr-CXR / Kaggle: hex names
    ("000434271f63a053c4128a0ba6352c7f.dicom", "000434271f63a053c4128a0ba6352c7f"),
    ("/data/train/000434271f63a053c4128a0ba6352c7f.dicom", "000434271f63a053c4128a0ba6352c7f"),
    # UID-named DICOMs keep their dots
    (
        "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819",
    ),
    ("1.2.840.113619.2.55.3.604688", "1.2.840.113619.2.55.3.604688"),
    ("studies/1.2.840.113619.2.55.3.604688", "1.2.840.113619.2.55.3.604688"),
    # every known extension, in any case
    ("scan.dcm", "scan"),
    ("scan.DCM", "scan"),
    ("scan.Dicom", "scan"),
    ("scan.DICOM", "scan"),
    ("scan.png", "scan"),
    ("scan.PNG", "scan"),
    ("scan.jpg", "scan"),
    ("scan.JPG", "scan"),
    ("scan.jpeg", "scan"),
    ("scan.Jpeg", "scan"),
    ("scan.tif", "scan"),
    ("scan.tiff", "scan"),
    ("scan.TIFF", "scan"),
    # NIH names
    ("images_001/00000377_004.png", "00000377_004"),
    # only one extension, only a known one
    ("scan.dcm.dcm", "scan.dcm"),
    ("scan.png.dcm", "scan.png"),
    ("scan.dcm.gz", "scan.dcm.gz"),
    ("notes.txt", "notes.txt"),
    ("scan.nii", "scan.nii"),
    ("scan.dcm2", "scan.dcm2"),
    ("scan", "scan"),
    ("IM0001", "IM0001"),
    # a dotfile is a name, not an extension
    (".dcm", ".dcm"),
    # folders: only the file name counts, dots in folders do not matter
    ("a.b/c.d/scan.png", "scan"),
    ("/abs/path.with.dots/1.2.3.dcm", "1.2.3"),
    ("relative/folder/", "folder"),
]


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_image_id(path: str, expected: str) -> None:
    assert image_id(path) == expected
    assert image_id(Path(path)) == expected
    assert image_id(PurePosixPath(path)) == expected


def test_known_extensions() -> None:
    assert set(KNOWN_EXTENSIONS) == {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
    assert all(ext == ext.lower() and ext.startswith(".") for ext in KNOWN_EXTENSIONS)


def test_read_uses_the_image_id(tmp_path: Path) -> None:
    from io_helpers import fixture_path

    target = tmp_path / "1.2.840.113619.2.55.3.604688.DCM"
    target.write_bytes(Path(fixture_path("nih_dx_implicit_le.dcm")).read_bytes())
    assert read(target).image_id == "1.2.840.113619.2.55.3.604688"


def test_unique_ids_map_to_their_paths() -> None:
    paths = ["a/1.2.3.dcm", "a/1.2.4.dcm", "b/scan.png", Path("c/scan.dcm.gz")]
    assert check_unique_ids(paths) == {
        "1.2.3": "a/1.2.3.dcm",
        "1.2.4": "a/1.2.4.dcm",
        "scan": "b/scan.png",
        "scan.dcm.gz": "c/scan.dcm.gz",
    }
    assert check_unique_ids([]) == {}
    assert check_unique_ids(iter(["x.png"])) == {"x": "x.png"}  # any iterable, read once


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("train/abc.dicom", "test/abc.dicom"),  # same name in two folders
        ("abc.png", "abc.dcm"),  # same stem, two formats
        ("abc.PNG", "abc.png"),  # case of the extension
        ("1.2.3.dcm", "1.2.3"),  # with and without the extension
        ("same.dcm", "same.dcm"),  # one path given twice
    ],
)
def test_duplicate_ids_name_both_paths(first: str, second: str) -> None:
    with pytest.raises(DuplicateImageIdError) as info:
        check_unique_ids(["other.dcm", first, "more.png", second])
    err = info.value
    assert isinstance(err, ThoracicError) and isinstance(err, ValueError)
    text = str(err)
    assert first in text and second in text
    assert repr(image_id(first)) in text
    assert "rename" in text  # says what to do
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is DuplicateImageIdError and str(clone) == text
