"""``thoracic evaluate-shift``: the shift test (:mod:`thoracic.evaluate.shift`) from the command line.

    thoracic evaluate-shift --nih images.csv boxes.csv --fold 0 --out shift/ [--models a.onnx ...]

Predicts the truth images of one fold (or all) clean and re-rendered as other devices would
deliver them, and writes ``shift.json`` and ``shift.md`` (one row per condition with its drop).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from thoracic.cli._args import COUNT, FOLDS, FRACTION, IN_FILE, OUT_DIR, POSITIVE
from thoracic.errors import ConfigError

__all__ = ["HELP", "add_parser"]

HELP = "score detectors on the same images re-rendered as other devices deliver them (window, 12-bit DICOM, ...)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from thoracic.cli.dataset import _add_input

    p = sub.add_parser("evaluate-shift", help=HELP)
    _add_input(p)
    g = p.add_argument_group("which images")
    g.add_argument("--fold", type=COUNT, default=None, help="only this fold's images (default: every image with truth)")
    g.add_argument("--folds-csv", type=IN_FILE, default=None, help="folds CSV (image_id,...,fold) of --fold "
                                                                   "(default: the split of `dataset split --folds N --seed S`)")
    g.add_argument("--n-folds", type=FOLDS, default=5, help="folds of the split made without --folds-csv (default 5)")
    g.add_argument("--seed", type=COUNT, default=0, help="seed of that split and of the portable noise (default 0)")
    g.add_argument("--limit", type=POSITIVE, default=None, help="only the first N images (sorted by id): a quick look")
    p.add_argument("--fuse", choices=["auto", "wbf", "none"], default="auto",
                   help="truth readers: auto (WBF when an image has several readers; default), wbf or none")
    p.add_argument("--shifts", nargs="+", default=None, metavar="SHIFT",
                   help="window-narrow window-wide dicom-12bit half-resolution portable rotate-5 (default: all)")
    p.add_argument("--models", nargs="+", metavar="ONNX", default=None, help="detector ONNX files (default: the shipped detector)")
    p.add_argument("--classifier", default=None, help="normal/abnormal ONNX for the 2-class filter (default: none)")
    p.add_argument("--tta", action="store_true", help="also predict the mirrored image and fuse (WBF)")
    p.add_argument("--conf", type=FRACTION, default=0.01, help="lowest box score kept (default 0.01)")
    p.add_argument("--threads", type=POSITIVE, default=1, help="ONNX Runtime threads per model (default 1)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder: shift.json, shift.md")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from thoracic.cli.dataset import _report_problems, load_input
    from thoracic.data import fuse_readers, image_groups, kfold_split, read_folds
    from thoracic.evaluate.shift import DEFAULT_SHIFTS, SHIFTS, shift_test
    from thoracic.inference.predictor import PredictConfig, Predictor

    shifts = list(args.shifts or DEFAULT_SHIFTS)
    for s in shifts:
        if s not in SHIFTS:
            raise ConfigError.unknown("shift", s, SHIFTS)
    if args.folds_csv and args.fold is None:
        raise ConfigError("--folds-csv goes with --fold K")
    ann = load_input(args)
    _report_problems(ann, args)
    if args.fold is not None:
        folds = read_folds(args.folds_csv) if args.folds_csv else kfold_split(ann, args.n_folds, seed=args.seed)
        ann = ann.select_images(i for i, f in folds.items() if f == args.fold)
    method = args.fuse
    if method == "auto":
        method = "wbf" if any(len(set(ann.reader[idx].tolist())) > 1 for idx in image_groups(ann).values()) else "none"
    if method == "wbf":
        ann = fuse_readers(ann)
    ids = sorted(set(ann.image_id.tolist()))
    if args.limit:
        ids = ids[: args.limit]
    truth = ann.select_images(ids)
    predictor = Predictor.load(args.models or (), args.classifier, PredictConfig(conf=args.conf, tta=args.tta),
                               use_classifier=args.classifier is not None, threads=args.threads)
    print(f"shift test: {len(ids)} image(s){'' if args.fold is None else f' of fold {args.fold}'}, "
          f"{len(shifts)} shift(s), models {predictor.model_ids}", file=sys.stderr)

    def progress(condition: str, done: int, total: int) -> None:
        if not args.quiet and condition == shifts[-1] and (done % 20 == 0 or done == total):
            print(f"  {done}/{total} images", file=sys.stderr, flush=True)

    result = shift_test(predictor, truth, shifts, seed=args.seed, progress=progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"models": predictor.model_ids, "images": len(ids), "fold": args.fold, "fuse": method, "tta": args.tta,
           "classifier": args.classifier, **result.to_dict()}
    (out / "shift.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    table = result.markdown()
    (out / "shift.md").write_text(table)
    print(table, end="")
    for condition, errors in result.failures.items():
        print(f"{condition}: {len(errors)} image(s) failed, e.g. {errors[0]}", file=sys.stderr)
    print(f"written: {out / 'shift.json'}, {out / 'shift.md'}")
    return 0
