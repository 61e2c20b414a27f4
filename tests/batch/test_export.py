"""Export: YOLO and COCO from a table and an image folder, through a preprocessing chain."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import SAMPLES, write

from thoracic.batch.export import ExportConfig, export_dataset, read_export_manifest
from thoracic.data import Annotations, ImageInfo, load_coco, load_csv
from thoracic.errors import ConfigError
from thoracic.io import read
from thoracic.labels import FINDINGS
from thoracic.preprocess import Chain

CHAIN = "letterbox(size=320)"  # a chain with translation as well as scale


@pytest.fixture
def nih_samples(tmp_path):
    """The three bundled NIH samples with their boxes, plus a written negative and a broken file."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in SAMPLES.glob("0*.jpg"):
        shutil.copy(p, folder / p.name)
    shutil.copy(SAMPLES / "00000377_004.jpg", folder / "negative_1.jpg")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    table = (SAMPLES / "boxes.csv").read_text()
    table += "negative_1,No finding,,,,,\nbroken,No finding,,,,,\n"
    ann = load_csv(write(tmp_path / "boxes.csv", table))
    # an image with findings but no boxes, and one without a file
    images = dict(ann.images)
    images["unboxed_1"] = ImageInfo("unboxed_1", labels=("Mass",))
    images["gone"] = ImageInfo("gone")
    rows = list(ann.rows()) + [("gone", "No finding", 0, 0, 1, 1, "", float("nan"))]
    return Annotations.from_rows(images, rows), folder


def _back_to_original(out, iid):
    """Boxes of a YOLO label file mapped back to original pixels through the chain's inverse."""
    m = read_export_manifest(out / "manifest.csv")[iid]
    from thoracic.transform import Affine

    t = Affine(float(m["sx"]), float(m["sy"]), float(m["tx"]), float(m["ty"]))
    w, h = int(m["out_width"]), int(m["out_height"])
    lines = [list(map(float, line.split())) for line in (out / "labels" / f"{iid}.txt").read_text().splitlines()]
    cls = [int(v[0]) for v in lines]
    xywh = np.array([v[1:] for v in lines]).reshape(-1, 4) * [w, h, w, h]
    xyxy = np.c_[xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2]
    return cls, t.inverse().apply_boxes(xyxy)


def test_yolo_export(nih_samples, tmp_path):
    ann, folder = nih_samples
    out = tmp_path / "yolo"
    s = export_dataset(ann, out, ExportConfig(chain=CHAIN, workers=2), images=folder, folds={i: int(i < "00001") for i in ann.images})
    assert (s.labelled, s.failed, s.missing, s.unboxed_skipped, s.boxes) == (4, 1, 1, 1, 3)
    manifest = read_export_manifest(out / "manifest.csv")
    assert manifest["broken"]["status"] == "failed" and manifest["gone"]["status"] == "missing"
    for iid in ("00000377_004", "00001437_012", "00001555_002"):
        cls, boxes = _back_to_original(out, iid)
        sel = ann.is_finding & (ann.image_id == iid)
        assert cls == [FINDINGS.index(x) for x in ann.label[sel]]
        np.testing.assert_allclose(boxes, ann.boxes[sel], atol=0.5)
        assert (out / "images" / f"{iid}.png").is_file()
        # each PNG says which chain wrote it (prediction refuses to preprocess it again)
        assert read(out / "images" / f"{iid}.png").export_chain == ("custom", CHAIN)
    assert (out / "labels" / "negative_1.txt").read_text() == ""  # No finding: empty label file
    assert not (out / "labels" / "unboxed_1.txt").exists()
    text = (out / "data.yaml").read_text()
    for i, name in enumerate(FINDINGS):
        assert f'  {i}: "{name}"' in text
    assert "nc: 14" in text and 'train: "train_0.txt"' in text
    assert {p.name for p in out.glob("data_*.yaml")} == {"data_0.yaml", "data_1.yaml"}
    assert Chain.from_json((out / "chain.json").read_text()).spec() == "letterbox(size=320)"
    val0 = (out / "val_0.txt").read_text().split()
    assert all(line.startswith("./images/") for line in val0)
    # resume: nothing rewritten; another chain is refused
    s2 = export_dataset(ann, out, ExportConfig(chain=CHAIN, workers=1), images=folder)
    assert (s2.resumed, s2.written) == (4, 0)
    with pytest.raises(ConfigError, match="another chain"):
        export_dataset(ann, out, ExportConfig(chain="resize_longest(size=128)"), images=folder)


def test_unboxed_include_and_coco(nih_samples, tmp_path):
    ann, folder = nih_samples
    shutil.copy(SAMPLES / "00001437_012.jpg", folder / "unboxed_1.jpg")
    out = tmp_path / "coco"
    s = export_dataset(ann, out, ExportConfig(format="coco", chain="resize_longest(size=256)", unboxed="include", workers=1), images=folder)
    assert s.labelled == 4 and s.unboxed_skipped == 0
    doc = json.loads((out / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == list(FINDINGS)
    assert [c["id"] for c in doc["categories"]] == list(range(1, 15))
    unboxed = [im for im in doc["images"] if im.get("boxes_annotated") is False]
    assert [im["image_id_str"] for im in unboxed] == ["unboxed_1"]
    assert (out / "unboxed.txt").read_text().strip() == "./images/unboxed_1.png"
    assert "unboxed_1" not in (out / "all.txt").read_text()
    back = load_coco(out / "annotations.json")
    assert back.problems == ()
    for iid in ("00000377_004", "00001437_012"):
        sel = ann.is_finding & (ann.image_id == iid)
        got = back.boxes[back.is_finding & (back.image_id == iid)] * 4  # 1024 -> 256
        np.testing.assert_allclose(got, ann.boxes[sel], atol=0.5)
    assert "unboxed_1" not in set(back.image_id.tolist())  # unknown boxes, not a negative
    assert set(back.image_id[~back.is_finding].tolist()) == {"negative_1"}


def test_options_errors():
    with pytest.raises(ConfigError, match="did you mean 'yolo'"):
        ExportConfig(format="yol")
    with pytest.raises(ConfigError, match="unknown preprocessing chain"):
        ExportConfig(chain="nonsense")


def test_box_outside_the_file_fails_its_image_unless_clip(tmp_path):
    """A table without sizes: boxes are checked against the file's size, never clipped silently."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(SAMPLES / "00000377_004.jpg", folder / "a.jpg")  # 1024 x 1024
    shutil.copy(SAMPLES / "00001437_012.jpg", folder / "b.jpg")
    ann = load_csv(write(tmp_path / "t.csv", "image_id,label,x_min,y_min,x_max,y_max\na,ILD,100,100,5000,400\nb,ILD,10,10,50,50\n"))
    out = tmp_path / "yolo"
    s = export_dataset(ann, out, ExportConfig(chain="resize_longest(size=128)", workers=1), images=folder)
    assert (s.labelled, s.failed, s.clipped) == (1, 1, 0)
    row = read_export_manifest(out / "manifest.csv")["a"]
    assert row["status"] == "failed" and "outside the 1024x1024 image" in row["error"] and "--clip" in row["error"]
    assert "a.png" not in (out / "all.txt").read_text()
    s = export_dataset(ann, out, ExportConfig(chain="resize_longest(size=128)", workers=1, clip=True), images=folder)
    assert (s.labelled, s.failed, s.clipped) == (2, 0, 1)
    _, boxes = _back_to_original(out, "a")
    np.testing.assert_allclose(boxes, [[100, 100, 1024, 400]], atol=1)
