"""``thoracic segment``: masks, overlays, crops and the table; resume; segmentation without torch."""

import argparse
import csv
import json
import shutil
import textwrap

import cv2
import numpy as np
import pytest
from helpers import SAMPLES, TORCH, run_without

from thoracic.batch.segment import MASK_COLUMNS
from thoracic.cli import segment as segment_cli
from thoracic.cli import train as train_cli
from thoracic.errors import ConfigError


def run(*argv):
    parser = argparse.ArgumentParser(prog="thoracic")
    sub = parser.add_subparsers(dest="command")
    segment_cli.add_parser(sub)
    train_cli.add_parser(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("00000377_004.jpg", "siim_cr_jpeg_baseline.dcm"):
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    return folder


def read_table(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_segment_writes_masks_overlays_crops_and_table(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    assert run("segment", str(inputs), "--out", str(out), "--overlays", "--crops", "--size", "128", "-q") == 1
    columns, rows = read_table(out / "masks.csv")
    assert tuple(columns) == MASK_COLUMNS
    assert columns == ["image_id", "status", "error", "width", "height", "lung_fraction",
                       "roi_x_min", "roi_y_min", "roi_x_max", "roi_y_max", "fallback", "flags"]
    by_id = {r["image_id"]: r for r in rows}
    assert by_id["broken"]["status"] == "failed" and by_id["broken"]["error"]
    for image_id in ("00000377_004", "siim_cr_jpeg_baseline"):
        row = by_id[image_id]
        assert row["status"] == "ok" and row["fallback"] == "" and row["flags"] == ""
        mask = cv2.imread(str(out / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (int(row["height"]), int(row["width"])) and mask.dtype == np.uint8
        assert set(np.unique(mask)) == {0, 255}
        assert float(row["lung_fraction"]) == pytest.approx((mask > 0).mean(), abs=1e-4)
        assert int(row["roi_x_max"]) - int(row["roi_x_min"]) == int(row["roi_y_max"]) - int(row["roi_y_min"])
        assert cv2.imread(str(out / "overlays" / f"{image_id}.png")).ndim == 3
        assert cv2.imread(str(out / "crops" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED).shape == (128, 128)
    settings = json.loads((out / "segment.json").read_text())
    assert settings["contract"]["name"] == "lungs"
    assert "failed" in capsys.readouterr().out


def test_segment_resumes_and_refuses_other_settings(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    (inputs / "broken.dcm").unlink()
    assert run("segment", str(inputs), "--out", str(out), "-q") == 0
    before = (out / "masks" / "00000377_004.png").stat().st_mtime_ns
    assert run("segment", str(inputs), "--out", str(out), "-q") == 0
    assert "2 already done" in capsys.readouterr().out
    assert (out / "masks" / "00000377_004.png").stat().st_mtime_ns == before
    _, rows = read_table(out / "masks.csv")
    assert len(rows) == 2
    with pytest.raises(ConfigError, match="other settings"):
        run("segment", str(inputs), "--out", str(out), "--margin", "0.2", "-q")


def test_segmentation_works_without_torch_and_training_names_the_extra(tmp_path):
    script = textwrap.dedent(
        f"""
        import argparse, sys
        from thoracic.anatomy import LungSegmenter, lung_roi_crop
        from thoracic.train.unet import build_unet
        from thoracic.cli import segment, train
        from thoracic.errors import MissingDependencyError
        from thoracic.io import read

        lungs = LungSegmenter.load().segment(read({str(SAMPLES / "00001437_012.jpg")!r}))
        assert lungs.components == 2 and not lungs.fallback
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        segment.add_parser(sub)
        train.add_parser(sub)
        args = parser.parse_args(["segment", {str(SAMPLES / "00000377_004.jpg")!r}, "--out", {str(tmp_path / "o")!r}, "-q"])
        assert args.func(args) == 0
        data = {str(tmp_path)!r}  # an existing folder: --data is checked while parsing
        for call in (lambda: build_unet(), lambda: parser.parse_args(["train", "lungs", "--data", data, "--out", "o"]).func(
                parser.parse_args(["train", "lungs", "--data", data, "--out", "o"]))):
            try:
                call()
            except MissingDependencyError as err:
                assert "thoracic[train]" in str(err), err
            else:
                raise SystemExit("no MissingDependencyError")
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ultralytics"))
        assert not leaked, leaked
        print("OK")
        """
    )
    proc = run_without(TORCH, script, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("OK")


def test_what_is_not_a_chest_film_is_refused_not_failed_unless_allowed(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "00000377_004.jpg", folder / "film.jpg")
    film = cv2.imread(str(SAMPLES / "00000377_004.jpg"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "turned.png"), np.rot90(film).copy())  # a film turned 90 degrees
    yy, xx = np.mgrid[0:256, 0:256]
    cv2.imwrite(str(folder / "board.png"), (((yy // 32) + (xx // 32)) % 2 * 255).astype(np.uint8))
    out = tmp_path / "out"
    assert run("segment", str(folder), "--out", str(out), "-q") == 1  # refused counts as failed
    by_id = {r["image_id"]: r for r in read_table(out / "masks.csv")[1]}
    assert by_id["film"]["status"] == "ok"
    for image_id in ("turned", "board"):
        assert by_id[image_id]["status"] == "refused", by_id[image_id]
        assert by_id[image_id]["error"].startswith("NotChestRadiographError")
        assert not (out / "masks" / f"{image_id}.png").exists()
    assert "2 failed (2 refused: not a frontal chest radiograph)" in capsys.readouterr().out
    allowed = tmp_path / "allowed"
    assert run("segment", str(folder), "--out", str(allowed), "--allow-non-chest", "-q") == 0
    by_id = {r["image_id"]: r for r in read_table(allowed / "masks.csv")[1]}
    assert [by_id[i]["status"] for i in ("film", "turned", "board")] == ["ok"] * 3
    assert by_id["film"]["flags"] == "" and all(by_id[i]["flags"].startswith("content:") for i in ("turned", "board"))
