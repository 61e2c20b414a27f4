"""Build the content check's coefficients (src/thoracic/models/content/content.json).

    python scripts/build_content_check.py --shared /work/shared --out src/thoracic/models/content/content.json

Training films (frontal chest radiographs only; no negatives are needed by a one-class model):
the NIH images of half the patients (patients drawn with seed 0; the other half stays for
validation) and the lungseg ``split=train`` images (CC BY / "authorized for everyone"). The OOD
set and lungseg ``eval_nc`` are never read here.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from thoracic.io import ReadConfig, read
from thoracic.io.content import ContentModel, content_features

COMPONENTS = 20
QUANTILE = 0.998  # the threshold: this quantile of the training films' scores
MAX_COLOUR = 0.05
THUMB = 24


def nih_split(shared: Path) -> tuple[list[Path], list[Path]]:
    """(train, validation) NIH images, split by patient with seed 0 (half the patients each)."""
    images = sorted((shared / "data/nih/images").glob("*.jpg"))
    patients = sorted({p.name.split("_")[0] for p in images})
    train = set(np.random.default_rng(0).permutation(patients)[: len(patients) // 2])
    return ([p for p in images if p.name.split("_")[0] in train],
            [p for p in images if p.name.split("_")[0] not in train])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    train, _ = nih_split(args.shared)
    with open(args.shared / "data/lungseg/pairs.csv", newline="") as fh:
        train += [args.shared / "data/lungseg/images" / r["image"] for r in csv.DictReader(fh) if r["split"] == "train"]
    opts = ReadConfig(check_content=False)
    X = np.stack([content_features(read(p, opts).pixels, THUMB) for p in train]).astype(np.float64)
    mean, scale = X.mean(0), X.std(0) + 1e-6
    Z = (X - mean) / scale
    _, S, Vt = np.linalg.svd(Z, full_matrices=False)
    V, var = Vt[:COMPONENTS], S[:COMPONENTS] ** 2 / (len(Z) - 1)
    c = Z @ V.T
    m = np.sqrt((c * c / var).sum(1) / COMPONENTS)
    r = np.sqrt(((Z - c @ V) ** 2).mean(1))
    m_med, r_med = float(np.median(m)), float(np.median(r))
    scores = m / m_med + r / r_med
    info = {"training_data": f"{len(train)} frontal chest films: NIH ChestX-ray14 (half the patients, seed 0), "
                             "lungseg split=train", "components": COMPONENTS, "threshold_rule":
            f"quantile {QUANTILE} of the training films' scores", "build": "scripts/build_content_check.py"}
    model = ContentModel(thumb=THUMB, mean=mean.astype(np.float32), scale=scale.astype(np.float32),
                         components=V.astype(np.float32), variances=var.astype(np.float32),
                         mahalanobis_median=round(m_med, 6), residual_median=round(r_med, 6),
                         threshold=round(float(np.quantile(scores, QUANTILE)), 4), max_colour=MAX_COLOUR, info=info)
    import json

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{len(train)} films, threshold {model.threshold}, wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
