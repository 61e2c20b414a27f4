"""Loaders: the real VinBigData table, NIH (both layouts), COCO, plain CSV; bad rows with lines."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ds_helpers import txv_data, write

from thoracic.data import Annotations, load_coco, load_csv, load_nih, load_vinbigdata, read_image_sizes, write_csv
from thoracic.errors import ConfigError
from thoracic.labels import FINDINGS, NO_FINDING

VINBIG_BOXES = {
    "Aortic enlargement": 7162, "Atelectasis": 279, "Calcification": 960, "Cardiomegaly": 5427, "Consolidation": 556,
    "ILD": 1000, "Infiltration": 1247, "Lung Opacity": 2483, "Nodule/Mass": 2580, "Other lesion": 2203,
    "Pleural effusion": 2476, "Pleural thickening": 4842, "Pneumothorax": 226, "Pulmonary fibrosis": 4655, "No finding": 31818,
}


def test_real_vinbigdata_table(vinbig):
    assert len(vinbig) == 67914
    assert len(vinbig.images) == 15000
    assert len(vinbig.abnormal_images()) == 4394
    assert vinbig.problems == ()
    assert vinbig.label_counts() == VINBIG_BOXES
    assert set(vinbig.reader.tolist()) == {f"R{i}" for i in range(1, 18)}
    nf = vinbig.label == NO_FINDING
    assert (vinbig.boxes[nf] == [0, 0, 1, 1]).all()
    assert (vinbig.boxes[~nf, 2] > vinbig.boxes[~nf, 0]).all()


def test_real_vinbigdata_with_sizes(vinbig_subset, meta_subset):
    sizes, problems = read_image_sizes(meta_subset)
    assert len(sizes) == 200 and problems == []
    ann = vinbig_subset
    assert len(ann.images) == 200 and len(ann.abnormal_images()) == 150
    w = np.array([ann.images[i].width for i in ann.image_id])
    h = np.array([ann.images[i].height for i in ann.image_id])
    f = ann.is_finding
    assert (ann.boxes[f, 2] <= w[f]).all() and (ann.boxes[f, 3] <= h[f]).all()


def test_vinbigdata_bad_rows_reported_with_lines(tmp_path):
    train = write(tmp_path / "train.csv", """
image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max
a,No finding,14,R1,,,,
a,Cardiomegaly,3,R2,10,20,90,80
b,Cardiomegly,3,R2,10,20,90,80
b,Cardiomegaly,4,R2,10,20,90,80
b,Cardiomegaly,3,R2,-5,20,90,80
b,Cardiomegaly,3,R2,10,20,190,80
b,Nodule/Mass,8,R3,,,,
b,Nodule/Mass,8,R3,30,30,30,40
b,Nodule/Mass,8,R3,30,30,40,40
c,ILD,5,R1,1,1,2,2
""")
    meta = write(tmp_path / "meta.csv", """
image_id,width,height
a,100,100
b,100,100
c,-100,100
""")
    ann = load_vinbigdata(train, meta)
    by_src = {(p.source.rsplit("/", 1)[-1], p.line): p.message for p in ann.problems}
    assert "size must be positive" in by_src[("meta.csv", 4)]
    assert "did you mean 'Cardiomegaly'" in by_src[("train.csv", 4)]
    assert "class_id 4 does not match" in by_src[("train.csv", 5)]
    assert "negative" in by_src[("train.csv", 6)]
    assert "outside the 100x100 image" in by_src[("train.csv", 7)]
    assert "missing" in by_src[("train.csv", 8)]
    assert "empty or inverted" in by_src[("train.csv", 9)]
    assert len(ann.problems) == 7
    assert len(ann) == 4 and set(ann.images) == {"a", "b", "c"}
    assert ann.images["c"].width is None  # its size was refused, the image stays
    assert str(ann.problems[-1]).startswith(str(train))


def test_vinbigdata_missing_column(tmp_path):
    p = write(tmp_path / "t.csv", "image_id,class_name\nx,ILD\n")
    with pytest.raises(ConfigError, match="missing column"):
        load_vinbigdata(p)


def test_vinbigdata_images_folder(tmp_path, vinbig_csv):
    rows = gzip.open(vinbig_csv, "rt").read().splitlines()[:4]
    train = write(tmp_path / "train.csv", "\n".join(rows) + "\n")
    folder = tmp_path / "train"
    folder.mkdir()
    iid = rows[1].split(",")[0]
    (folder / f"{iid}.dicom").write_bytes(b"")
    ann = load_vinbigdata(train, images=folder)
    assert ann.images[iid].source == str(folder / f"{iid}.dicom")


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


def test_csv_round_trip_and_problems(tmp_path, vinbig_subset):
    path = write_csv(vinbig_subset, tmp_path / "t.csv")
    back = load_csv(path)
    assert back.problems == ()
    assert len(back) == len(vinbig_subset) and set(back.images) == set(vinbig_subset.images)
    order_a = np.lexsort((vinbig_subset.boxes[:, 0], vinbig_subset.label.astype(str), vinbig_subset.image_id.astype(str)))
    order_b = np.lexsort((back.boxes[:, 0], back.label.astype(str), back.image_id.astype(str)))
    np.testing.assert_array_equal(back.boxes[order_b], vinbig_subset.boxes[order_a])
    bad = write(tmp_path / "bad.csv", """
image_id,label,x_min,y_min,x_max,y_max,width,height
a,Cardiomegaly,1,1,5,5,10,10
a,Foo,1,1,5,5,10,10
b,ILD,1,1,5,5,-3,10
c,,,,,,20,20
a,ILD,1,1,50,5,,
""")
    ann = load_csv(bad)
    assert [p.line for p in ann.problems] == [3, 4, 6]
    assert ann.images["c"].width == 20 and len(ann) == 1


def test_coco_load_and_problems(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "x/a.png", "width": 100, "height": 80}, {"id": 2, "file_name": "b.dcm", "width": 50, "height": 50}],
        "categories": [{"id": 4, "name": "Cardiomegaly"}, {"id": 9, "name": "Effusion"}, {"id": 7, "name": "Tumor"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, 30]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]},
            {"id": 4, "image_id": 1, "category_id": 4, "bbox": [90, 10, 20, 30]},
            {"id": 5, "image_id": 3, "category_id": 4, "bbox": [0, 0, 5, 5]},
        ],
    }
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    ann = load_coco(p)
    assert [x.line for x in ann.problems] == [3, 4, 5]
    assert sorted(zip(ann.image_id.tolist(), ann.label.tolist())) == [("a", "Cardiomegaly"), ("a", "Pleural effusion"), ("b", NO_FINDING)]
    assert ann.boxes[ann.label == "Cardiomegaly"].tolist() == [[10, 10, 30, 40]]
    assert len(FINDINGS) == 14
