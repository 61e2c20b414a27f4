#!/usr/bin/env python3
"""Choose the shipped detector's clinical operating points on its validation fold (issue 16).

Predicts the validation fold of the detector's training split (NIH ChestX-ray14 subset in
``../shared/data/nih``, patient-grouped stratified folds of ``thoracic dataset export --folds 5
--seed 0``, fold 0: 133 images, 87 boxes) with the models the clinical outputs run (the detector
and the shipped classifier's 2-class filter, ``PredictConfig()`` defaults: every box from 0.01),
then picks each trained finding's operating point by the rule of
:func:`thoracic.evaluate.operating_points.choose_operating_points` (the F1-best score at IoU 0.4
on the merged clinical list, the default 0.3 for findings with fewer than 10 truth boxes or a best
F1 resting on fewer than 3 hits) and
prints the table. With ``--write`` the points go into the model file's metadata
(``extra["operating_points"]``) and the new sha256 is printed::

    scripts/operating_points.py --nih ../shared/data/nih                # measure only
    scripts/operating_points.py --nih ../shared/data/nih --write        # into the shipped detector.onnx

It also prints what the clinical outputs show on the fold before (every box from 0.1, not
merged: the old SR/GSPS threshold) and after (the operating points, merged).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nih", default="../shared/data/nih", help="folder with images.csv, boxes.csv, images/")
    p.add_argument("--model", default=None, help="detector ONNX (default: the shipped one)")
    p.add_argument("--folds", type=int, default=5, help="number of folds of the training split (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds (default 0)")
    p.add_argument("--fold", type=int, default=0, help="the validation fold (default 0)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--write", action="store_true", help="store the points in the model file's metadata")
    p.add_argument("--json", default=None, help="also write the choices as JSON here")
    args = p.parse_args(argv)

    import onnx

    from thoracic.data import kfold_split
    from thoracic.data.annotations import Annotations
    from thoracic.data.nih import load_nih
    from thoracic.detect.clinical import DEFAULT_MIN_SCORE, MERGE_IOU, OperatingPoints
    from thoracic.evaluate.operating_points import GRID, MIN_TP, MIN_TRUTH, choices_markdown, choose_operating_points
    from thoracic.inference.predictor import Predictor
    from thoracic.labels import NO_FINDING
    from thoracic.models.meta import OPERATING_POINTS_KEY
    from thoracic.models.registry import model_path
    from thoracic.models.runtime import file_sha256, write_meta

    nih = Path(args.nih)
    ann = load_nih(nih / "images.csv", nih / "boxes.csv", images=nih / "images")
    folds = kfold_split(ann, args.folds, seed=args.seed)
    labelled = set(ann.image_id[ann.is_finding].tolist()) | set(ann.image_id[ann.label == NO_FINDING].tolist())
    val = sorted(i for i, k in folds.items() if k == args.fold and i in labelled)
    images = {i: ann.images[i] for i in val}
    truth_rows = [(i, lab, *b) for i, lab, b, f in zip(ann.image_id.tolist(), ann.label.tolist(), ann.boxes.tolist(),
                                                         ann.is_finding.tolist(), strict=True) if f and i in images]
    truth = Annotations.from_rows(images, truth_rows)
    print(f"fold {args.fold} of {args.folds} (seed {args.seed}): {len(val)} images, {len(truth)} boxes on "
          f"{len(set(truth.image_id.tolist()))} of them", file=sys.stderr)

    model = Path(args.model) if args.model else model_path("detector")
    predictor = Predictor.load([model], model_path("classifier"), threads=args.threads)
    trained = list(predictor.detectors[0].meta.trained_classes or predictor.detectors[0].meta.names)
    t0 = time.perf_counter()
    rows, raw = [], {}
    for iid in val:
        pred = predictor.predict(images[iid].source, image_id=iid)
        raw[iid] = pred.detections
        for label, score, box in zip(pred.detections.labels, pred.detections.scores.tolist(),
                                     pred.detections.boxes.tolist(), strict=True):
            rows.append((iid, label, *box, "", score))
    print(f"predicted {len(val)} images in {time.perf_counter() - t0:.1f} s ({len(rows)} boxes from "
          f"{predictor.config.conf})", file=sys.stderr)
    preds = Annotations.from_rows(images, rows)

    choices = choose_operating_points(truth, preds, trained)
    print(f"\nOperating points (candidates {GRID[0]}-{GRID[-1]} step 0.01; IoU > 0.4; merged at IoU > {MERGE_IOU}; "
          f"default {DEFAULT_MIN_SCORE} below {MIN_TRUTH} truth boxes or {MIN_TP} hits):\n")
    print(choices_markdown(choices))
    points = {c.finding: c.threshold for c in choices}

    old_shown = [int((d.scores >= 0.1 - 1e-6).sum()) for d in raw.values()]
    new_shown = [len(OperatingPoints(points).select(d)) for d in raw.values()]

    def per_image(counts: list[int]) -> str:
        a = np.asarray(counts)
        return f"{a.sum()} boxes, {a.mean():.2f} per image, at most {a.max()}, {(a > 0).sum()} images with any"

    print(f"\nshown on the {len(val)} images: before (every box >= 0.1, not merged): {per_image(old_shown)}")
    print(f"shown on the {len(val)} images: after (operating points, merged): {per_image(new_shown)}")

    if args.json:
        Path(args.json).write_text(json.dumps([c.__dict__ for c in choices], indent=2) + "\n")
    if args.write:
        proto = onnx.load(str(model))
        meta = predictor.detectors[0].meta
        write_meta(proto, replace(meta, extra={**meta.extra, OPERATING_POINTS_KEY: points}))
        tmp = model.with_name(model.name + ".part")
        onnx.save(proto, str(tmp))
        tmp.replace(model)
        print(f"\nwrote {OPERATING_POINTS_KEY} into {model}: sha256 {file_sha256(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
