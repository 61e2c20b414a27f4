import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from thoracic.batch.convert import MANIFEST_COLUMNS, ConvertConfig, convert, convert_chain
from thoracic.cli.main import main
from thoracic.errors import ConfigError, DuplicateImageIdError

EXPECTED_COLUMNS = (
    "source,image_id,status,error,width,height,photometric,transfer_syntax,window_center,window_width,"
    "out_file,out_width,out_height,scale"
).split(",")


def _manifest(out: Path) -> list[dict]:
    with (out / "manifest.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == EXPECTED_COLUMNS
        return list(reader)


@pytest.fixture
def mixed(tmp_path, samples_dir, fixtures_dir):
    """A folder of good files, broken files and a sub-folder."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(samples_dir / "siim_cr_jpeg_baseline.dcm", src)
    shutil.copy(samples_dir / "00000377_004.jpg", src / "sub")
    shutil.copy(fixtures_dir / "nih_dx_implicit_le.dcm", src / "1.2.826.0.1.3680043.8.498.1.dcm")
    good = (fixtures_dir / "nih_dx_implicit_le.dcm").read_bytes()
    (src / "truncated.dcm").write_bytes(good[: len(good) // 3])
    (src / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (src / "notes.bin").write_bytes(b"hello, not an image")
    (src / "README.txt").write_text("ignored: not an image")
    (src / ".hidden.dcm").write_bytes(b"ignored: hidden")
    return src


def test_cli_converts_a_mixed_folder_and_reports_failures(mixed, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["convert", str(mixed), "--out", str(out), "--size", "256", "--workers", "2", "-q"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "3 of 6 input(s) failed" in err
    rows = {r["image_id"]: r for r in _manifest(out)}
    assert set(rows) == {"siim_cr_jpeg_baseline", "00000377_004", "1.2.826.0.1.3680043.8.498.1", "truncated", "noise", "notes.bin"}
    assert {k for k, r in rows.items() if r["status"] == "failed"} == {"truncated", "noise", "notes.bin"}
    assert "CorruptFileError" in rows["truncated"]["error"]
    assert "UnsupportedFormatError" in rows["notes.bin"]["error"]
    ok = rows["1.2.826.0.1.3680043.8.498.1"]
    assert ok["out_file"] == "1.2.826.0.1.3680043.8.498.1.png"
    assert (ok["width"], ok["height"], ok["out_width"], ok["out_height"], ok["scale"]) == ("1024", "1024", "256", "256", "0.25")
    assert ok["photometric"] == "MONOCHROME2" and ok["transfer_syntax"] == "Implicit VR Little Endian"
    img = cv2.imread(str(out / ok["out_file"]), cv2.IMREAD_UNCHANGED)
    assert img.dtype == np.uint8 and img.shape == (256, 256)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(r["out_file"] for r in rows.values() if r["out_file"])


def test_resume_skips_finished_files_and_retries_failed(mixed, tmp_path):
    out = tmp_path / "out"
    options = ConvertConfig(chain=convert_chain(128), workers=1)
    first = convert([mixed], out, options)
    assert (first.converted, first.failed, first.skipped) == (3, 3, 0)
    stamp = (out / "siim_cr_jpeg_baseline.png").stat().st_mtime_ns
    (mixed / "truncated.dcm").unlink()  # fixed by the user: the broken file is gone...
    shutil.copy(mixed / "siim_cr_jpeg_baseline.dcm", mixed / "later.dcm")  # ...and a new one arrived
    second = convert([mixed], out, options)
    assert (second.converted, second.failed, second.skipped) == (1, 2, 3)
    assert (out / "siim_cr_jpeg_baseline.png").stat().st_mtime_ns == stamp  # not rewritten
    rows = _manifest(out)
    assert sorted(r["image_id"] for r in rows) == sorted(
        ["siim_cr_jpeg_baseline", "00000377_004", "1.2.826.0.1.3680043.8.498.1", "later", "noise", "notes.bin"]
    )
    with pytest.raises(ConfigError, match="other settings"):
        convert([mixed], out, ConvertConfig(chain=convert_chain(256), workers=1))


def test_size_keeps_aspect_and_matches_the_manifest(tmp_path, fixtures_dir):
    out = tmp_path / "out"
    rc = main(["convert", str(fixtures_dir / "RG1_JLSN.dcm"), "--out", str(out), "--size", "500", "--normalize", "minmax", "--clahe", "-q"])
    assert rc == 0
    (row,) = _manifest(out)
    assert (row["width"], row["height"], row["out_width"], row["out_height"]) == ("1841", "1955", "471", "500")
    assert row["status"] == "ok" and row["photometric"] == "MONOCHROME1"
    assert float(row["window_center"]) == 15000 and float(row["window_width"]) == 30000
    img = cv2.imread(str(out / row["out_file"]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (500, 471)


def test_no_size_keeps_the_original_size(tmp_path, samples_dir):
    out = tmp_path / "out"
    assert main(["convert", str(samples_dir / "00001555_002.jpg"), "--out", str(out), "-q"]) == 0
    (row,) = _manifest(out)
    assert (row["out_width"], row["out_height"], row["scale"]) == ("1024", "1024", "1.0")
    src = cv2.imread(str(samples_dir / "00001555_002.jpg"), cv2.IMREAD_GRAYSCALE)
    got = cv2.imread(str(out / row["out_file"]), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(got, src)  # an 8-bit image passes through unchanged


def test_duplicate_ids_are_refused_before_any_work(tmp_path, samples_dir, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(samples_dir / "00001555_002.jpg", a)
    shutil.copy(samples_dir / "00001555_002.jpg", b / "00001555_002.JPG")
    out = tmp_path / "out"
    with pytest.raises(DuplicateImageIdError) as info:
        convert([a, b], out)
    assert str(a / "00001555_002.jpg") in str(info.value) and str(b / "00001555_002.JPG") in str(info.value)
    assert not out.exists()
    assert main(["convert", str(a), str(b), "--out", str(out)]) == 2
    assert "two inputs have the image id" in capsys.readouterr().err


def test_lateral_view_needs_the_override_and_is_flagged(tmp_path, samples_dir):
    import pydicom

    ds = pydicom.dcmread(samples_dir / "siim_cr_jpeg_baseline.dcm")
    ds.ViewPosition = "LL"
    src = tmp_path / "lateral.dcm"
    ds.save_as(src)
    assert main(["convert", str(src), "--out", str(tmp_path / "o1"), "-q"]) == 1
    (row,) = _manifest(tmp_path / "o1")
    assert row["status"] == "failed" and "NotChestRadiographError" in row["error"]
    assert main(["convert", str(src), "--out", str(tmp_path / "o2"), "--allow-non-chest", "-q"]) == 0
    (row,) = _manifest(tmp_path / "o2")
    assert row["status"] == "flagged" and "view:LL" in row["error"] and row["out_file"]


def test_manifest_columns_constant():
    assert list(MANIFEST_COLUMNS) == EXPECTED_COLUMNS


def test_bad_flags(tmp_path, samples_dir, capsys):
    assert main(["convert", str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["convert", str(samples_dir), "--out", str(tmp_path / "o"), "--chain", "clahe", "--size", "5"]) == 2
