"""``thoracic train cv``: every fold of a detector cross-validation in one resumable command (``train`` extra).

Wired under ``train`` by :mod:`thoracic.cli.main`::

    thoracic train cv --vinbigdata train.csv --out runs/cv --folds 5 --test-fold 0 --epochs 30

See :mod:`thoracic.train.cv` for the folder it writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from thoracic.cli._args import COUNT, COUNT_OR_OFF, FOLDS, FRACTION, OUT_DIR, POSITIVE, POSITIVE_FLOAT

__all__ = ["HELP", "add_arguments", "run"]

HELP = "cross-validate a detector: train every fold, predict its held-out images and score them (resumable)"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``train cv``; sets ``func=run``."""
    from thoracic.cli.dataset import _add_input

    _add_input(p)
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder (re-running resumes; see `thoracic.train.cv`)")
    p.add_argument("--folds", type=FOLDS, default=5, help="number of folds, the test fold included (default 5)")
    p.add_argument("--test-fold", type=COUNT, default=None,
                   help="hold this fold out of everything (its ids: OUT/test_images.txt); default: none")
    p.add_argument("--seed", type=COUNT, default=0, help="seed of the folds and of training (default 0)")
    p.add_argument("--chain", default="yolo-512-clahe", help="preprocessing chain (see `thoracic chains`; default yolo-512-clahe)")
    p.add_argument("--fuse", choices=["auto", "wbf", "nms", "none"], default="auto",
                   help="readers -> labels and truth: auto (WBF when an image has several readers; default)")
    p.add_argument("--fuse-iou", type=FRACTION, default=0.4, help="IoU above which readers' boxes are one finding (default 0.4)")
    g = p.add_argument_group("each fold's detector (as `thoracic train detector`)")
    g.add_argument("--model", default="yolov5n", help="yolov5n|yolov5s|yolov5m|yolov8n|... (default yolov5n)")
    g.add_argument("--pretrained", default="", help="original-YOLOv5 .pt (imported) or ultralytics .pt to start from "
                                                    "(see `thoracic weights`; default: from scratch)")
    g.add_argument("--epochs", type=POSITIVE, default=20)
    g.add_argument("--imgsz", type=POSITIVE, default=512)
    g.add_argument("--batch", type=COUNT_OR_OFF, default=16)
    g.add_argument("--patience", type=COUNT, default=100)
    g.add_argument("--freeze", type=COUNT, default=0, help="freeze the first N layers (10: the backbone)")
    g.add_argument("--mosaic", type=FRACTION, default=1.0, help="mosaic probability (0: never)")
    g.add_argument("--close-mosaic", type=COUNT, default=5, help="last N epochs without mosaic")
    g.add_argument("--device", default="cpu", help="cpu or a CUDA device such as 0")
    g.add_argument("--threads", type=POSITIVE, default=1, help="torch CPU threads (default 1)")
    g.add_argument("--workers", type=COUNT, default=None, help="data-loader processes (default 0 on the CPU, 8 on a GPU)")
    g.add_argument("--hours", type=POSITIVE_FLOAT, default=None, help="wall-clock budget per fold (ultralytics' time)")
    from thoracic.cli.train_detector import _augment_flags

    _augment_flags(g)
    p.add_argument("--conf", type=FRACTION, default=0.01, help="out-of-fold predictions: lowest score kept (default 0.01)")
    p.add_argument("--max-det", type=POSITIVE, default=100, help="out-of-fold predictions: boxes per image (default 100)")
    p.add_argument("--bootstrap", type=COUNT, default=1000, help="bootstrap resamples of the pooled intervals (default 1000)")
    p.add_argument("--export-workers", type=COUNT, default=0, help="processes of the export (default: one per core)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from thoracic.cli.dataset import _report_problems, load_input
    from thoracic.train.cv import CrossValConfig, cross_validate

    detector: dict[str, Any] = {
        "model": args.model, "pretrained": args.pretrained, "epochs": args.epochs, "imgsz": args.imgsz,
        "batch": args.batch, "patience": args.patience, "freeze": args.freeze, "mosaic": args.mosaic,
        "close_mosaic": args.close_mosaic, "device": args.device, "threads": args.threads, "seed": args.seed,
    }
    if args.workers is not None:
        detector["workers"] = args.workers
    if args.hours is not None:
        detector["hours"] = args.hours
    if args.intensity_aug:  # only when asked: earlier runs' cv_config.json stay the same
        detector["intensity_aug"] = args.intensity_aug
    if args.degrees:
        detector["degrees"] = args.degrees
    cfg = CrossValConfig(out=args.out, folds=args.folds, test_fold=args.test_fold, seed=args.seed, chain=args.chain,
                         fuse=args.fuse, fuse_iou=args.fuse_iou, detector=detector, conf=args.conf,
                         max_det=args.max_det, bootstrap=args.bootstrap, workers=args.export_workers)
    ann = load_input(args)
    _report_problems(ann, args)

    def progress(step: str, info: Mapping[str, Any]) -> None:
        k = info.get("fold")
        if step == "export":
            print(f"export: {info['images']} cross-validation image(s) through chain {cfg.chain!r}", file=sys.stderr)
        elif step == "train":
            print(f"fold {k}: {'resuming' if info['resume'] else 'training'}", file=sys.stderr)
        elif step == "epoch":
            m = info.get("metrics", {})
            what = "best.pt" if info.get("final") else f"epoch {info['epoch']}/{info['epochs']}"
            print(f"fold {k}: {what} mAP50={m.get('metrics/mAP50(B)', float('nan')):.4f} {info['seconds']}s",
                  file=sys.stderr, flush=True)
        elif step == "trained" and info.get("resumed"):
            print(f"fold {k}: already trained ({info['best']})", file=sys.stderr)
        elif step == "predict":
            print(f"fold {k}: predicting {info['todo']} of its {info['images']} original image(s)", file=sys.stderr)

    result = cross_validate(ann, cfg, images=args.images, progress=progress)
    p = result.pooled
    for f in result.folds:
        print(f"fold {f['fold']}: {f['images']} images, Kaggle mAP@0.4 {_f(f['kaggle_map'])}, "
              f"findings mAP {_f(f['findings_map'])}, abnormal AUC {_f(f['abnormal_auc'])}")
    ci = (p.get("ci") or {}).get("kaggle_map")
    print(f"cross-validation: Kaggle mAP@0.4 {_f(p['kaggle_map'])} out of fold"
          + (f" (95% CI {_f(ci[0])}-{_f(ci[1])})" if ci else "")
          + f"; folds {_f(p['fold_kaggle_map_mean'])} +- {_f(p['fold_kaggle_map_sd'])}")
    print("written: " + json.dumps(result.files))
    return 0


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.4f}"
