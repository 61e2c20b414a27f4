"""Classifier training: its pure functions (no training runs here)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_roc_auc_and_threshold():
    from thoracic.train.classifier import choose_low, roc_auc

    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    assert roc_auc(y, p) == pytest.approx(5 / 6)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert choose_low(y, p, 1.0) == pytest.approx(0.35)  # keeps every abnormal image
    assert choose_low(y, p, 0.6) == pytest.approx(0.8)


def test_image_labels_rule():
    from thoracic.data.annotations import Annotations, ImageInfo
    from thoracic.train.classifier import image_labels

    images = [ImageInfo("mixed", patient_id="P1"), ImageInfo("clean"), ImageInfo("nih", labels=("Effusion", "Hernia")),
              ImageInfo("nih-normal", labels=("No Finding",)), ImageInfo("silent")]
    rows = [("mixed", "No finding", 0, 0, 1, 1, "R1"), ("mixed", "No finding", 0, 0, 1, 1, "R2"),
            ("mixed", "Nodule/Mass", 5, 5, 20, 20, "R3"), ("clean", "No finding", 0, 0, 1, 1, "R1")]
    labels = image_labels(Annotations.from_rows(images, rows))
    assert labels["mixed"].abnormal == 1 and labels["mixed"].findings == ("Nodule/Mass",) and labels["mixed"].group == "P1"
    assert labels["clean"].abnormal == 0 and labels["clean"].group == "image:clean"
    assert labels["nih"].abnormal == 1 and labels["nih"].findings == ("Hernia", "Pleural effusion")
    assert labels["nih-normal"].abnormal == 0 and labels["silent"].abnormal == 0


def test_train_classifier_on_a_vindr_folder(tmp_path, require):
    """``thoracic train classifier --vinbigdata train.csv``: images from train/ beside it, labels derived."""
    torch = require("torch")
    require("ultralytics")
    from helpers import read_rows, vindr_standin
    from test_yolov5_import import _fake_original

    from thoracic.classify.onnx import OnnxClassifier
    from thoracic.cli.main import main
    from thoracic.train._ultralytics import load_ultralytics

    train_csv = vindr_standin(tmp_path / "vindr", n=12, size=96)
    load_ultralytics("tests", threads=1)
    ckpt = tmp_path / "yolov5n-original.pt"
    _fake_original(torch, ckpt)
    out = tmp_path / "clf"
    assert main(["train", "classifier", "--vinbigdata", str(train_csv), "--pretrained", str(ckpt), "--out", str(out),
                 "--imgsz", "64", "--n-folds", "3", "--threads", "1"]) == 0
    derived = {r["image_id"]: r for r in read_rows(out / "labels.csv")}
    truth = {}
    for r in read_rows(train_csv):
        truth.setdefault(r["image_id"], set())
        if r["class_name"] != "No finding":
            truth[r["image_id"]].add(r["class_name"])
    assert set(derived) == set(truth) and len(derived) == 12
    for iid, names in truth.items():
        assert derived[iid]["abnormal"] == str(int(bool(names)))
        assert derived[iid]["findings"] == "|".join(sorted(names))
        assert derived[iid]["source"].endswith(f"train/{iid}.dicom")
    assert sum(r["abnormal"] == "0" for r in derived.values()) == 3  # every fourth image: all readers "No finding"
    assert {r["fold"] for r in derived.values()} == {"0", "1", "2"} and (out / "folds.csv").is_file()
    clf = OnnxClassifier.load(out / "classifier.onnx")
    assert "vinbigdata labels (train.csv), 12 images" in clf.meta.training_data
    assert clf.meta.chain.name.startswith("yolo-512-clahe")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"]["abnormal"] == 9 and summary["n_train"] + summary["n_val"] == 12
    assert abs(summary["onnx_check"]["probe"] - summary["onnx_check"]["onnx"]) < 1e-3


def test_label_tables_of_every_format(tmp_path):
    from helpers import write

    from thoracic.errors import ConfigError
    from thoracic.train.classifier import image_labels, load_label_table

    nih = write(tmp_path / "images.csv", "image,patient_id,finding_labels\na.png,P1,No Finding\nb.png,P1,Effusion|Mass\n")
    table, fmt = load_label_table(nih)
    assert fmt == "nih" and {k: v.abnormal for k, v in image_labels(table).items()} == {"a": 0, "b": 1}
    plain = write(tmp_path / "t.csv", "image_id,label,x_min,y_min,x_max,y_max\nc,No finding,,,,\nd,Cardiomegaly,1,1,9,9\n")
    table, fmt = load_label_table(plain)
    assert fmt == "csv" and {k: v.abnormal for k, v in image_labels(table).items()} == {"c": 0, "d": 1}
    with pytest.raises(ConfigError, match="not a label table"):
        load_label_table(write(tmp_path / "x.csv", "foo,bar\n1,2\n"))
