"""Measure a lung model on a split of the lung data set (Dice and IoU at the original size).

Runs the exact inference path (``thoracic.io.read`` -> ``LungSegmenter.segment``: ONNX Runtime,
upsampling of the probability map to the original size, threshold, the largest two components,
hole filling) and compares each mask with the reference mask at the original size.

    python docs/lungs/evaluate_lungs.py --data ../shared/data/lungseg --split eval_nc --out /tmp/eval_nc
    python docs/lungs/evaluate_lungs.py --data ../shared/data/lungseg --split train --out /tmp/train \
        --worst 4 --overlays docs/lungs
    python docs/lungs/evaluate_lungs.py --data ../shared/data/lungseg --split eval_nc --out /tmp/eval_nc \
        --model runs/final/lungs.onnx --baseline src/thoracic/models/lungs/lungs.onnx

Writes ``scores.csv`` (per image) and ``summary.json`` to ``--out``: mean, median, 10th percentile
and minimum of Dice and IoU, with 95% bootstrap intervals (images resampled, 2,000 times, seed 0)
of the mean and the 10th percentile of Dice. ``--baseline`` measures a second model on the same
images in the same run (``scores_baseline.csv``) and the paired difference, with its interval. ``--overlays`` draws the worst
cases (reference outline in green, prediction in orange); it refuses images whose licence is
non-commercial (``NC``), which may not be committed to the project.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from thoracic.anatomy import LungSegmenter
from thoracic.io import read
from thoracic.preprocess import to_uint8
from thoracic.train.lungs import dice_iou, load_pairs, read_mask


def stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {
        "n": int(a.size),
        "mean": round(float(a.mean()), 4),
        "median": round(float(np.median(a)), 4),
        "p10": round(float(np.percentile(a, 10)), 4),
        "min": round(float(a.min()), 4),
    }


def draw(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, title: str, max_side: int = 512) -> np.ndarray:
    h, w = truth.shape
    s = max_side / max(h, w)
    size = (round(w * s), round(h * s))
    rgb = cv2.cvtColor(cv2.resize(to_uint8(image), size, interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2RGB)
    for m, color in ((truth, (0, 220, 0)), (pred, (255, 140, 0))):
        small = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(rgb, contours, -1, color, 2)
    cv2.putText(rgb, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
    return rgb


def score(seg: LungSegmenter, pairs: list) -> tuple[list[dict], float]:
    """Dice and IoU of each pair through the exact inference path, and the seconds it took."""
    rows = []
    t0 = time.time()
    for pair in pairs:
        rg = read(pair.image, seg.contract.chain.read_options(), image_id=pair.image_id)
        lungs = seg.segment(rg)
        truth = read_mask(pair.mask)
        d, j = dice_iou(lungs.mask > 0, truth)
        rows.append({"image_id": pair.image_id, "license": pair.license, "dice": round(d, 5), "iou": round(j, 5),
                     "fallback": lungs.roi.fallback_reason, "components": lungs.components})
    return rows, time.time() - t0


def bootstrap(values: np.ndarray, resamples: int, *, paired: np.ndarray | None = None, seed: int = 0) -> dict:
    """95% percentile-bootstrap intervals (images resampled with replacement) of the mean and the
    10th percentile; with ``paired``, of the difference ``values - paired`` on the same resamples."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    if paired is not None:
        means = values[idx].mean(axis=1) - paired[idx].mean(axis=1)
        p10s = np.percentile(values[idx], 10, axis=1) - np.percentile(paired[idx], 10, axis=1)
    else:
        means = values[idx].mean(axis=1)
        p10s = np.percentile(values[idx], 10, axis=1)
    return {"mean_ci95": [round(float(x), 4) for x in np.percentile(means, [2.5, 97.5])],
            "p10_ci95": [round(float(x), 4) for x in np.percentile(p10s, [2.5, 97.5])],
            "resamples": resamples}


def describe(split: str, seg: LungSegmenter, rows: list[dict], seconds: float, resamples: int) -> dict:
    dice = np.array([r["dice"] for r in rows])
    return {
        "split": split,
        "model": seg.path,
        "sha256": seg.sha256,
        "dice": {**stats(list(dice)), **bootstrap(dice, resamples)},
        "iou": stats([r["iou"] for r in rows]),
        "fallbacks": sum(bool(r["fallback"]) for r in rows),
        "seconds_per_image": round(seconds / len(rows), 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="eval_nc")
    p.add_argument("--model", default=None, help="ONNX lung model (default: the shipped one)")
    p.add_argument("--baseline", default=None, help="also measure this ONNX lung model on the same images (paired)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--out", required=True, help="folder for scores.csv and summary.json")
    p.add_argument("--worst", type=int, default=0, help="draw this many worst cases")
    p.add_argument("--overlays", default=None, help="folder for the worst-case overlays (CC BY images only)")
    args = p.parse_args(argv)

    seg = LungSegmenter.load(args.model)
    pairs = load_pairs(args.data, args.split)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, seconds = score(seg, pairs)
    with (out / "scores.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    summary = describe(args.split, seg, rows, seconds, args.resamples)
    if args.baseline:
        base = LungSegmenter.load(args.baseline)
        base_rows, base_seconds = score(base, pairs)
        with (out / "scores_baseline.csv").open("w", newline="") as fh:
            wr = csv.DictWriter(fh, fieldnames=list(base_rows[0]))
            wr.writeheader()
            wr.writerows(base_rows)
        summary["baseline"] = describe(args.split, base, base_rows, base_seconds, args.resamples)
        diff = np.array([r["dice"] for r in rows]) - np.array([r["dice"] for r in base_rows])
        summary["dice_difference"] = {
            "mean": round(float(diff.mean()), 4),
            "better": int((diff > 0).sum()), "worse": int((diff < 0).sum()),
            **bootstrap(np.array([r["dice"] for r in rows]), args.resamples, paired=np.array([r["dice"] for r in base_rows])),
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if args.worst and args.overlays:
        worst = sorted(rows, key=lambda r: r["dice"])[: args.worst]
        if any("NC" in r["license"].upper() for r in worst):
            print("refusing to draw non-commercial (NC) images: they may not be committed", file=sys.stderr)
            return 1
        folder = Path(args.overlays)
        folder.mkdir(parents=True, exist_ok=True)
        by_id = {pp.image_id: pp for pp in pairs}
        for rank, r in enumerate(worst, 1):
            pair = by_id[r["image_id"]]
            rg = read(pair.image, seg.contract.chain.read_options(), image_id=pair.image_id)
            pred = seg.segment(rg).mask > 0
            title = f"{args.split} #{rank} {pair.image_id} Dice {r['dice']:.3f} ({pair.license})"
            rgb = draw(rg.pixels, read_mask(pair.mask), pred, title)
            cv2.imwrite(str(folder / f"worst_{args.split}_{rank}_{pair.image_id}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
