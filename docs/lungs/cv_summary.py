"""Summarize a cross-validation of the lung model inside split=train.

Each fold is a run of ``thoracic train lungs --folds K --fold i --out DIR/fold{i}`` (same settings as
the shipped model); this reads their ``fold_scores.csv`` (Dice/IoU of the held-out fold at the
original size, after post-processing) and ``log.csv`` (held-out Dice every 5 epochs), and draws the
worst out-of-fold cases (CC BY images of split=train only).

    python docs/lungs/cv_summary.py --runs /tmp/lungs-cv --data ../shared/data/lungseg --worst 4 --overlays docs/lungs
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from evaluate_lungs import draw, stats  # noqa: E402

from thoracic.train.lungs import dice_iou, load_pairs, read_mask  # noqa: E402
from thoracic.anatomy.postprocess import postprocess  # noqa: E402
from thoracic.io import read  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, help="folder with fold0/, fold1/, ...")
    p.add_argument("--data", required=True)
    p.add_argument("--worst", type=int, default=0)
    p.add_argument("--overlays", default=None)
    args = p.parse_args(argv)
    rows, curves = [], {}
    for fold in sorted(d for d in Path(args.runs).glob("fold*") if d.is_dir()):
        with (fold / "fold_scores.csv").open() as fh:
            rows += [dict(r, fold=fold.name) for r in csv.DictReader(fh)]
        with (fold / "log.csv").open() as fh:
            curves[fold.name] = {int(r["epoch"]): float(r["val_dice"]) for r in csv.DictReader(fh) if r["val_dice"]}
    summary = {
        "folds": len(curves),
        "dice": stats([float(r["dice"]) for r in rows]),
        "iou": stats([float(r["iou"]) for r in rows]),
        "val_dice_by_epoch": {e: round(float(np.mean([c[e] for c in curves.values() if e in c])), 4)
                              for e in sorted({e for c in curves.values() for e in c})},
    }
    # post-processing chosen on the out-of-fold probabilities (the shipped contract takes the best)
    pairs_all = {pp.image_id: pp for pp in load_pairs(args.data, "train")}
    truths = {r["image_id"]: read_mask(pairs_all[r["image_id"]].mask) for r in rows}
    probs = {}
    for r in rows:
        small = np.load(Path(args.runs) / r["fold"] / f"oof_{r['image_id']}.npy").astype(np.float32)
        probs[r["image_id"]] = cv2.resize(small, truths[r["image_id"]].shape[::-1], interpolation=cv2.INTER_LINEAR)
    grid = {}
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        for keep in (0, 2):
            for holes in (False, True):
                scores = [dice_iou(postprocess(probs[k], threshold, keep, holes) > 0, truths[k])[0] for k in probs]
                grid[f"threshold={threshold} keep={keep} fill_holes={holes}"] = round(float(np.mean(scores)), 4)
    summary["postprocess_grid_mean_dice"] = grid
    summary["postprocess_best"] = max(grid, key=grid.get)
    print(json.dumps(summary, indent=2))
    (Path(args.runs) / "cv_summary.json").write_text(json.dumps(summary, indent=2))
    if args.worst and args.overlays:
        pairs = {pp.image_id: pp for pp in load_pairs(args.data, "train")}
        worst = [r for r in sorted(rows, key=lambda r: float(r["dice"])) if "BY" in r["license"] and "NC" not in r["license"]]
        for rank, r in enumerate(worst[: args.worst], 1):
            pair = pairs[r["image_id"]]
            rg = read(pair.image)
            truth = read_mask(pair.mask)
            small = np.load(Path(args.runs) / r["fold"] / f"oof_{pair.image_id}.npy").astype(np.float32)
            prob = cv2.resize(small, truth.shape[::-1], interpolation=cv2.INTER_LINEAR)
            pred = postprocess(prob) > 0
            title = f"CV out-of-fold #{rank} {pair.image_id} Dice {float(r['dice']):.3f} ({pair.license})"
            rgb = draw(rg.pixels, truth, pred, title)
            out = Path(args.overlays) / f"worst_cv_{rank}_{pair.image_id}.png"
            cv2.imwrite(str(out), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
