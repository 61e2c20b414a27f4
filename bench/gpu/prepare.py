"""Build the folder that travels to a lent GPU machine for ``bench/gpu/run.sh`` (issue 8, item 4).

That machine has Python 3.12, torch, onnxruntime (CPU build), OpenCV, pandas and matplotlib but no
package registry, no ultralytics and no ``../shared``, and everything sent must fit in 64 MiB
with the repository. This script writes ``.device/`` (git ignores it; pass it as a carried path):

- ``whl/``: cp312 wheels of what thoracic and ultralytics need beyond that image (pydicom,
  pylibjpeg + its OpenJPEG/libjpeg plug-ins, ultralytics, ultralytics-thop, ultralytics-platform),
  downloaded here with ``pip download`` at the versions of ``constraints.txt``;
- ``shim/polars``: a 20-line stand-in for polars (the wheel is 40 MB) that covers the one call
  ultralytics' trainer makes (``read_csv(...).to_dict(as_series=False)`` of results.csv) with
  pandas; nothing else of polars is reached with ``plots=False``;
- ``nih/``: the YOLO data set of a ``thoracic dataset export --format yolo`` (512 px, CLAHE),
  only the images of the fold files, re-encoded as JPEG quality 80 (about 16 MB instead of 130)
  with ``data_<fold>.yaml`` pointing at them; labels unchanged;
- ``yolov5n-coco.pt``: the COCO checkpoint for transfer learning;
- ``head/``: ``git archive HEAD`` of src/thoracic and bench (no model or sample files, which the
  run links from the working tree), so uncommitted edits in the checkout never reach the run.

Usage::

    .venv/bin/python bench/gpu/prepare.py --export runs/nih-yolo512 --fold 0 \\
        --coco ../shared/weights/yolov5n-coco.pt
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ("pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "ultralytics-opencv-headless",
          "ultralytics-thop", "ultralytics-platform")
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64")
POLARS_SHIM = '''"""Stand-in for polars on the GPU benchmark machine (no registry there; bench/gpu/prepare.py).

ultralytics' trainer reads results.csv with ``polars.read_csv(bytes).to_dict(as_series=False)``
to store it in each checkpoint; that is the only polars call a ``plots=False`` run makes.
"""
import io

import pandas as pd


class DataFrame:
    def __init__(self, df):
        self._df = df

    def to_dict(self, as_series=True):
        return {k: list(v) for k, v in self._df.to_dict(orient="list").items()}


def read_csv(source, infer_schema_length=None, **kwargs):
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    return DataFrame(pd.read_csv(source))
'''


def pinned(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.strip()
    raise SystemExit(f"{name} is not pinned in constraints.txt")


def wheels(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WHEELS:
        spec = pinned(name)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", "--implementation", "cp", "-d", str(dest), spec]
        for plat in PLATFORMS:
            cmd += ["--platform", plat]
        subprocess.run(cmd, check=True)


def dataset(export: Path, fold: int, dest: Path, quality: int) -> None:
    import cv2

    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "labels").mkdir(parents=True, exist_ok=True)
    lists = {}
    for split in ("train", "val"):
        rows = []
        for line in (export / f"{split}_{fold}.txt").read_text().splitlines():
            if not line.strip():
                continue
            src = export / line.strip()
            image = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise SystemExit(f"cannot read {src}")
            cv2.imwrite(str(dest / "images" / f"{src.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            label = export / "labels" / f"{src.stem}.txt"
            if label.is_file():
                shutil.copyfile(label, dest / "labels" / label.name)
            rows.append(f"./images/{src.stem}.jpg")
        (dest / f"{split}_{fold}.txt").write_text("\n".join(rows) + "\n")
        lists[split] = len(rows)
    yaml = (export / f"data_{fold}.yaml").read_text().splitlines()
    out = []
    for line in yaml:
        if line.startswith("path:"):
            line = "path: ."  # bench/gpu/run.sh writes the absolute folder there
        out.append(line)
    (dest / f"data_{fold}.yaml").write_text("\n".join(out) + "\n")
    shutil.copyfile(export / "chain.json", dest / "chain.json")
    print(f"data: {lists['train']} train + {lists['val']} val images, JPEG quality {quality}")


def head(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    blob = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", "--", "src/thoracic", "bench",
                           ":(exclude)src/thoracic/models/*/*.onnx", ":(exclude)src/thoracic/samples"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    (dest / "REVISION").write_text(rev + "\n")
    print(f"head: {rev}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True, type=Path, help="folder of `thoracic dataset export --format yolo`")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--coco", required=True, type=Path, help="original YOLOv5n COCO checkpoint")
    ap.add_argument("--quality", type=int, default=80, help="JPEG quality of the travelling images")
    ap.add_argument("--out", type=Path, default=ROOT / ".device")
    args = ap.parse_args()
    out = args.out
    out.mkdir(exist_ok=True)
    wheels(out / "whl")
    (out / "shim" / "polars").mkdir(parents=True, exist_ok=True)
    (out / "shim" / "polars" / "__init__.py").write_text(POLARS_SHIM)
    if (out / "nih").exists():
        shutil.rmtree(out / "nih")
    dataset(args.export, args.fold, out / "nih", args.quality)
    shutil.copyfile(args.coco, out / "yolov5n-coco.pt")
    head(out / "head")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
