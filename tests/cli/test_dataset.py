"""``thoracic dataset`` in-process, through a parser built with ``add_parser``."""

from __future__ import annotations

import argparse
import importlib
import shutil

import pytest
from helpers import SAMPLES, require, write

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
