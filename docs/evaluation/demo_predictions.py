"""Make DEMONSTRATION predictions from the real VinBigData labels (not a model result).

For every image one of its three readers is drawn (seeded); that reader's finding boxes are
jittered (each side moved by up to 10 % of the box size), 10 % of them are dropped, each image
gets 0-2 false-positive boxes of random classes, and scores are drawn so that kept boxes tend to
score higher than false positives. The "No finding" score is high when the drawn reader said the
image is normal. The truth is the other two readers' rows (fused with WBF by `thoracic evaluate`).

    python docs/evaluation/demo_predictions.py /work/shared/data/vinbigdata/train.csv.gz OUT_DIR

writes OUT_DIR/demo_preds.csv, OUT_DIR/demo_truth.csv and OUT_DIR/demo_preds.images.csv.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from thoracic.data import read_image_sizes
from thoracic.evaluate.tables import read_truth
from thoracic.labels import FINDINGS, NO_FINDING


def main(train_csv: str, out: str, meta: str | None = None, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sizes = read_image_sizes(meta)[0] if meta else None
    table = read_truth(train_csv, sizes=sizes)
    rows = defaultdict(list)
    for r in table.rows():
        rows[r[0]].append(r)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "demo_preds.csv", "w", newline="") as fp, open(out_dir / "demo_truth.csv", "w", newline="") as ft, \
         open(out_dir / "demo_preds.images.csv", "w", newline="") as fs:
        wp, wt, ws = csv.writer(fp), csv.writer(ft), csv.writer(fs)
        wp.writerow(["image_id", "label", "score", "x_min", "y_min", "x_max", "y_max"])
        wt.writerow(["image_id", "label", "x_min", "y_min", "x_max", "y_max", "reader"])
        ws.writerow(["image_id", "source", "status", "error", "width", "height", "p_abnormal", "models", "thoracic_version"])
        for image in sorted(rows):
            rs = rows[image]
            readers = sorted({r[6] for r in rs})
            chosen = readers[int(rng.integers(len(readers)))]
            for r in rs:
                if r[6] != chosen:
                    wt.writerow([image, r[1], *(f"{v:.1f}" for v in r[2:6]), r[6]])
            mine = [r for r in rs if r[6] == chosen and r[1] != NO_FINDING]
            info = table.images[image]
            w = info.width or max([r[4] for r in rs] + [1024.0])
            h = info.height or max([r[5] for r in rs] + [1024.0])
            for r in mine:
                if rng.random() < 0.1:
                    continue
                x0, y0, x1, y1 = r[2:6]
                bw, bh = x1 - x0, y1 - y0
                d = rng.uniform(-0.1, 0.1, 4) * [bw, bh, bw, bh]
                nx0, ny0 = max(0.0, x0 + d[0]), max(0.0, y0 + d[1])
                nx1, ny1 = min(w, max(nx0 + 1, x1 + d[2])), min(h, max(ny0 + 1, y1 + d[3]))
                wp.writerow([image, r[1], f"{rng.beta(4, 2):.4f}", f"{nx0:.1f}", f"{ny0:.1f}", f"{nx1:.1f}", f"{ny1:.1f}"])
            for _ in range(int(rng.integers(0, 3))):
                bw, bh = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
                x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
                label = FINDINGS[int(rng.integers(len(FINDINGS)))]
                wp.writerow([image, label, f"{rng.beta(2, 4):.4f}", f"{x0:.1f}", f"{y0:.1f}", f"{x0 + bw:.1f}", f"{y0 + bh:.1f}"])
            p_abn = rng.beta(5, 2) if mine else rng.beta(2, 5)
            wp.writerow([image, NO_FINDING, f"{1 - p_abn:.4f}", 0, 0, 1, 1])
            ws.writerow([image, "", "ok", "", info.width or "", info.height or "", f"{p_abn:.4f}", "demo", ""])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
