"""UIDs as file names (no path traversal) and the hashed replacement UIDs."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from thoracic.dicom import DicomResults, UnsafeUidError, hashed_uid, is_valid_uid, safe_uid_name
from thoracic.errors import ConfigError


@pytest.mark.parametrize(
    "uid",
    ["../../x", "a/b", "", "1" * 65, "1.2.3/../4", "1.2.3\x00", "1.2.3\n", "/etc/passwd", "..", "1..2",
     ".1.2", "1.2.", "1.02.3", "1.2.3 ", "１.２", "C:\\x", None, 1.23],
)
def test_unsafe_uids_are_refused(uid):
    with pytest.raises(UnsafeUidError) as err:
        safe_uid_name(uid)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)
    if isinstance(uid, str) and uid:
        assert uid not in str(err.value)  # the value read from a file is not echoed


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.1", "0", "2.25.0", "1.0.2", "1" * 64,
                                 "2.25.339144744347187405591541563209125452032"])
def test_valid_uids_name_files(uid):
    assert is_valid_uid(uid)
    assert safe_uid_name(uid) == uid + ".dcm"
    assert safe_uid_name(uid, suffix="") == uid


@given(st.text(max_size=80))
def test_any_text_either_is_refused_or_names_a_plain_file(text):
    try:
        name = safe_uid_name(text)
    except UnsafeUidError:
        return
    assert set(name[:-4]) <= set("0123456789.") and "/" not in name and ".." not in name
    assert len(name) <= 68


@given(st.text(min_size=1, max_size=64), st.binary(min_size=1, max_size=32))
def test_hashed_uids_are_valid_and_deterministic(uid, salt):
    out = hashed_uid(uid, salt)
    assert is_valid_uid(out) and out.startswith("2.25.") and len(out) <= 44
    assert hashed_uid(uid, salt) == out
    assert hashed_uid(uid, salt + b"x") != out


def test_save_refuses_a_traversing_uid_and_writes_nothing(tmp_path):
    good, bad = Dataset(), Dataset()
    good.SOPInstanceUID = "1.2.3"
    with warnings.catch_warnings():  # pydicom warns about the invalid UI value: it is the point here
        warnings.simplefilter("ignore")
        bad.SOPInstanceUID = "../../evil"
    with pytest.raises(UnsafeUidError):
        DicomResults(sr=good, gsps=bad).save(tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
    assert not (tmp_path.parent / "evil.dcm").exists()
