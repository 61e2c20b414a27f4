"""The VinBigData loader: the real table, with sizes, bad rows reported with their lines."""

from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
from helpers import read_rows, vindr_standin, write

from thoracic.data import load_vinbigdata, read_image_sizes
from thoracic.errors import ConfigError
from thoracic.io import read
from thoracic.labels import NO_FINDING

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


def _edit_box(train_csv, row: int, **coords: str) -> str:
    """Set coordinates of the ``row``-th box row of a stand-in ``train.csv``; returns its image id."""
    rows = read_rows(train_csv)
    boxed = [r for r in rows if r["x_min"]]
    boxed[row].update(coords)
    with train_csv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return boxed[row]["image_id"]


def test_images_beside_train_csv_and_sizes_from_their_headers(tmp_path):
    train = vindr_standin(tmp_path, 8, big=1)
    scans = []
    ann = load_vinbigdata(train, on_sizes=scans.append)
    assert ann.problems == () and ann.clipped == ()
    for iid, info in ann.images.items():
        assert info.source == str(tmp_path / "train" / f"{iid}.dicom")
        rg = read(info.source)
        assert (info.width, info.height) == (rg.original_width, rg.original_height)
    assert (scans[0].read, scans[0].cached) == (8, 0)
    load_vinbigdata(train, on_sizes=scans.append)
    assert (scans[1].read, scans[1].cached) == (0, 8)  # the second run reads no header


def test_meta_wins_over_the_headers(tmp_path):
    train = vindr_standin(tmp_path, 4)
    ids = list(dict.fromkeys(r["image_id"] for r in read_rows(train)))
    meta = write(tmp_path / "meta.csv", f"image_id,width,height\n{ids[0]},4000,3000\n")
    ann = load_vinbigdata(train, meta)
    assert (ann.images[ids[0]].width, ann.images[ids[0]].height) == (4000, 3000)
    assert all(ann.images[i].width and ann.images[i].width < 400 for i in ids[1:])  # the others: headers


def test_missing_image_reported(tmp_path):
    train = vindr_standin(tmp_path, 4)
    gone = min((tmp_path / "train").glob("*.dicom"))
    gone.unlink()
    ann = load_vinbigdata(train)
    [p] = ann.problems
    assert p.kind == "missing image" and p.image_id == gone.stem and "no image file" in str(p)
    assert ann.images[gone.stem].width is None and ann.images[gone.stem].source is None


def test_out_of_image_box_refused_or_clipped(tmp_path):
    train = vindr_standin(tmp_path, 4, big=1)  # image 0 is 2000 x 2000
    iid = _edit_box(train, 0, x_max="5000")
    _edit_box(train, 1, y_min="-3")
    ann = load_vinbigdata(train)
    outside = [p for p in ann.problems if p.kind == "outside"]
    assert len(outside) == 2 and len(ann.problems) == 2
    assert "extends outside the 2000x2000 image" in str(outside[0]) and outside[0].image_id == iid
    assert "negative" in str(outside[1])
    clipped = load_vinbigdata(train, clip=True)
    assert clipped.problems == () and len(clipped.clipped) == 2 and len(clipped) == len(ann) + 2
    assert "clipped to" in str(clipped.clipped[0])
    f = clipped.is_finding
    w = np.array([clipped.images[i].width for i in clipped.image_id[f]])
    h = np.array([clipped.images[i].height for i in clipped.image_id[f]])
    b = clipped.boxes[f]
    assert (b >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all() and b[:, 2].max() == 2000
    # a box entirely outside cannot be clipped: still refused
    _edit_box(train, 2, x_min="3000", x_max="3100")
    left = load_vinbigdata(train, clip=True)
    assert [p.kind for p in left.problems] == ["outside"] and "entirely" in str(left.problems[0])
