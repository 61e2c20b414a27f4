"""The NIH loader: both layouts (thoracic's and NIH's own, and its real tables), bad rows with lines."""

from __future__ import annotations

import pytest
from helpers import txv_data, write

from thoracic.data import Annotations, load_nih
from thoracic.errors import ConfigError
from thoracic.labels import NO_FINDING

NIH_IMAGES = """
image,patient_id,follow_up,age,sex,view,finding_labels,n_boxes
00000001_000.jpg,1,0,57,M,PA,Cardiomegaly,1
00000001_001.jpg,1,1,58,M,PA,Cardiomegaly|Emphysema,0
00000002_000.jpg,2,0,80,M,PA,No Finding,0
00000003_000.jpg,3,0,60,F,AP,Effusion|Mass,2
"""
NIH_BOXES = """
image,finding,x_min,y_min,x_max,y_max
00000001_000.jpg,Cardiomegaly,300,400,800,800
00000003_000.jpg,Effusion,10,10,200,600
00000003_000.jpg,Mass,500,500,560,570
00000003_000.jpg,Hernia,500,500,560,570
00000002_000.jpg,Nodule,500,500,560,570
00000009_000.jpg,Nodule,500,500,560,570
00000003_000.jpg,Nodule,1000,1000,1030,1030
"""


def _check_nih(ann: Annotations) -> None:
    assert set(ann.images) == {"00000001_000", "00000001_001", "00000002_000", "00000003_000"}
    assert ann.images["00000001_000"].patient_id == "1" and ann.images["00000001_000"].width == 1024
    rows = sorted((i, lab) for i, lab in zip(ann.image_id, ann.label, strict=True))
    assert rows == [
        ("00000001_000", "Cardiomegaly"), ("00000002_000", NO_FINDING),
        ("00000003_000", "Nodule/Mass"), ("00000003_000", "Pleural effusion"),
    ]
    # a finding without a box is not a negative: kept with its labels, no rows
    assert ann.images["00000001_001"].labels == ("Cardiomegaly", "Emphysema")
    assert "00000001_001" not in set(ann.image_id.tolist())
    msgs = {p.line: p.message for p in ann.problems}
    assert set(msgs) == {5, 6, 7, 8}
    assert "unknown NIH finding 'Hernia'" in msgs[5]
    assert "labelled 'No Finding'" in msgs[6]
    assert "not in" in msgs[7]
    assert "outside the 1024x1024 image" in msgs[8]


def test_nih_thoracic_layout(tmp_path):
    ann = load_nih(write(tmp_path / "images.csv", NIH_IMAGES), write(tmp_path / "boxes.csv", NIH_BOXES))
    _check_nih(ann)
    box = ann.boxes[ann.label == "Nodule/Mass"][0]
    assert box.tolist() == [500, 500, 560, 570]


def test_nih_official_layout(tmp_path):
    entry = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
    for line in NIH_IMAGES.strip().splitlines()[1:]:
        f = line.split(",")
        entry += f"{f[0].replace('.jpg', '.png')},{f[6]},{f[2]},{f[1]},{f[3]},{f[4]},{f[5]},2500,2048,0.171,0.171\n"
    bbox = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
    for line in NIH_BOXES.strip().splitlines()[1:]:
        f = line.split(",")
        x0, y0, x1, y1 = map(float, f[2:])
        bbox += f"{f[0].replace('.jpg', '.png')},{f[1]},{x0},{y0},{x1 - x0},{y1 - y0},,,\n"
    ann = load_nih(write(tmp_path / "Data_Entry_2017.csv", entry), write(tmp_path / "BBox_List_2017.csv", bbox))
    _check_nih(ann)
    assert ann.boxes[ann.label == "Nodule/Mass"][0].tolist() == [500, 500, 560, 570]


def test_nih_official_real_tables():
    ann = load_nih(txv_data("Data_Entry_2017_v2020.csv.gz"), txv_data("BBox_List_2017.csv.gz"))
    assert len(ann.images) == 112120
    assert ann.problems == ()
    assert int(ann.is_finding.sum()) == 984 and len(ann.abnormal_images()) == 880
    assert ann.label_counts()["Atelectasis"] == 180
    assert len({i.patient_id for i in ann.images.values()}) == 30805


def test_nih_unknown_layout(tmp_path):
    with pytest.raises(ConfigError, match="neither"):
        load_nih(write(tmp_path / "a.csv", "x,y\n1,2\n"), write(tmp_path / "b.csv", "x\n"))
