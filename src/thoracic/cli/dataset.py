"""``thoracic dataset``: load, check, fuse, split, export and describe annotation tables.

Wire into the main parser with ``dataset.add_parser(sub)``. Every sub-command takes one input::

    --vinbigdata train.csv[.gz] [--meta train_meta.csv.gz]
    --nih images.csv boxes.csv          (or Data_Entry_2017.csv BBox_List_2017.csv)
          [--chestxdet chestxdet_boxes.csv] (ChestX-Det's boxes on the same images: a second reader)
    --coco annotations.json
    --csv table.csv

and ``--images DIR`` for the image files (Kaggle ``train/``, NIH ``images/``); with
``--vinbigdata`` it defaults to ``train/`` beside ``train.csv``, whose files' headers give the
image sizes when ``--meta`` is not given. Boxes outside their image are errors unless ``--clip``.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

from thoracic.cli._args import COUNT, FOLDS, FRACTION, IN_DIR, IN_FILE, OUT_DIR, OUT_FILE
from thoracic.errors import ConfigError

__all__ = ["add_parser", "load_input"]

_MAX_PROBLEMS = 20


def _add_input(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input (exactly one)")
    g.add_argument("--vinbigdata", type=IN_FILE, metavar="TRAIN_CSV", help="VinBigData train.csv[.gz]")
    g.add_argument("--meta", type=IN_FILE, metavar="META_CSV",
                   help="with --vinbigdata: image sizes (image_id,width,height,...); optional, they are read "
                        "from the images' headers otherwise (and win over them when given)")
    g.add_argument("--nih", type=IN_FILE, nargs=2, metavar=("IMAGES_CSV", "BOXES_CSV"),
                   help="NIH: images.csv boxes.csv, or Data_Entry_2017.csv BBox_List_2017.csv")
    g.add_argument("--chestxdet", type=IN_FILE, metavar="CHESTXDET_CSV",
                   help="with --nih: ChestX-Det radiologists' boxes on the same images (chestxdet_boxes.csv), "
                        "a second reader: readers 'nih' and 'chestxdet', fused per class by WBF where both read an image")
    g.add_argument("--coco", type=IN_FILE, metavar="JSON", help="a COCO detection file")
    g.add_argument("--csv", type=IN_FILE, metavar="CSV", help="a plain table (image_id,label,x_min,y_min,x_max,y_max[,reader,score,width,height,patient_id])")
    g.add_argument("--images", type=IN_DIR, metavar="DIR",
                   help="folder with the image files (searched recursively; --vinbigdata: default train/ beside train.csv)")
    p.add_argument("--clip", action="store_true",
                   help="clip boxes that extend outside their image (or are negative) to it, and say how many; "
                        "without it such boxes are errors")
    p.add_argument("--all-problems", action="store_true", help="list every refused row (default: the first 20)")


def load_input(args: argparse.Namespace):
    """The :class:`~thoracic.data.Annotations` named by the input flags (notes on stderr)."""
    from thoracic import data

    given = [k for k in ("vinbigdata", "nih", "coco", "csv") if getattr(args, k, None)]
    if len(given) != 1:
        raise ConfigError("give exactly one input: --vinbigdata, --nih, --coco or --csv" + (f" (got {', '.join('--' + g for g in given)})" if given else ""))
    if args.meta and not args.vinbigdata:
        raise ConfigError("--meta goes with --vinbigdata")
    if getattr(args, "clip", False) and not args.vinbigdata:
        raise ConfigError("--clip goes with --vinbigdata (the other tables are checked against the sizes they give)")
    if args.vinbigdata:
        images = args.images or data.default_images(args.vinbigdata)
        if images is None:
            print(f"note: no image folder (no train/ beside {args.vinbigdata}, no --images): image files are not checked"
                  + ("" if args.meta else ", and without sizes (--meta or the images) boxes are not checked against them"),
                  file=sys.stderr)
        elif not args.images:
            print(f"images: {images} (beside {Path(args.vinbigdata).name})", file=sys.stderr)
        ann = data.load_vinbigdata(args.vinbigdata, args.meta, images=images, clip=getattr(args, "clip", False),
                                   on_sizes=_say_sizes)
        args.images = str(images) if images is not None else None
        return ann
    if getattr(args, "chestxdet", None) and not args.nih:
        raise ConfigError("--chestxdet goes with --nih (its boxes are on the NIH images)")
    if args.nih:
        ann = data.load_nih(args.nih[0], args.nih[1], images=args.images)
        return data.load_chestxdet(args.chestxdet, ann) if getattr(args, "chestxdet", None) else ann
    if args.coco:
        return data.load_coco(args.coco)
    return data.load_csv(args.csv)


def _say_sizes(scan) -> None:
    if scan.read or scan.cached:
        cache = f" (cache: {scan.cache})" if scan.cache else " (no cache: its folder is not writable)"
        print(f"image sizes: {scan.read} read from the file headers, {scan.cached} from the cache{cache}", file=sys.stderr)


def _report_problems(ann, args: argparse.Namespace) -> None:
    from collections import Counter

    from thoracic.data.tables import OUTSIDE

    if ann.clipped:
        print(f"clipped {len(ann.clipped)} box(es) that extended outside their image (--clip):", file=sys.stderr)
        _list(ann.clipped, args)
    if not ann.problems:
        return
    kinds = Counter(p.kind for p in ann.problems)
    names = {"": "row(s) refused", OUTSIDE: "box(es) outside their image", "missing image": "image file(s) missing",
             "unreadable image": "image file(s) unreadable"}
    parts = [f"{n} {names.get(k, k)}" for k, n in sorted(kinds.items(), key=lambda kv: list(names).index(kv[0]) if kv[0] in names else 9)]
    print(f"{len(ann.problems)} problem(s): {', '.join(parts)}:", file=sys.stderr)
    _list(ann.problems, args)
    outside = sum(p.kind == OUTSIDE for p in ann.problems)
    if outside and not args.clip:
        print(f"{outside} box(es) extend outside their image: fix the table, or give --clip to clip them "
              "(if the images are resized copies, give --meta with the original sizes)", file=sys.stderr)


def _list(problems, args: argparse.Namespace) -> None:
    shown = problems if args.all_problems else problems[:_MAX_PROBLEMS]
    for p in shown:
        print(f"  {p}", file=sys.stderr)
    if len(shown) < len(problems):
        print(f"  ... and {len(problems) - len(shown)} more (--all-problems lists them)", file=sys.stderr)


def _summary(ann) -> str:
    from thoracic.labels import FINDINGS, NO_FINDING

    counts = ann.label_counts()
    readers = len(set(ann.reader.tolist()) - {""})
    lines = [
        f"{ann.name or 'table'}: {len(ann.images)} images, {len(ann)} rows, {len(ann.abnormal_images())} abnormal images, "
        f"{readers} named readers"
    ]
    lines += [f"  {i:>2} {name:<20} {counts.get(name, 0):>7}" for i, name in enumerate((*FINDINGS, NO_FINDING))]
    return "\n".join(lines)


def _number(v: float) -> str:
    """Three decimals, or ``-`` where there is no number (no sizes, no two readers)."""
    return "-" if math.isnan(v) else f"{v:.3f}"


def _table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    out = ["  ".join(c.rjust(width[c]) if c != "label" else c.ljust(width[c]) for c in cols)]
    for r in rows:
        out.append("  ".join(str(r[c]).rjust(width[c]) if c != "label" else str(r[c]).ljust(width[c]) for c in cols))
    return "\n".join(out)


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _fusion_config(args: argparse.Namespace, method: str):
    from thoracic.data import FusionConfig

    return FusionConfig(method=method, iou_thr=args.iou_thr, skip_box_thr=args.skip_box_thr, conf_type=args.conf_type)


# --- commands -----------------------------------------------------------------------------------
def _cmd_check(args: argparse.Namespace) -> int:
    ann = load_input(args)
    print(_summary(ann))
    _report_problems(ann, args)
    return 1 if ann.problems else 0


def _cmd_fuse(args: argparse.Namespace) -> int:
    from thoracic.data import class_counts, fuse_readers, write_csv

    ann = load_input(args)
    _report_problems(ann, args)
    fused = fuse_readers(ann, _fusion_config(args, args.method))
    rows = class_counts(ann, fused)
    print(f"fusion {args.method} (iou_thr={args.iou_thr}, skip_box_thr={args.skip_box_thr}, conf_type={args.conf_type}):")
    print(_table(rows))
    out = Path(args.out)
    write_csv(fused, out)
    counts = Path(args.counts) if args.counts else out.with_name(out.name.split(".")[0] + "_counts.csv")
    _write_rows(rows, counts)
    print(f"fused table: {out}; counts: {counts}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from collections import Counter

    from thoracic.data import kfold_split, write_folds

    ann = load_input(args)
    _report_problems(ann, args)
    folds = kfold_split(ann, args.folds, seed=args.seed)
    path = write_folds(folds, ann, args.out)
    sizes = Counter(folds.values())
    print("fold sizes (images): " + ", ".join(f"{k}: {sizes[k]}" for k in sorted(sizes)) + f"; written: {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from thoracic.batch.export import ExportConfig, export_dataset
    from thoracic.cli._progress import run_batch
    from thoracic.data import fuse_readers, kfold_split, read_folds
    from thoracic.data.tables import OUTSIDE

    ann = load_input(args)
    _report_problems(ann, args)
    outside = sum(p.kind == OUTSIDE for p in ann.problems)
    if outside:
        print(f"error: nothing exported: {outside} box(es) outside their image (listed above)", file=sys.stderr)
        return 1
    options = ExportConfig(format=args.format, chain=args.chain, unboxed=args.unboxed, workers=args.workers, clip=args.clip)
    if args.folds and args.folds_csv:
        raise ConfigError("give --folds K or --folds-csv FILE, not both")
    folds = kfold_split(ann, args.folds, seed=args.seed) if args.folds else (read_folds(args.folds_csv) if args.folds_csv else None)
    method = args.fuse
    if method == "auto":
        from thoracic.data.fusion import has_several_readers

        method = "wbf" if has_several_readers(ann) else "none"
    if method != "none":
        ann = fuse_readers(ann, _fusion_config(args, method))
        print(f"readers fused with {method}: {int(ann.is_finding.sum())} finding boxes")
    s = run_batch("export", args, export_dataset, ann, args.out, options, images=args.images, folds=folds, done="written")
    print(
        f"{s.labelled} labelled image(s) ({s.written} written, {s.resumed} already done), {s.boxes} boxes; "
        f"{s.unboxed_skipped} without boxes skipped, {s.missing} missing, {s.failed} failed; "
        f"chain {options.chain.name!r}; {Path(args.out) / 'data.yaml' if args.format == 'yolo' else Path(args.out) / 'annotations.json'}"
    )
    if s.clipped:
        print(f"clipped {s.clipped} box(es) that extended outside their image (--clip)", file=sys.stderr)
    if s.missing or s.failed:
        for e in s.errors[: _MAX_PROBLEMS]:
            print(f"  {e}", file=sys.stderr)
        print(f"error: {s.failed + s.missing} image(s) not exported; see {Path(args.out) / 'manifest.csv'}", file=sys.stderr)
        return 1
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from thoracic.data import compute_stats, write_stats

    ann = load_input(args)
    _report_problems(ann, args)
    stats = compute_stats(ann, iou_thr=args.iou_thr)
    paths = write_stats(stats, args.out, figures=not args.no_figures)
    print(
        f"{stats.images} images: {stats.abnormal} abnormal, {stats.normal} normal, {stats.unannotated} without annotation; "
        f"{stats.finding_boxes} finding boxes"
    )
    rows = [
        {"class_id": c.class_id, "label": c.label, "boxes": c.boxes, "images": c.images,
         "area_pct_median": _number(c.area_quantiles()[1]), "agreement_f1": _number(c.agreement.f1)}
        for c in stats.classes
    ]
    print(_table(rows))
    print(f"mean inter-reader agreement F1 (IoU > {args.iou_thr}): {_number(stats.mean_agreement)}")
    if stats.unknown_size:
        print(f"note: {stats.unknown_size} image(s) with boxes have no known size, so no box areas for them: "
              "their files are missing or unreadable, or there is no image folder (--images) nor --meta", file=sys.stderr)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``thoracic dataset`` and its sub-commands; returns the ``dataset`` parser."""
    from thoracic.boxes import CONF_TYPES
    from thoracic.data import FUSION_METHODS

    parser = subparsers.add_parser("dataset", help="load, check, fuse, split, export and describe annotation tables")
    sub = parser.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    def fusion_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--iou-thr", type=FRACTION, default=0.4, help="IoU above which boxes are one finding (default 0.4)")
        p.add_argument("--skip-box-thr", type=FRACTION, default=0.0, help="WBF: ignore boxes scoring below this (default 0)")
        p.add_argument("--conf-type", choices=CONF_TYPES, default="avg", help="WBF confidence (default avg)")

    p = sub.add_parser("check", help="load a table, print its counts and every refused row (exit 1 if any)")
    _add_input(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("fuse", help="fuse the boxes of several readers into consensus boxes (counts per class before and after)")
    _add_input(p)
    p.add_argument("--method", choices=FUSION_METHODS, default="wbf", help="wbf (default), nms, or all (keep every reader)")
    fusion_flags(p)
    p.add_argument("--out", type=OUT_FILE, required=True, help="the fused table (plain CSV)")
    p.add_argument("--counts", type=OUT_FILE, help="per-class counts CSV (default: <out>_counts.csv)")
    p.set_defaults(func=_cmd_fuse)

    p = sub.add_parser("split", help="split the images into K folds, stratified on findings and grouped by patient")
    _add_input(p)
    p.add_argument("--folds", type=FOLDS, default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=COUNT, default=0)
    p.add_argument("--out", type=OUT_FILE, required=True, help="folds CSV (image_id,group,fold)")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("export", help="write a YOLO or COCO training set through a preprocessing chain")
    _add_input(p)
    p.add_argument("--format", choices=["yolo", "coco"], default="yolo")
    p.add_argument("--chain", default="yolo-512-clahe", help="named chain or spec (see `thoracic chains`; default yolo-512-clahe)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder (re-running resumes)")
    p.add_argument("--folds", type=COUNT, default=0, help="make K patient-grouped stratified folds (data_<k>.yaml each)")
    p.add_argument("--seed", type=COUNT, default=0, help="seed of the folds")
    p.add_argument("--folds-csv", type=IN_FILE, help="use the folds of `thoracic dataset split` instead")
    p.add_argument("--fuse", choices=["auto", "none", *FUSION_METHODS], default="auto",
                   help="fuse readers first (auto: wbf when images have several readers)")
    fusion_flags(p)
    p.add_argument("--unboxed", choices=["skip", "include"], default="skip",
                   help="images with findings but no boxes: skip (default) or write them unlabelled (unboxed.txt)")
    p.add_argument("--workers", type=COUNT, default=0, help="worker processes (default: one per core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("stats", help="describe a table: labels, box sizes, readers and agreement (CSV, Markdown, PNG figures)")
    _add_input(p)
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder (e.g. docs/dataset)")
    p.add_argument("--iou-thr", type=FRACTION, default=0.4, help="IoU for reader agreement (default 0.4)")
    p.add_argument("--no-figures", action="store_true", help="tables only (no matplotlib needed)")
    p.set_defaults(func=_cmd_stats)
    return parser
