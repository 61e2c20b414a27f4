"""Detector training: the configuration, error paths, a 2-epoch run with resume, and ultralytics on an export."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT, SAMPLES, missing, tiny_yolo_set, write

from thoracic.batch.export import ExportConfig, export_dataset
from thoracic.data import load_csv
from thoracic.errors import ConfigError, CorruptFileError, MissingDependencyError


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
    assert cfg.save_period == -1  # best.pt and last.pt only, unless asked


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


def _checkpoint(path, **fields):
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": None, "train_args": {"epochs": 3}, **fields}, path)


def test_run_state_tells_finished_from_interrupted(tmp_path, require):
    """ultralytics' closing step strips last.pt (epoch -1, no optimizer): finished; else resumable."""
    require("torch")
    require("ultralytics")
    from thoracic.train.detector import run_state

    last = tmp_path / "r" / "weights" / "last.pt"
    assert run_state(tmp_path / "r").state == "missing"
    _checkpoint(last, epoch=0, optimizer={"state": {}})
    assert (run_state(tmp_path / "r").state, run_state(tmp_path / "r").epoch) == ("interrupted", 1)
    _checkpoint(last, epoch=-1, optimizer=None)
    assert run_state(tmp_path / "r").state == "finished"
    _checkpoint(last, epoch=2, optimizer={"state": {}})  # all 3 epochs saved, stopped in the final validation
    assert run_state(tmp_path / "r").state == "finished"
    last.write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptFileError, match="not an ultralytics training checkpoint"):
        run_state(tmp_path / "r")


def test_resume_of_a_finished_run_trains_nothing(tmp_path, require, monkeypatch):
    """No ultralytics call (it would start a new training on coco8.yaml and download it): a summary that says so."""
    require("torch")
    require("ultralytics")
    import json

    import ultralytics

    from thoracic.train.detector import DetectorTrainConfig, train_detector

    run = tmp_path / "r"
    _checkpoint(run / "weights" / "last.pt", epoch=-1, optimizer=None)
    (run / "thoracic_summary.json").write_text(json.dumps({"epochs": 3, "metrics": {"metrics/mAP50(B)": 0.5}}))

    def no_yolo(*args, **kwargs):
        raise AssertionError("ultralytics was called")

    monkeypatch.setattr(ultralytics, "YOLO", no_yolo)
    summary = train_detector(DetectorTrainConfig(data="", out=str(tmp_path), name="r", resume=True))
    assert summary["already_finished"] and summary["metrics"] == {"metrics/mAP50(B)": 0.5}
    assert str(run) in summary["message"] and str(run / "weights" / "best.pt") in summary["message"]
    assert "already finished (3 epochs)" in summary["message"]


def test_training_without_torch_names_the_extra(monkeypatch):
    from thoracic.train import _ultralytics

    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(MissingDependencyError, match=r"thoracic\[train\]"):
        _ultralytics.load_torch("detector training")


def test_train_writes_config_and_checkpoints_and_resumes(tmp_path, require):
    """A 2-epoch run at 64 px from the YAML: resolved config, per-epoch checkpoints (asked for), resume from
    last.pt, and a second resume of the now finished run trains nothing."""
    require("torch")
    require("ultralytics")
    import json
    import shutil

    from thoracic.train.detector import DetectorTrainConfig, train_detector

    data = tiny_yolo_set(tmp_path / "set")
    cfg = DetectorTrainConfig(data=str(data), out=str(tmp_path / "runs"), name="t", epochs=2, imgsz=64, batch=4, nbs=4,
                              close_mosaic=0, mosaic=0.0, warmup_epochs=0.0, threads=1, save_period=1)
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
    rows.clear()
    again = train_detector(DetectorTrainConfig(data=str(data), out=cfg.out, name="t", resume=True), on_epoch=rows.append)
    assert again["already_finished"] and rows == [] and str(weights / "best.pt") in again["message"]


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
        check=False, capture_output=True, text=True, timeout=170, cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trained 1 epoch(s)" in proc.stdout
    assert "metrics/mAP50(B)" in proc.stdout


def test_pretrained_is_checked_against_the_known_weights(tmp_path, tiny_pt, caplog, monkeypatch):
    """An unknown starting file is allowed, with a warning; a known one is recorded by name, without one."""
    import dataclasses
    import hashlib
    import logging

    from thoracic.train import weights
    from thoracic.train.detector import DetectorTrainConfig, _initial_weights, pretrained_identity

    data = tmp_path / "data.yaml"
    data.write_text("nc: 14\n")
    cfg = DetectorTrainConfig(data=str(data), out=str(tmp_path), name="r", pretrained=str(tiny_pt))
    with caplog.at_level(logging.WARNING, logger="thoracic"):
        start, info = _initial_weights(cfg, 14)
    assert start == str(tiny_pt) and info["format"] == "ultralytics" and info["known_weights"] is None
    assert info["sha256"] == hashlib.sha256(tiny_pt.read_bytes()).hexdigest()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"{tiny_pt}: unknown weights" in caplog.records[0].getMessage()
    caplog.clear()
    entry = dataclasses.replace(weights.KNOWN_WEIGHTS[0], name="tiny-test", sha256=info["sha256"])
    monkeypatch.setattr(weights, "KNOWN_WEIGHTS", (entry,))
    with caplog.at_level(logging.WARNING, logger="thoracic"):
        assert pretrained_identity(tiny_pt) == {"sha256": info["sha256"], "known_weights": "tiny-test"}
    assert caplog.records == []
