"""``thoracic segment`` per image: a candidate lung model against the shipped one, in one run.

    .venv/bin/python bench/lungs.py --model runs/final/lungs.onnx             # 40 NIH films, 3 rounds
    .venv/bin/python bench/lungs.py --model M.onnx --images DIR --count 40 --rounds 3 --threads 2 --check

Each round segments the same images with each model (``segment_files``, the library call behind
``thoracic segment``: read, content check, ONNX Runtime on ``--threads`` threads, up-sampling,
post-processing, mask PNG written), alternating which model goes first, into a fresh folder. It
prints seconds per image (median of the rounds) for both models, the ratio candidate / shipped,
and the ONNX inference alone per image. The load average is printed before and after: on a busy
machine the absolute times grow, the ratio less so. ``--check`` exits 1 when the candidate is
slower than the shipped model by more than ``--tolerance`` (default 5%).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from thoracic._fs import find_inputs
from thoracic.anatomy import LungSegmenter
from thoracic.batch.segment import SegmentConfig, segment_files
from thoracic.models.registry import model_path

DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nih" / "images"


def onnx_only(seg: LungSegmenter, repeats: int = 20) -> float:
    w, h = seg.contract.input_size
    x = np.random.default_rng(0).normal(size=(1, 1, h, w)).astype(np.float32)
    sess = seg.session
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    t = time.perf_counter()
    for _ in range(repeats):
        sess.run(None, {name: x})
    return (time.perf_counter() - t) / repeats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the candidate ONNX lung model")
    p.add_argument("--baseline", default=None, help="the model to compare with (default: the shipped one)")
    p.add_argument("--images", default=str(DEFAULT_IMAGES), help="folder of radiographs (default ../shared NIH images)")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", action="store_true")
    p.add_argument("--tolerance", type=float, default=0.05)
    args = p.parse_args(argv)

    images = sorted(find_inputs([args.images]))[: args.count]
    if not images:
        print(f"no images in {args.images}", file=sys.stderr)
        return 2
    models = {"shipped": args.baseline or str(model_path("lungs")), "candidate": args.model}
    segs = {k: LungSegmenter.load(v, threads=args.threads) for k, v in models.items()}
    print(f"{len(images)} images from {args.images}; {args.threads} threads; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for k, s in segs.items():
        print(f"  {k}: {models[k]} ({Path(models[k]).stat().st_size:,} bytes, input {s.contract.input_size})")
    times: dict[str, list[float]] = {k: [] for k in segs}
    work = Path(tempfile.mkdtemp(prefix="bench_lungs_"))
    try:
        order = list(segs)
        for r in range(args.rounds):
            for k in order if r % 2 == 0 else order[::-1]:
                out = work / f"{k}_{r}"
                t = time.perf_counter()
                summary = segment_files(images, out, SegmentConfig(threads=args.threads), segmenter=segs[k])
                times[k].append((time.perf_counter() - t) / len(images))
                if summary.failed:
                    print(f"  {k}: {summary.failed} images failed", file=sys.stderr)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    per = {k: statistics.median(v) for k, v in times.items()}
    infer = {k: onnx_only(s) for k, s in segs.items()}
    for k in segs:
        print(f"{k:9s} {per[k]:.4f} s/image (rounds: {', '.join(f'{x:.4f}' for x in times[k])}); "
              f"ONNX alone {infer[k]:.4f} s")
    ratio = per["candidate"] / per["shipped"]
    print(f"ratio candidate/shipped: {ratio:.3f} per image (segment), {infer['candidate'] / infer['shipped']:.3f} "
          f"(ONNX alone)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if args.check and ratio > 1 + args.tolerance else 0


if __name__ == "__main__":
    sys.exit(main())
