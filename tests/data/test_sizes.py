"""Image sizes read from the files' headers, and the cache that spares a second run the reading."""

from __future__ import annotations

import os

from helpers import vindr_standin

from thoracic.data import header_sizes
from thoracic.data.sizes import size_cache_paths
from thoracic.data.tables import find_images
from thoracic.io import read


def test_sizes_from_headers_then_from_the_cache(tmp_path):
    vindr_standin(tmp_path, 6, big=1)
    folder = tmp_path / "train"
    sources = find_images(folder)
    first = header_sizes(sources, folder)
    assert (first.read, first.cached, first.problems) == (6, 0, [])
    assert first.cache == tmp_path / ".thoracic-sizes-train.csv" == size_cache_paths(folder)[0]
    for iid, path in sources.items():
        rg = read(path)
        assert first.sizes[iid] == (rg.original_width, rg.original_height)
    second = header_sizes(sources, folder)
    assert (second.read, second.cached, second.sizes) == (0, 6, first.sizes)
    # a replaced file (another modification time) is read again; the others still come from the cache
    changed = min(sources.values())
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = header_sizes(sources, folder)
    assert (third.read, third.cached, third.sizes) == (1, 5, first.sizes)
    assert header_sizes(sources, folder, cache=False).read == 6


def test_cache_in_the_user_cache_dir_when_beside_cannot_be_written(tmp_path, monkeypatch):
    vindr_standin(tmp_path / "ds", 2)
    folder = tmp_path / "ds" / "train"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    beside, user = size_cache_paths(folder)
    beside.mkdir()  # the cache's name is taken by a folder: it cannot be written there
    scan = header_sizes(find_images(folder), folder)
    assert scan.cache == user and user.is_file() and str(user).startswith(str(tmp_path / "xdg" / "thoracic" / "sizes"))
    again = header_sizes(find_images(folder), folder)
    assert (again.read, again.cached) == (0, 2)


def test_unreadable_files_are_problems(tmp_path):
    vindr_standin(tmp_path, 2)
    folder = tmp_path / "train"
    bad = folder / "broken.dicom"
    bad.write_bytes(b"not a dicom")
    scan = header_sizes(find_images(folder), folder)
    assert len(scan.sizes) == 2
    [p] = scan.problems
    assert p.image_id == "broken" and p.kind == "unreadable image" and "cannot read the image size" in str(p)
