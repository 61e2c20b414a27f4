"""Detector training: the configuration, error paths, a 2-epoch run with resume, and ultralytics on an export."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, SAMPLES, missing, write

from thoracic.batch.export import ExportConfig, export_dataset
from thoracic.data import load_csv
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


@pytest.mark.slow
def test_ultralytics_trains_on_the_export(tmp_path):
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("matplotlib") is None:
        missing("ultralytics")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in SAMPLES.glob("0*.jpg"):
        shutil.copy(p, folder / p.name)
    shutil.copy(SAMPLES / "00000377_004.jpg", folder / "negative_1.jpg")
    ann = load_csv(write(tmp_path / "t.csv", (SAMPLES / "boxes.csv").read_text() + "negative_1,No finding,,,,,\n"))
    out = tmp_path / "yolo"
    export_dataset(ann, out, ExportConfig(chain="resize_longest(size=128)", workers=1), images=folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "dataset" / "train_smoke.py"), "--export", str(out), "--imgsz", "128"],
        capture_output=True, text=True, timeout=170, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 1 epoch(s)" in proc.stdout
    assert "metrics/mAP50(B)" in proc.stdout
