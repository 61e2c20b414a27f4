"""``thoracic dataset`` in-process, through a parser built with ``add_parser``."""

from __future__ import annotations

import argparse
import csv
import importlib
import shutil

import pytest
from helpers import SAMPLES, read_rows, require, vindr_standin, write

from thoracic.cli.dataset import add_parser
from thoracic.errors import ThoracicError


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thoracic")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ThoracicError:
        return 2


NIH_IMAGES = """
image,patient_id,follow_up,age,sex,view,finding_labels,n_boxes
00000377_004.jpg,377,4,50,M,PA,Cardiomegaly,1
00001437_012.jpg,1437,12,50,F,PA,Effusion,1
00001555_002.jpg,1555,2,50,M,PA,Nodule,1
00009999_000.jpg,9999,0,50,M,PA,No Finding,0
"""


@pytest.fixture
def nih(tmp_path):
    images = tmp_path / "nih" / "images"
    images.mkdir(parents=True)
    for p in SAMPLES.glob("0*.jpg"):
        shutil.copy(p, images / p.name)
    shutil.copy(SAMPLES / "00000377_004.jpg", images / "00009999_000.jpg")
    boxes = "image,finding,x_min,y_min,x_max,y_max\n"
    for line in (SAMPLES / "boxes.csv").read_text().splitlines()[1:]:
        f = line.split(",")
        boxes += f"{f[0]}.jpg,{f[6]},{','.join(f[2:6])}\n"
    return write(tmp_path / "nih" / "images.csv", NIH_IMAGES), write(tmp_path / "nih" / "boxes.csv", boxes)


def test_check_reports_problems(tmp_path, capsys):
    good = write(tmp_path / "t.csv", "image_id,label,x_min,y_min,x_max,y_max\na,ILD,1,1,5,5\n")
    assert run(["dataset", "check", "--csv", str(good)]) == 0
    bad = write(tmp_path / "b.csv", "image_id,label,x_min,y_min,x_max,y_max\na,ILD,1,1,5,5\na,Foo,1,1,5,5\n")
    assert run(["dataset", "check", "--csv", str(bad)]) == 1
    assert "b.csv:3: a: unknown label 'Foo'" in capsys.readouterr().err
    assert run(["dataset", "check"]) == 2  # no input


def test_fuse_and_stats_on_the_real_table(vinbig_csv, meta_subset, tmp_path, capsys):
    assert run(["dataset", "fuse", "--vinbigdata", str(vinbig_csv), "--out", str(tmp_path / "fused.csv")]) == 0
    out = capsys.readouterr().out
    assert "Aortic enlargement" in out and "7162" in out and "3201" in out
    assert (tmp_path / "fused_counts.csv").read_text().splitlines()[1] == "0,Aortic enlargement,7162,3201,3067,3067"
    assert run(["dataset", "stats", "--vinbigdata", str(vinbig_csv), "--meta", str(meta_subset),
                "--out", str(tmp_path / "stats"), "--no-figures"]) == 0
    assert "4394 abnormal" in capsys.readouterr().out


def test_done_when_sequence(nih, tmp_path, capsys):
    """The README's sequence: NIH tables -> folds -> YOLO export with patient-grouped folds."""
    require("iterstrat")
    images_csv, boxes_csv = nih
    assert run(["dataset", "check", "--nih", str(images_csv), str(boxes_csv)]) == 0
    assert run(["dataset", "split", "--nih", str(images_csv), str(boxes_csv), "--folds", "2", "--out", str(tmp_path / "folds.csv")]) == 0
    out = tmp_path / "yolo"
    assert run(["dataset", "export", "--nih", str(images_csv), str(boxes_csv), "--chain", "resize_longest(size=128)",
                "--folds-csv", str(tmp_path / "folds.csv"), "--out", str(out), "-q", "--workers", "1"]) == 0
    assert "4 labelled image(s)" in capsys.readouterr().out
    assert (out / "data_1.yaml").is_file() and len(list((out / "labels").glob("*.txt"))) == 4
    folds = (out / "folds.csv").read_text().splitlines()
    assert folds[0] == "image_id,group,fold" and len(folds) == 5


def test_main_can_wire_it():
    main = importlib.import_module("thoracic.cli.main")
    parser = main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "dataset" not in sub.choices:
        add_parser(sub)
    assert "dataset" in sub.choices


def _outside_box(train_csv) -> None:
    """Make the first box of a stand-in table reach x = 5000 (its image is 2000 px wide)."""
    rows = read_rows(train_csv)
    next(r for r in rows if r["x_min"])["x_max"] = "5000"
    with train_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_check_finds_images_beside_and_reports_missing_and_outside(tmp_path, capsys):
    train = vindr_standin(tmp_path, 6, big=1)
    assert run(["dataset", "check", "--vinbigdata", str(train)]) == 0
    err = capsys.readouterr().err
    assert f"images: {tmp_path / 'train'}" in err and "6 read from the file headers" in err
    big = read_rows(train)[0]["image_id"]  # the 2000 x 2000 image, whose box goes outside
    gone = next(p for p in sorted((tmp_path / "train").glob("*.dicom")) if p.stem != big)
    kept = gone.read_bytes()
    gone.unlink()
    _outside_box(train)
    assert run(["dataset", "check", "--vinbigdata", str(train)]) == 1
    err = capsys.readouterr().err
    assert "0 read from the file headers, 5 from the cache" in err
    assert "2 problem(s): 1 box(es) outside their image, 1 image file(s) missing" in err
    assert f"{gone.stem}: no image file for this id" in err
    assert "extends outside the 2000x2000 image" in err and "--clip" in err
    assert run(["dataset", "check", "--vinbigdata", str(train), "--clip"]) == 1  # the missing file stays an error
    err = capsys.readouterr().err
    assert "clipped 1 box(es)" in err and "clipped to (" in err and "1 problem(s): 1 image file(s) missing" in err
    gone.write_bytes(kept)
    assert run(["dataset", "check", "--vinbigdata", str(train), "--clip"]) == 0


def test_export_refuses_out_of_image_boxes_unless_clip(tmp_path, capsys):
    train = vindr_standin(tmp_path, 4, big=1)
    _outside_box(train)
    out = tmp_path / "yolo"
    argv = ["dataset", "export", "--vinbigdata", str(train), "--chain", "resize_longest(size=128)", "--out", str(out),
            "-q", "--workers", "1", "--fuse", "none"]
    assert run(argv) == 1
    assert "nothing exported: 1 box(es) outside their image" in capsys.readouterr().err
    assert not (out / "labels").exists()
    assert run([*argv, "--clip"]) == 0
    captured = capsys.readouterr()
    assert "clipped 1 box(es)" in captured.err and "4 labelled image(s)" in captured.out
    for label in (out / "labels").glob("*.txt"):
        for line in label.read_text().splitlines():
            _, cx, cy, w, h = map(float, line.split())
            assert 0 <= cx - w / 2 - 1e-6 and cx + w / 2 <= 1 + 1e-6 and 0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6


def test_stats_without_meta(tmp_path, capsys):
    train = vindr_standin(tmp_path, 8)
    out = tmp_path / "stats"
    assert run(["dataset", "stats", "--vinbigdata", str(train), "--out", str(out), "--no-figures"]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "no known size" not in captured.err
    classes = {r["label"]: r for r in read_rows(out / "classes.csv")}
    for label in ("Cardiomegaly", "Aortic enlargement"):
        assert 0 < float(classes[label]["area_pct_median"]) < 100
        assert float(classes[label]["agreement_f1"]) > 0
    assert " - " in captured.out  # classes without boxes: no number, not nan
    assert "nan" not in (out / "stats.md").read_text().lower()
    require("matplotlib")
    assert run(["dataset", "stats", "--vinbigdata", str(train), "--out", str(out)]) == 0
    assert (out / "box_area.png").stat().st_size > 1000


def test_stats_without_any_sizes_prints_no_nan(vinbig_csv, tmp_path, capsys):
    assert run(["dataset", "stats", "--vinbigdata", str(vinbig_csv), "--out", str(tmp_path / "s"), "--no-figures"]) == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "no image folder" in captured.err and "no known size" in captured.err
