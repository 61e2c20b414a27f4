"""``thoracic predict INPUTS... --out preds.csv``: findings of every radiograph, resumable.

Wire into the main parser with::

    p = sub.add_parser("predict", help=predict.HELP)
    predict.add_arguments(p)          # sets func=predict.run

Writes ``preds.csv`` (``image_id,label,score,x_min,y_min,x_max,y_max``; with ``--format kaggle``
``image_id,PredictionString``) and the sidecar ``<out stem>.images.csv``
(:data:`IMAGE_COLUMNS`), appending and flushing per image. Exit status 1 if any input failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .._version import __version__
from ..data.labels import CLASS_IDS, NO_FINDING, NO_FINDING_BOX, NO_FINDING_ID
from ..errors import ConfigError, ThoracicError

__all__ = ["HELP", "IMAGE_COLUMNS", "KAGGLE_COLUMNS", "PRED_COLUMNS", "add_arguments", "main", "run", "sidecar_path"]

HELP = "detect findings on radiographs (DICOM/PNG/JPEG) and write a CSV"
PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")
KAGGLE_COLUMNS = ("image_id", "PredictionString")
IMAGE_COLUMNS = ("image_id", "source", "status", "error", "width", "height", "p_abnormal", "models", "thoracic_version")


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """``<out stem>.images.csv`` next to ``out``."""
    p = Path(out)
    return p.with_name(f"{p.stem}.images.csv")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``predict`` options to ``p`` and set ``func=run``."""
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="predictions CSV (a sidecar <stem>.images.csv is written beside it)")
    p.add_argument("--format", choices=["rows", "kaggle"], default="rows",
                   help="rows: one box per row (default); kaggle: the competition's submission format")
    p.add_argument("--conf", type=float, default=0.01, help="keep boxes scoring at least this (default 0.01)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU of each detector (default 0.7, as ultralytics)")
    p.add_argument("--max-det", type=int, default=100, help="at most this many boxes per image (default 100)")
    p.add_argument("--models", nargs="+", metavar="ONNX", default=None,
                   help="detector ONNX files fused by WBF (default: the shipped detector)")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one WBF weight per --models file")
    p.add_argument("--wbf-iou", type=float, default=0.55, help="IoU of the WBF fusion (models and TTA; default 0.55)")
    p.add_argument("--classifier", default=None, help="normal/abnormal ONNX (default: the shipped one with the shipped detector)")
    p.add_argument("--no-classifier", action="store_true", help="no 2-class filter")
    p.add_argument("--low", type=float, default=None,
                   help="drop all boxes of images with P(abnormal) below this (default: the classifier's validated threshold)")
    p.add_argument("--tta", action="store_true", help="also predict the mirrored image and fuse (WBF)")
    p.add_argument("--lung-roi", action="store_true", help="detect on the lung crop of the lungs model (boxes mapped back)")
    p.add_argument("--overlays", metavar="DIR", default=None, help="write a PNG with the boxes drawn per image")
    p.add_argument("--overlay-conf", type=float, default=0.1, help="draw boxes scoring at least this (default 0.1)")
    p.add_argument("--resume", action="store_true", help="skip images already done with the same models")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    p.add_argument("--allow-non-chest", action="store_true", help="also read non-chest or lateral images (flagged)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _fmt(v: float) -> str:
    return f"{float(v):.6g}"


def _pred_rows(pred: Any) -> list[dict[str, str]]:
    det = pred.detections
    rows = [
        {"image_id": pred.image_id, "label": label, "score": _fmt(s),
         "x_min": f"{b[0]:.1f}", "y_min": f"{b[1]:.1f}", "x_max": f"{b[2]:.1f}", "y_max": f"{b[3]:.1f}"}
        for label, s, b in zip(det.labels, det.scores.tolist(), det.boxes.tolist(), strict=True)
    ]
    x0, y0, x1, y1 = NO_FINDING_BOX
    rows.append({"image_id": pred.image_id, "label": NO_FINDING, "score": _fmt(pred.no_finding_score),
                 "x_min": f"{x0:g}", "y_min": f"{y0:g}", "x_max": f"{x1:g}", "y_max": f"{y1:g}"})
    return rows


def _kaggle_row(pred: Any) -> dict[str, str]:
    parts = [
        f"{CLASS_IDS[r['label']]} {r['score']} {r['x_min']} {r['y_min']} {r['x_max']} {r['y_max']}"
        for r in _pred_rows(pred)
    ]
    parts[-1] = f"{NO_FINDING_ID} {_fmt(pred.no_finding_score)} 0 0 1 1"
    return {"image_id": pred.image_id, "PredictionString": " ".join(parts)}


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _rewrite(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _open_append(path: Path, columns: Sequence[str], fresh: bool) -> tuple[TextIO, csv.DictWriter]:
    if fresh or not path.is_file():
        _rewrite(path, columns, [])
    fh = path.open("a", newline="")
    return fh, csv.DictWriter(fh, fieldnames=list(columns))


def _overlay(pred: Any, src: str, out_dir: Path, read_opts: Any, min_score: float) -> None:
    import cv2

    from ..detect.overlay import draw_findings
    from ..io import read

    rgb = draw_findings(read(src, read_opts, image_id=pred.image_id), pred.detections, min_score=min_score)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / f"{pred.image_id}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def run(args: argparse.Namespace) -> int:
    """The ``predict`` handler (returns the exit status)."""
    from tqdm import tqdm

    from ..convert import find_inputs
    from ..ensemble.predict import PredictConfig, Predictor
    from ..io import image_id
    from ..io.ids import check_unique_ids
    from ..io.radiograph import ReadOptions

    if args.weights and (not args.models or len(args.weights) != len(args.models)):
        raise ConfigError("--weights needs one weight per --models file")
    if args.no_classifier and args.classifier:
        raise ConfigError("give --classifier or --no-classifier, not both")
    cfg = PredictConfig(conf=args.conf, iou=args.iou, max_det=args.max_det, tta=args.tta,
                        weights=tuple(args.weights or ()), wbf_iou=args.wbf_iou, low=args.low, lung_roi=args.lung_roi)
    predictor = Predictor.load(args.models or (), args.classifier, cfg, use_classifier=not args.no_classifier,
                               threads=args.threads)
    if args.lung_roi:
        _check_lungs()
    models = predictor.model_ids
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = sidecar_path(out)
    columns = KAGGLE_COLUMNS if args.format == "kaggle" else PRED_COLUMNS
    files = find_inputs(args.inputs)
    ids = [image_id(f) for f in files]
    check_unique_ids(files)
    done: set[str] = set()
    if args.resume:
        previous = _read_rows(side)
        done = {r["image_id"] for r in previous if r.get("status") == "ok" and r.get("models") == models}
        kept_preds = [r for r in _read_rows(out) if r.get("image_id") in done]
        if kept_preds and set(kept_preds[0]) != set(columns):
            raise ConfigError(f"{out} was written in another --format; use another --out")
        _rewrite(out, columns, kept_preds)
        _rewrite(side, IMAGE_COLUMNS, [r for r in previous if r["image_id"] in done])
    todo = [(f, i) for f, i in zip(files, ids, strict=True) if i not in done]
    pf, pw = _open_append(out, columns, fresh=not args.resume)
    sf, sw = _open_append(side, IMAGE_COLUMNS, fresh=not args.resume)
    read_opts = ReadOptions(allow_non_chest=args.allow_non_chest)
    failed = 0
    bar = tqdm(todo, unit="img", desc="predict", disable=args.quiet or None, dynamic_ncols=True, file=sys.stderr)
    if done:
        bar.write(f"resuming: {len(done)} image(s) already done with the same models")
    try:
        for src, iid in bar:
            row: dict[str, Any] = {"image_id": iid, "source": src, "models": models, "thoracic_version": __version__}
            try:
                pred = predictor.predict(src, image_id=iid, read=read_opts)
                if args.format == "kaggle":
                    pw.writerow(_kaggle_row(pred))
                else:
                    pw.writerows(_pred_rows(pred))
                pf.flush()
                row.update(status="ok", error="", width=pred.width, height=pred.height,
                           p_abnormal="" if pred.p_abnormal is None else _fmt(pred.p_abnormal))
                if args.overlays:
                    _overlay(pred, src, Path(args.overlays), read_opts, args.overlay_conf)
            except ThoracicError as err:
                failed += 1
                row.update(status="failed", error=f"{type(err).__name__}: {err}")
                bar.write(f"failed: {err}")
            except Exception as err:  # noqa: BLE001 - one bad file never stops the run
                failed += 1
                row.update(status="failed", error=f"internal error {type(err).__name__}: {err}")
                bar.write(f"failed: {src}: internal error {type(err).__name__}: {err}")
            sw.writerow({k: row.get(k, "") for k in IMAGE_COLUMNS})
            sf.flush()
    finally:
        bar.close()
        pf.close()
        sf.close()
    n_ok = len(todo) - failed
    print(f"{n_ok} image(s) predicted, {len(done)} already done, {failed} failed; models {models}; {out} and {side}")
    if failed:
        print(f"error: {failed} input(s) failed; see the error column of {side}", file=sys.stderr)
        return 1
    return 0


def _check_lungs() -> None:
    try:
        from ..anatomy import default_segmenter
    except ImportError as err:
        raise ConfigError("lung ROI needs the lungs model (not shipped yet)") from err
    try:
        default_segmenter()
    except ThoracicError as err:
        raise ConfigError(f"lung ROI needs the lungs model, which cannot be loaded: {err}") from err


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``predict`` standalone (tests call this in-process)."""
    parser = add_arguments(argparse.ArgumentParser(prog="thoracic predict", description=HELP))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
