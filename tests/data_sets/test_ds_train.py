"""ultralytics trains on a thoracic YOLO export (offline, CPU). Skipped without ultralytics; CI requires it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ds_helpers import SAMPLES, write

from thoracic.batch.export import ExportConfig, export_dataset
from thoracic.data import load_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ultralytics_trains_on_the_export(tmp_path):
    if importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("matplotlib") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ultralytics is required in CI")
        pytest.skip("ultralytics is not installed")
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
