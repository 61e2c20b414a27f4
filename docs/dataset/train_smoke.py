"""Prove that ultralytics trains on a thoracic YOLO export, fully offline (CPU, < 90 s).

Usage (from the repository root, with the ``train`` and ``data`` extras installed)::

    .venv/bin/python docs/dataset/train_smoke.py --export /tmp/nih-yolo [--epochs 1] [--imgsz 256]

``--export`` is a folder written by ``thoracic dataset export`` (see README.md here). The script
builds ``yolov5n.yaml`` from its definition (never a weight name: that would download), trains
for one epoch on ``data.yaml`` with ``workers=0``, and prints the metrics. It follows
../shared/ULTRALYTICS.md: YOLO_OFFLINE=1, a private YOLO_CONFIG_DIR holding DejaVuSans.ttf as
Arial.ttf / Arial.Unicode.ttf, settings ``sync=False``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def offline_environment(config_dir: Path) -> None:
    """Environment that keeps ultralytics off the network; call before importing it."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for sub in (config_dir, config_dir / "Ultralytics"):
        sub.mkdir(parents=True, exist_ok=True)
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            shutil.copyfile(font, sub / name)


def train(data_yaml: Path, project: Path, *, epochs: int = 1, imgsz: int = 256, model_yaml: str = "yolov5n.yaml") -> dict:
    """Train a detector built from ``model_yaml`` on ``data_yaml``; returns the final metrics."""
    from ultralytics import YOLO, settings
    from ultralytics.utils import torch_utils

    settings.update({"sync": False})
    torch_utils.NUM_THREADS = 2
    model = YOLO(model_yaml)
    model.train(
        data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=4, workers=0, device="cpu", project=str(project),
        name="smoke", exist_ok=True, plots=False, verbose=False, amp=False, val=True, seed=0, deterministic=True,
    )
    return dict(model.trainer.metrics or {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export", required=True, help="a `thoracic dataset export --format yolo` folder")
    p.add_argument("--data", default="data.yaml", help="the data yaml inside --export (default data.yaml)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--imgsz", type=int, default=256)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="thoracic-yolo-") as tmp:
        offline_environment(Path(tmp) / "config")
        t0 = time.perf_counter()
        metrics = train(Path(args.export) / args.data, Path(tmp) / "runs", epochs=args.epochs, imgsz=args.imgsz)
        print(f"trained {args.epochs} epoch(s) in {time.perf_counter() - t0:.1f} s; metrics: {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
