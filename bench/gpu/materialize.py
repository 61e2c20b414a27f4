"""On the GPU machine: turn ``.device/`` (bench/gpu/prepare.py) into training folders.

- ``DATA/det/<variant>/``: PNG images (CLAHE applied where the variant says, with thoracic's own
  ``clahe`` step), the labels, ``train_<k>.txt`` / ``val_<k>.txt``, ``data_<k>.yaml`` with an
  absolute ``path:`` and the variant's ``chain.json`` (the chain its ONNX will record);
- ``DATA/cls/images/``: the classifier's inputs (yolo-512-clahe + letterbox), PNG: made here from
  ``det/plain512`` for the detector's images, decoded for the rest;
- ``DATA/lite0.pth``: the ImageNet state dict back in float32 (the unused ``_fc`` zero-filled).

Usage: ``python bench/gpu/materialize.py .device /tmp/data [--variants a,b] [--procs 16]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _det_one(task: tuple[str, str, bool]) -> None:
    from thoracic.preprocess.intensity import clahe

    src, dst, use_clahe = task
    img = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RuntimeError(f"cannot decode {src}")
    if use_clahe:
        img = _u8(clahe(img.astype(np.float32) / 255.0))
    cv2.imwrite(dst, img, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def _cls_one(task: tuple[str, str, int, bool]) -> None:
    from thoracic.preprocess.geometry import letterbox
    from thoracic.preprocess.intensity import clahe

    src, dst, imgsz, from_plain = task
    img = cv2.imread(src, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise RuntimeError(f"cannot decode {src}")
    if from_plain:  # yolo-512-clahe = plain 512 then CLAHE; then the model's letterbox
        x = clahe(img.astype(np.float32) / 255.0)
        out = letterbox(x, imgsz, interpolation="linear")
        x = out[0] if isinstance(out, tuple) else out
        img = _u8(np.asarray(x, np.float32))
    cv2.imwrite(dst, img, [cv2.IMWRITE_PNG_COMPRESSION, 1])


def lite0(device_dir: Path, dest: Path) -> None:
    import torch

    blob = torch.load(device_dir / "lite0-fp16.pt", map_location="cpu", weights_only=True)
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()}
    for k, shape in blob["fc_shapes"].items():
        state[k] = torch.zeros(shape)
    torch.save(state, dest)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("device", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--variants", default="", help="comma-separated (default: all of plan.json)")
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--no-cls", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    dev, data = args.device.resolve(), args.data.resolve()
    plan = json.loads((dev / "plan.json").read_text())
    names = [v for v in args.variants.split(",") if v] or list(plan["variants"])
    tasks: list = []
    for name in names:
        v = plan["variants"][name]
        src = dev / "det" / v["source"]
        out = data / "det" / name
        if out.exists():
            shutil.rmtree(out)
        (out / "images").mkdir(parents=True)
        shutil.copytree(src / "labels", out / "labels")
        for p in src.iterdir():
            if p.suffix == ".txt":
                shutil.copyfile(p, out / p.name)
            elif p.suffix == ".yaml":
                text = [f'path: "{out}"' if line.startswith("path:") else line for line in p.read_text().splitlines()]
                (out / p.name).write_text("\n".join(text) + "\n")
        (out / "chain.json").write_text(json.dumps(v["chain"], indent=2) + "\n")
        tasks += [(str(img), str(out / "images" / (img.stem + ".png")), bool(v["clahe"]))
                  for img in sorted((src / "images").glob("*.webp"))]
    cls_tasks: list = []
    if not args.no_cls:
        cls = data / "cls"
        if cls.exists():
            shutil.rmtree(cls)
        (cls / "images").mkdir(parents=True)
        for f in ("images.csv", "images_f1234.csv", "folds.csv"):
            shutil.copyfile(dev / "cls" / f, cls / f)
        imgsz = int(plan["classifier"]["imgsz"])
        shipped = {p.stem: p for p in (dev / "cls" / "images").glob("*.webp")}
        pooled = {p.stem: p for p in (dev / "det" / "plain512" / "images").glob("*.webp")}
        for stem, p in {**pooled, **shipped}.items():
            cls_tasks.append((str(p), str(cls / "images" / f"{stem}.png"), imgsz, stem not in shipped))
        lite0(dev, data / "lite0.pth")
    with ProcessPoolExecutor(max(1, args.procs)) as pool:
        list(pool.map(_det_one, tasks, chunksize=16))
        list(pool.map(_cls_one, cls_tasks, chunksize=16))
    print(f"materialize: {len(tasks)} detector images ({', '.join(names)}), {len(cls_tasks)} classifier images "
          f"in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
