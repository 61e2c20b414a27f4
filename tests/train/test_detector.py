"""Training configuration, error paths and small pure functions (no training runs here)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from thoracic.errors import ConfigError, MissingDependencyError


def test_detector_config_validates(tmp_path):
    from thoracic.train.detector import DetectorTrainConfig

    data = tmp_path / "data.yaml"
    data.write_text("nc: 14\n")
    cfg = DetectorTrainConfig(data=str(data), out=str(tmp_path), name="r")
    assert cfg.run_dir == tmp_path / "r" and cfg.model_yaml == "yolov5n.yaml"
    with pytest.raises(ConfigError, match="unknown detector model 'yolov5'"):
        DetectorTrainConfig(data=str(data), model="yolov5")
    with pytest.raises(ConfigError, match="multiple of 32"):
        DetectorTrainConfig(data=str(data), imgsz=500)
    with pytest.raises(ConfigError, match="dataset export"):
        DetectorTrainConfig(data=str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="workers"):
        DetectorTrainConfig(data=str(data), workers=-1)
    with pytest.raises(ConfigError, match="unknown image cache 'memory'"):
        DetectorTrainConfig(data=str(data), cache="memory")
    with pytest.raises(ConfigError, match="hours"):
        DetectorTrainConfig(data=str(data), hours=0)


def test_loader_workers_follow_the_device(tmp_path):
    """0 loader processes on the CPU (ultralytics' own rule there), up to 8 on a GPU, or as asked."""
    import os

    from thoracic.train.detector import DetectorTrainConfig

    data = tmp_path / "data.yaml"
    data.write_text("nc: 14\n")
    assert DetectorTrainConfig(data=str(data)).loader_workers == 0
    assert DetectorTrainConfig(data=str(data), device="0").loader_workers == min(8, len(os.sched_getaffinity(0)))
    assert DetectorTrainConfig(data=str(data), device="0", workers=3).loader_workers == 3
    assert DetectorTrainConfig(data=str(data), workers=2).loader_workers == 2


def test_resume_without_checkpoint_is_a_config_error(tmp_path, require):
    require("torch")
    require("ultralytics")
    from thoracic.train.detector import DetectorTrainConfig, train_detector

    with pytest.raises(ConfigError, match="nothing to resume"):
        train_detector(DetectorTrainConfig(data="", out=str(tmp_path), name="r", resume=True))


def test_training_without_torch_names_the_extra(monkeypatch):
    from thoracic.train import _ultralytics

    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(MissingDependencyError, match=r"thoracic\[train\]"):
        _ultralytics.load_torch("detector training")


def test_model_meta_round_trip():
    from thoracic.labels import FINDINGS
    from thoracic.models.meta import ModelMeta
    from thoracic.preprocess import get_chain

    meta = ModelMeta(kind="detector", names=FINDINGS, trained_classes=FINDINGS[:2], chain=get_chain("yolo-512-clahe"),
                     imgsz=512, lung_crop=True, extra={"a": 1})
    again = ModelMeta.from_json(meta.to_json())
    assert again == meta and again.class_ids == tuple(range(14))
    with pytest.raises(ConfigError):
        ModelMeta(kind="segmenter", names=(), trained_classes=(), chain=get_chain("display"), imgsz=32)
    with pytest.raises(ConfigError):
        ModelMeta(kind="detector", names=("a",), trained_classes=("b",), chain=get_chain("display"), imgsz=32)


def test_nms_matches_a_hand_computed_case():
    from thoracic.boxes import nms_xyxy

    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert nms_xyxy(boxes, scores, 0.5).tolist() == [3, 2]


def test_roc_auc_and_threshold():
    from thoracic.train.classifier import choose_low, roc_auc

    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    assert roc_auc(y, p) == pytest.approx(5 / 6)
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert choose_low(y, p, 1.0) == pytest.approx(0.35)  # keeps every abnormal image
    assert choose_low(y, p, 0.6) == pytest.approx(0.8)


@pytest.mark.parametrize("module", ["thoracic.detect", "thoracic.classify", "thoracic.inference.predictor",
                                    "thoracic.cli.predict", "thoracic.cli.train_detector"])
def test_all_is_sorted(module):
    names = importlib.import_module(module).__all__
    assert list(names) == sorted(names)


def test_cli_handlers_parse():
    import argparse

    from thoracic.cli import predict
    from thoracic.cli import train_detector as td

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    td.add_arguments(sub.add_parser("detector"))
    td.add_classifier_arguments(sub.add_parser("classifier"))
    td.add_export_arguments(sub.add_parser("export"))
    predict.add_arguments(sub.add_parser("predict"))
    a = p.parse_args(["detector", "--data", "d.yaml", "--epochs", "3", "--resume"])
    assert a.func is td.run_detector and a.epochs == 3 and a.resume and a.threads == 1
    a = p.parse_args(["classifier", "--images-csv", "i.csv", "--images", "im", "--folds", "f.csv", "--pretrained", "w.pt"])
    assert a.func is td.run_classifier and a.imgsz == 320
    a = p.parse_args(["export", "best.pt", "--out", "m.onnx"])
    assert a.func is td.run_export
    a = p.parse_args(["predict", "x.dcm", "--out", "p.csv"])
    assert a.func is predict.run and (a.conf, a.max_det, a.format) == (0.01, 100, "rows")


def _tiny_yolo_set(root):
    """8 synthetic 128-px images with one bright box each (class 3), 4 train + 4 val, all 14 names."""
    import cv2

    from thoracic.batch.export import yolo_names_yaml

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = []
    for i in range(8):
        img = (rng.random((128, 128)) * 60).astype(np.uint8)
        x, y = int(rng.integers(10, 60)), int(rng.integers(10, 60))
        img[y : y + 40, x : x + 40] = 220
        cv2.imwrite(str(root / "images" / f"im{i}.png"), img)
        (root / "labels" / f"im{i}.txt").write_text(f"3 {(x + 20) / 128} {(y + 20) / 128} {40 / 128} {40 / 128}\n")
        names.append(f"./images/im{i}.png")
    (root / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (root / "val.txt").write_text("\n".join(names[4:]) + "\n")
    (root / "data.yaml").write_text(f'path: "{root}"\ntrain: train.txt\nval: val.txt\n' + yolo_names_yaml())
    return root / "data.yaml"


def test_train_writes_config_and_checkpoints_and_resumes(tmp_path, require):
    """A 2-epoch run at 64 px from the YAML: resolved config, per-epoch checkpoints, resume from last.pt."""
    require("torch")
    require("ultralytics")
    import json
    import shutil

    from thoracic.train.detector import DetectorTrainConfig, train_detector

    data = _tiny_yolo_set(tmp_path / "set")
    cfg = DetectorTrainConfig(data=str(data), out=str(tmp_path / "runs"), name="t", epochs=2, imgsz=64, batch=4, nbs=4,
                              close_mosaic=0, mosaic=0.0, warmup_epochs=0.0, threads=1)
    rows = []
    summary = train_detector(cfg, on_epoch=rows.append)
    weights = cfg.run_dir / "weights"
    assert {"last.pt", "best.pt", "epoch0.pt", "epoch1.pt"} <= {p.name for p in weights.iterdir()}
    resolved = json.loads((cfg.run_dir / "thoracic_train.json").read_text())
    assert resolved["config"]["epochs"] == 2 and resolved["ultralytics_args"]["imgsz"] == 64
    assert resolved["ultralytics_args"]["workers"] == 0 and resolved["ultralytics_args"]["cache"] is False
    assert "time" not in resolved["ultralytics_args"]
    assert [r["epoch"] for r in rows if not r["final"]] == [1, 2] and summary["epochs"] == 2
    # an interrupted run: last.pt as written after epoch 1; resuming trains epoch 2 only
    shutil.copyfile(weights / "epoch0.pt", weights / "last.pt")
    rows.clear()
    train_detector(DetectorTrainConfig(data=str(data), out=cfg.out, name="t", resume=True), on_epoch=rows.append)
    assert [r["epoch"] for r in rows if not r["final"]] == [2]
