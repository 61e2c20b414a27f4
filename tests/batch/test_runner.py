"""The machinery every batch command shares: settings file, manifest and resume, atomic writes, crash isolation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import work_or_die

from thoracic.batch.runner import (
    Manifest,
    claim_settings,
    replacing,
    run_isolated,
    settings_differences,
    write_png,
    write_text,
)
from thoracic.errors import ConfigError

COLUMNS = ("image_id", "status", "out_file")


# --- the settings file ----------------------------------------------------------------------------
def test_same_settings_resume_other_settings_are_refused(tmp_path):
    path = tmp_path / "run.json"
    made_with = "a run made with other settings"
    doc = claim_settings(path, {"size": (512, 512), "chain": "a"}, made_with, {"extra": 1})
    assert doc["settings"] == {"size": [512, 512], "chain": "a"} and doc["extra"] == 1 and doc["thoracic_version"]
    claim_settings(path, {"chain": "a", "size": [512, 512]}, "a run made with other settings")  # as read back: equal
    with pytest.raises(ConfigError, match=r"holds a run made with other settings \(see .*run.json\): "
                                          r"chain was 'a', now 'b'; use another --out"):
        claim_settings(path, {"chain": "b", "size": [512, 512]}, "a run made with other settings")
    assert '"chain": "a"' in path.read_text()  # the refused run wrote nothing
    # every difference is named, nested keys dotted; the advice is the caller's
    with pytest.raises(ConfigError, match=r": chain was 'a', now 'c'; size was \[512, 512\], now \[256, 256\]; "
                                          r"tta is new \(true\); start afresh$"):
        claim_settings(path, {"chain": "c", "size": [256, 256], "tta": True}, made_with, advice="start afresh")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        claim_settings(path, {"chain": "a"}, made_with)


def test_settings_differences_name_each_changed_leaf():
    before = {"conf": 0.01, "read": {"normalize": "window", "max_pixels": 64}, "models": ["d 1"], "low": None}
    now = {"conf": 0.01, "read": {"normalize": "minmax", "max_pixels": 64}, "models": ["d 2"], "low": 0.3}
    assert settings_differences(before, now) == [
        "low was null, now 0.3", "models was ['d 1'], now ['d 2']", "read.normalize was 'window', now 'minmax'"]
    assert settings_differences(before, before) == []
    assert settings_differences({"a": 1}, {}) == ["a was 1, now not set"]


# --- the manifest and resume ----------------------------------------------------------------------
def test_resume_keeps_the_done_rows_and_redoes_the_rest(tmp_path):
    manifest = Manifest(tmp_path / "manifest.csv", COLUMNS)
    (tmp_path / "a.png").write_bytes(b"x")
    with manifest.start() as rows:
        rows.write({"image_id": "a", "status": "ok", "out_file": "a.png"})
        rows.write({"image_id": "b", "status": "failed"})  # a missing column is empty
        rows.write({"image_id": "c", "status": "ok", "out_file": "c.png"})  # its file is gone
    items = [(iid, f"task-{iid}") for iid in ("a", "b", "c", "d")]
    keep, todo = manifest.resume(
        items, "image_id", lambda r: r["status"] == "ok" and (tmp_path / r["out_file"]).is_file()
    )
    assert [r["image_id"] for r in keep] == ["a"] and todo == ["task-b", "task-c", "task-d"]
    with manifest.start(keep) as rows:  # the kept rows first, then the new ones
        rows.write({"image_id": "b", "status": "ok", "out_file": "b.png"})
    assert manifest.path.read_text().splitlines() == ["image_id,status,out_file", "a,ok,a.png", "b,ok,b.png"]
    assert set(manifest.read("image_id")) == {"a", "b"}


@pytest.mark.parametrize("torn", ["c,o", 'c,failed,"half a quoted mess', "c,ok,c.png,extra\r\n"])
def test_a_row_torn_by_a_kill_is_dropped_never_half_kept(tmp_path, torn):
    manifest = Manifest(tmp_path / "manifest.csv", COLUMNS)
    with manifest.start([{"image_id": "a", "status": "ok", "out_file": "a.png"}]) as rows:
        rows.write({"image_id": "b", "status": "ok", "out_file": "b.png"})
    with manifest.path.open("a", newline="") as fh:
        fh.write(torn)
    assert [r["image_id"] for r in manifest.rows()] == ["a", "b"]
    keep, todo = manifest.resume([("a", "a"), ("b", "b"), ("c", "c")], "image_id", lambda r: r["status"] == "ok")
    assert len(keep) == 2 and todo == ["c"]


def test_no_manifest_is_an_empty_one(tmp_path):
    manifest = Manifest(tmp_path / "none.csv", COLUMNS)
    assert manifest.rows() == [] and manifest.read("image_id") == {}
    assert manifest.resume([("a", 1)], "image_id", lambda r: True) == ([], [1])


# --- atomic writes --------------------------------------------------------------------------------
def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half of the n")
        raise RuntimeError("crash")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_process_killed_while_writing_leaves_the_old_file(tmp_path):
    path = tmp_path / "manifest.csv"
    Manifest(path, COLUMNS).rewrite([{"image_id": "a", "status": "ok", "out_file": "a.png"}])
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import os
        from thoracic.batch.runner import replacing
        with replacing({str(path)!r}) as tmp:
            with tmp.open("w") as fh:
                fh.write("image_id,status,out_file\\n" + "x,ok,x.png\\n" * 1000)
            os._exit(9)  # killed before the rename
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    assert path.read_bytes() == before
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert leftovers and all(name.startswith(".") for name in leftovers)  # hidden: never taken for an input


def test_write_png_writes_the_image_or_raises(tmp_path):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_png(tmp_path / "a.png", img, compression=9)
    import cv2

    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED), img)
    with pytest.raises(OSError, match="cannot write"):
        write_png(tmp_path / "missing" / "b.png", img)


def test_write_png_text_chunks_leave_the_pixels_and_are_read_back(tmp_path):
    import cv2
    from PIL import Image

    img = (np.arange(30 * 40) % 251).astype(np.uint8).reshape(30, 40)
    write_png(tmp_path / "t.png", img, compression=3, text={"thoracic-chain": '{"name": "x", "spec": "clahe()"}'})
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "t.png"), cv2.IMREAD_UNCHANGED), img)
    with Image.open(tmp_path / "t.png") as im:
        im.load()  # every chunk's CRC checked
        assert im.info["thoracic-chain"] == '{"name": "x", "spec": "clahe()"}'
    with pytest.raises(OSError, match="cannot write"):
        write_png(tmp_path / "missing" / "c.png", img, text={"k": "v"})


# --- crash isolation ------------------------------------------------------------------------------
def _crashed(task: tuple) -> int:
    return -task[0]


def test_a_crashing_input_fails_alone_with_one_worker_per_core(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert sorted(run_isolated(work_or_die, [(i,) for i in range(6)], 0, _crashed)) == [-3, 0, 10, 20, 40, 50]
