"""Finding the inputs of a batch run: each file once, nothing found an error where asked."""

from __future__ import annotations

import pytest

from thoracic._fs import find_inputs
from thoracic.errors import ConfigError, ThoracicError


def test_a_file_reached_twice_is_listed_once(tmp_path):
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    a, b = scans / "a.png", scans / "sub" / "b.png"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    (scans / "notes.csv").write_text("x")
    (tmp_path / "link").symlink_to(scans)
    found = find_inputs([scans, a, tmp_path / "scans" / "." / "a.png", tmp_path / "link", b])
    assert found == [str(a), str(b)]
    # the same file under another name is another image
    (tmp_path / "c.png").symlink_to(a)
    assert find_inputs([a, tmp_path / "c.png"]) == [str(a), str(tmp_path / "c.png")]


def test_nothing_found(tmp_path):
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("x")
    assert find_inputs([tmp_path]) == []
    with pytest.raises(ConfigError, match=f"no input files found in {tmp_path}"):
        find_inputs([tmp_path], empty_ok=False)
    with pytest.raises(ThoracicError, match="no such file or folder"):
        find_inputs([tmp_path / "missing"], empty_ok=False)
