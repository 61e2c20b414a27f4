"""``thoracic evaluate`` and ``thoracic report``.

Wire into the main parser with ``add_parser(sub)``; each handler returns an exit code: 0 on
success (problems with the inputs are listed, not fatal), 2 on input that cannot be scored, a
label outside the schema included (``--label-map FILE`` maps or drops such labels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thoracic.cli._args import COUNT, FRACTION, IN_DIR, IN_FILE, IN_PATH, OUT_DIR, OUT_FILE
from thoracic.errors import ThoracicError

__all__ = ["add_parser", "add_selection", "check_labels", "cmd_evaluate", "cmd_report", "load_inputs"]

FUSIONS = ("wbf", "nms", "all", "none")


def _common(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--pred", type=IN_FILE, required=required, help="predictions CSV (image_id,label,score,x_min,y_min,x_max,y_max)")
    p.add_argument("--truth", type=IN_FILE, required=required,
                   help="truth CSV (image_id,label,x_min,y_min,x_max,y_max[,reader]) or Kaggle's train.csv")
    p.add_argument("--sizes", type=IN_FILE, default=None, help="CSV with image_id,width,height (e.g. Kaggle's train_meta)")
    p.add_argument("--label-map", type=IN_FILE, metavar="FILE", default=None,
                   help="CSV from,to: maps labels of --truth/--pred to the 14 VinDr findings or 'No finding' "
                        "(an empty 'to' drops them); a label outside the schema is an error without it")
    p.add_argument("--fusion", choices=FUSIONS, default="wbf",
                   help="how several truth readers become one truth: wbf (default), nms, all (keep every reader's "
                        "boxes, one 'No finding' per normal image) or none (the rows as they are)")


def add_selection(p: argparse.ArgumentParser, what: str) -> None:
    """``--folds FILE --fold K`` and ``--image-list FILE`` (:mod:`thoracic.data.selection`), shared with ``predict``."""
    p.add_argument("--folds", type=IN_FILE, metavar="FILE", default=None,
                   help=f"with --fold: {what} of one fold of this folds CSV (image_id,...,fold, as written by "
                        "'thoracic dataset split' and 'dataset export')")
    p.add_argument("--fold", metavar="K", type=COUNT, default=None, help="the fold of --folds")
    p.add_argument("--image-list", type=IN_FILE, metavar="FILE", default=None,
                   help=f"{what} listed in FILE: one image id or path per line (or a CSV with an image_id column)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``evaluate`` and ``report`` on the ``thoracic`` subparsers."""
    p = sub.add_parser("evaluate", help="score predictions against truth: mAP, precision/recall/F1, AUC, FROC, confidence intervals")
    _common(p, required=True)
    p.add_argument("--iou", type=FRACTION, default=0.4, help="a match needs IoU above this (default 0.4, the Kaggle metric)")
    p.add_argument("--score-threshold", type=FRACTION, default=0.5, help="score cut for precision/recall/F1 (default 0.5)")
    p.add_argument("--abnormal-threshold", type=FRACTION, default=0.5, help="P(abnormal) cut for image accuracy (default 0.5)")
    p.add_argument("--bootstrap", type=COUNT, default=1000, help="bootstrap resamples of the images (0: no intervals)")
    p.add_argument("--seed", type=COUNT, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-coco", action="store_true", help="skip COCO mAP (which needs pycocotools)")
    add_selection(p, "score only the truth images")
    p.add_argument("--all-truth", action="store_true",
                   help="also score the truth images (of --fold/--image-list) that were not predicted, as misses "
                        "(default: only the images in the predictions file and its sidecar are scored)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder: metrics.json, metrics.md, curves.json")
    p.add_argument("--report", action="store_true", help="also write report.html (plots and overlays) into --out")
    p.add_argument("--images", type=IN_DIR, default=None, help="folder of images (<image_id>.png/.jpg/.dcm) for overlays in the report")
    p.add_argument("--title", default="thoracic evaluation", help="title of report.html")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="write one self-contained HTML page with the metrics, plots and sample overlays")
    p.add_argument("--metrics", type=IN_PATH, required=True, help="an evaluate output folder or its metrics.json")
    _common(p, required=False)
    p.add_argument("--images", type=IN_DIR, default=None, help="folder of images for overlays (needs --pred and --truth)")
    p.add_argument("--samples", type=COUNT, default=6, help="number of overlay images (default 6)")
    p.add_argument("--title", default="thoracic evaluation", help="title of the page")
    p.add_argument("--out", type=OUT_FILE, required=True, help="the HTML file to write")
    p.set_defaults(func=cmd_report)


def _read(truth_path: str, pred_path: str | None, sizes_path: str | None, label_map_path: str | None = None):
    """Truth as read (unfused), predictions or ``None``, and the sizes and their problems.

    Raises ``ConfigError`` when either table has a label outside the schema (:func:`check_labels`).
    """
    from thoracic.data.tables import read_image_sizes
    from thoracic.evaluate.tables import read_label_map, read_predictions, read_truth

    sizes = None
    extra: list = []
    if sizes_path:
        sizes, extra = read_image_sizes(sizes_path)
    label_map = read_label_map(label_map_path) if label_map_path else None
    truth = read_truth(truth_path, sizes=sizes, label_map=label_map)
    preds = read_predictions(pred_path, sizes=sizes, label_map=label_map) if pred_path else None
    check_labels(truth, preds)
    return truth, preds, extra


#: How many unknown labels the error lists by name.
_SHOWN_LABELS = 10


def check_labels(truth, preds) -> None:
    """Refuse tables with labels outside the schema: a one-line ``ConfigError`` naming each with its
    row counts in the truth and the predictions, and ``--label-map FILE`` to map them."""
    from thoracic.errors import ConfigError
    from thoracic.evaluate.tables import unknown_labels

    counts = {"truth": unknown_labels(truth), "predictions": unknown_labels(preds) if preds is not None else {}}
    labels = sorted(set(counts["truth"]) | set(counts["predictions"]),
                    key=lambda k: (-(counts["truth"].get(k, 0) + counts["predictions"].get(k, 0)), k))
    if not labels:
        return
    parts = []
    for label in labels[:_SHOWN_LABELS]:
        where = ", ".join(f"{side} {c[label]}" for side, c in counts.items() if c.get(label))
        parts.append(f"{label!r} ({where} rows)")
    if len(labels) > _SHOWN_LABELS:
        parts.append(f"and {len(labels) - _SHOWN_LABELS} more")
    raise ConfigError(
        f"{len(labels)} label(s) outside the schema (the 14 VinDr findings and 'No finding'): {', '.join(parts)}; "
        "map them with --label-map FILE (a CSV from,to; an empty 'to' drops a label; see docs/evaluation/README.md)"
    )


def _fuse(truth, fusion: str, extra, notes: list[str]):
    readers = sorted(set(truth.reader.tolist()) - {""})
    if fusion != "none" and len(readers) > 1:
        from thoracic.data.fusion import FusionConfig, fuse_readers

        truth = fuse_readers(truth, FusionConfig(method=fusion))
        notes.append(f"truth of {len(readers)} readers fused with {fusion}")
    if extra:
        from thoracic.data.annotations import Annotations

        truth = Annotations(truth.images, truth.image_id, truth.label, truth.boxes, truth.reader, truth.score,
                            (*extra, *truth.problems), truth.name)
    return truth


def load_inputs(truth_path: str, pred_path: str | None, sizes_path: str | None, fusion: str,
                label_map: str | None = None):
    """Read truth (fused as asked) and predictions; returns ``(truth, preds_or_None, notes)``."""
    truth, preds, extra = _read(truth_path, pred_path, sizes_path, label_map)
    notes: list[str] = []
    return _fuse(truth, fusion, extra, notes), preds, notes


def cmd_evaluate(args: argparse.Namespace) -> int:
    from thoracic.evaluate import EvaluationConfig, evaluate, write_results

    try:
        config = EvaluationConfig(
            iou=args.iou, score_threshold=args.score_threshold, abnormal_threshold=args.abnormal_threshold,
            bootstrap=args.bootstrap, seed=args.seed, coco=not args.no_coco,
        )
        from thoracic.data.selection import image_selection
        from thoracic.evaluate.scope import score_scope

        selection = image_selection(folds=args.folds, fold=args.fold, image_list=args.image_list)
        truth, preds, extra = _read(args.truth, args.pred, args.sizes, args.label_map)
        scope = score_scope(truth, preds, selection=selection, all_truth=args.all_truth)
        for line in scope.notes:
            print(line, file=sys.stderr)
        for line in scope.warnings:
            print(f"warning: {line}", file=sys.stderr)
        notes = [*scope.notes, *scope.warnings]
        truth, preds = _fuse(scope.truth, args.fusion, extra, notes), scope.preds
        result = evaluate(truth, preds, config)
        if notes:
            result.metrics["notes"][:0] = notes
        paths = write_results(result, args.out)
        if args.report:
            from thoracic.report import render_report, write_report

            page = render_report(result.metrics, result.curves, truth, preds, args.images, title=args.title)
            paths["report"] = write_report(page, Path(args.out) / "report.html")
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m = result.metrics
    coco = m["coco"] or {}
    ci = m["ci95"].get("map")
    ci_text = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    print(f"{m['images']} images; Kaggle mAP@{m['iou']} = {m['map']:.4f}{ci_text}")
    if m["findings_map"] is not None:
        fci = m["ci95"].get("findings_map")
        fci_text = f" (95% CI {fci[0]:.4f}-{fci[1]:.4f})" if fci else ""
        print(f"findings-only mAP@{m['iou']} = {m['findings_map']:.4f}{fci_text}")
    if coco.get("map") is not None:
        print(f"COCO mAP@[.5:.95] = {coco['map']:.4f}, mAP@.5 = {coco['map50']:.4f}")
    if m["auc"]["abnormal"] is not None:
        print(f"AUC abnormal vs normal = {m['auc']['abnormal']:.4f}")
    if m["problem_counts"]:
        print("problems: " + ", ".join(f"{k} {v}" for k, v in m["problem_counts"].items())
              + f" (listed in {paths['metrics']})", file=sys.stderr)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from thoracic.evaluate.evaluate import load_curves
    from thoracic.report import render_report, write_report

    src = Path(args.metrics)
    mpath = src / "metrics.json" if src.is_dir() else src
    try:
        metrics = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"error: {mpath}: cannot read metrics ({err})", file=sys.stderr)
        return 2
    cpath = mpath.with_name("curves.json")
    curves = load_curves(cpath) if cpath.exists() else None
    try:
        truth = preds = None
        if args.truth:
            truth, preds, _ = load_inputs(args.truth, args.pred, args.sizes, args.fusion, args.label_map)
        out = write_report(render_report(metrics, curves, truth, preds, args.images, args.samples, args.title), args.out)
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"written: {out}")
    return 0
