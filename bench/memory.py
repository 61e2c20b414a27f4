"""P4: peak memory (RSS) of analysing one 3000x3000 16-bit DICOM.

What it measures
----------------
The input is built here: the bundled RG1 chest CR (JPEG 2000, 1841x1955, 15 bits stored)
decoded and upsampled (bilinear) to 3000x3000, saved as an uncompressed 16-bit DICOM (explicit
VR little endian; 18 MB of pixel data). Each case runs in a fresh Python process, so imports,
model sessions and every temporary array count. The peak is the kernel's high-water mark of the
process image (``VmHWM`` in ``/proc/self/status``, read by the process as it ends; Linux only).
``getrusage``'s ``ru_maxrss`` is not used: it also counts the pages of the parent the process
was forked from, which inflated a first version of this benchmark by the bench's own 290 MB:

* floor: ``import thoracic`` + ``Predictor.load()`` (the shipped detector and classifier), no image;
* ``thoracic predict big.dcm --out preds.csv`` (the CLI with its defaults);
* ``Analyzer.load().analyze(big.dcm)``: findings + lungs + heatmap (the services' call); and three
  such analyses in a row in a process with the allocator setting of thoracic's commands
  (``thoracic._process.keep_freed_memory``: freed blocks are kept for the next image);
* baseline: ultralytics ``YOLO(detector.onnx).predict`` of the same image as a 3000x3000 8-bit PNG.

Target (issue 8, P4): at most 1.5 GB for the thoracic cases. Medians of ``--repeats`` runs.

How to run
----------
From the repository root::

    .venv/bin/python bench/memory.py
    .venv/bin/python bench/memory.py --repeats 3 --check
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from predict import ULTRALYTICS_ENV, load_average, machine  # noqa: E402

TARGET_BYTES = 1.5e9
SIDE = 3000

FLOOR = """
from thoracic.inference.predictor import Predictor
Predictor.load()
"""
ANALYZE = """
import sys
from thoracic.inference.analyzer import Analyzer
a = Analyzer.load().analyze(sys.argv[1])
assert a.heatmap is not None and a.width == 3000
"""
ANALYZE_SERVICE = """
import sys
from thoracic._process import keep_freed_memory
keep_freed_memory()  # as `thoracic serve` and `thoracic dicom-node` run
from thoracic.inference.analyzer import Analyzer
an = Analyzer.load()
for _ in range(3):  # a service analyses one image after another
    a = an.analyze(sys.argv[1])
assert a.heatmap is not None and a.width == 3000
"""
ULTRALYTICS = """
import sys, torch
from ultralytics import YOLO
m = YOLO(sys.argv[2], task="detect")
torch.set_num_threads(2)
m.predict(sys.argv[1], imgsz=512, verbose=False, device="cpu")
"""


def build_dicom(work: Path) -> tuple[Path, Path]:
    """The 3000x3000 16-bit DICOM and the same image as an 8-bit PNG (its window)."""
    import cv2
    import numpy as np
    import pydicom

    from thoracic.io import read
    from thoracic.io.radiograph import ReadConfig

    ds = pydicom.dcmread(ROOT / "src" / "thoracic" / "samples" / "RG1_J2KI.dcm")
    ds.decompress()
    big = cv2.resize(ds.pixel_array, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR).astype(np.uint16)
    ds.Rows, ds.Columns = SIDE, SIDE
    ds.PixelData = big.tobytes()
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        if keyword in ds:
            ds.data_element(keyword).value = [float(v) * 1841 / SIDE for v in ds.data_element(keyword).value]
    path = work / "big_3000x3000_16bit.dcm"
    ds.save_as(path, enforce_file_format=True)
    rg = read(path, ReadConfig(normalize="window"))
    png = work / "big.png"
    cv2.imwrite(str(png), np.clip(np.floor(rg.pixels * 255 + 0.5), 0, 255).astype(np.uint8))
    return path, png


REPORT = """
import re as _re
with open("/proc/self/status") as _fh:
    print("VmHWM", _re.search(r"VmHWM:\\s+(\\d+) kB", _fh.read()).group(1), flush=True)
"""
PREDICT_CLI = """
import sys
from thoracic.cli.main import main
assert main(["predict", *sys.argv[1:]]) == 0
"""


def peak_rss(code: str, args: list[str], env: dict[str, str] | None = None) -> int:
    """Peak RSS in bytes of a fresh Python process running ``code`` with ``args``."""
    proc = subprocess.run([sys.executable, "-c", code + REPORT, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"a measured process failed ({proc.returncode}): {proc.stderr[-1000:]}")
    line = next(x for x in proc.stdout.splitlines()[::-1] if x.startswith("VmHWM "))
    return int(line.split()[1]) * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="P4: peak RSS of analysing one 3000x3000 16-bit DICOM")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="exit 1 when the target fails")
    args = ap.parse_args(argv)
    from thoracic.models.registry import model_path

    print(f"machine: {machine()}")
    print(f"load average before: {load_average()}")
    (BENCH_DIR / "_work").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="memory-", dir=BENCH_DIR / "_work"))
    env = dict(os.environ, YOLO_CONFIG_DIR=str(work / "yolo-config"), **ULTRALYTICS_ENV)
    try:
        dcm, png = build_dicom(work)
        cases = [
            ("floor: import + Predictor.load(), no image", FLOOR, [], False),
            ("thoracic predict big.dcm (CLI defaults)", PREDICT_CLI, [str(dcm), "--out", str(work / "p.csv"), "-q"], True),
            ("Analyzer.analyze(big.dcm): findings + lungs + heatmap", ANALYZE, [str(dcm)], True),
            ("  same, 3 images in a row with the process setting of the services (keep_freed_memory)",
             ANALYZE_SERVICE, [str(dcm)], True),
            ("baseline: ultralytics YOLO(detector.onnx).predict(big.png)", ULTRALYTICS,
             [str(png), str(model_path("detector"))], False),
        ]
        peaks: dict[str, list[int]] = {name: [] for name, _, _, _ in cases}
        for _ in range(args.repeats):
            for name, code, cargs, _ in cases:
                peaks[name].append(peak_rss(code, cargs, env))
        base = statistics.median(peaks[cases[-1][0]])
        ok = True
        print(f"\nP4: peak RSS, one {SIDE}x{SIDE} 16-bit DICOM (median of {args.repeats}; ratio = vs ultralytics; "
              f"target <= {TARGET_BYTES / 1e9:.1f} GB)")
        for name, _, _, targeted in cases:
            peak = statistics.median(peaks[name])
            verdict = ""
            if targeted:
                verdict = "PASS" if peak <= TARGET_BYTES else "FAIL"
                ok &= peak <= TARGET_BYTES
            print(f"  {peak / 1e6:7.0f} MB  {peak / base:5.2f}x  {verdict:4s}  {name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"\nload average after: {load_average()}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
