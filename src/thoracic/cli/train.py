"""``thoracic train lungs``: train the lung UNet as shipped (needs the ``train`` extra).

torch is imported inside the handler only, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from thoracic.cli._args import (
    COUNT,
    COUNT_OR_OFF,
    FRACTION,
    IN_DIR,
    NON_NEGATIVE,
    OUT_DIR,
    POSITIVE,
    POSITIVE_FLOAT,
    Parser,
    config_from_args,
)

__all__ = ["add_parser", "main"]


def _cmd_train_lungs(args: argparse.Namespace) -> int:
    from thoracic.train.lungs import (  # raises MissingDependencyError without torch
        LungsTrainConfig,
        train_lungs,
    )

    cfg = config_from_args(LungsTrainConfig, args, export=not args.no_export)

    def progress(row: dict) -> None:
        extra = f" val_dice={row['val_dice']:.4f}" if "val_dice" in row else ""
        print(f"epoch {row['epoch']}/{cfg.epochs} loss={row['loss']:.4f} lr={row['lr']:.2e} {row['seconds']}s{extra}", flush=True)

    summary = train_lungs(cfg, progress=progress)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def add_parser(subparsers):
    """Add ``train`` (with the ``lungs`` target) to the ``thoracic`` subcommands.

    Returns the ``train`` command's own subparsers, so other models add their targets beside
    ``lungs``: ``targets = train.add_parser(sub); targets.add_parser("detector", ...)``.
    """
    p = subparsers.add_parser("train", help="train a model (needs pip install 'thoracic[train]')")
    targets = p.add_subparsers(dest="target", metavar="MODEL", title="models")
    t = targets.add_parser("lungs", help="train the lung segmentation UNet (the shipped lungs model)")
    t.add_argument("--data", type=IN_DIR, required=True, help="lung data set folder with pairs.csv, images/, masks/")
    t.add_argument("--out", type=OUT_DIR, required=True, help="output folder: checkpoint (resumes), lungs.onnx, log, summary")
    t.add_argument("--epochs", type=POSITIVE, default=60)
    t.add_argument("--size", type=POSITIVE, default=192, help="model input size (square, multiple of 16)")
    t.add_argument("--encoder", choices=("unet", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"),
                   default="unet", help="unet: the from-scratch UNet (default); efficientnet-liteN: a UNet decoder over "
                   "the ImageNet-pretrained EfficientNet-LiteN (size a multiple of 32)")
    t.add_argument("--base", type=POSITIVE, default=16, help="UNet channels at full resolution (--encoder unet)")
    t.add_argument("--batch", type=POSITIVE, default=4)
    t.add_argument("--lr", type=POSITIVE_FLOAT, default=1e-3)
    t.add_argument("--encoder-lr", type=NON_NEGATIVE, default=None,
                   help="peak learning rate of the pretrained encoder's weights (default: --lr; --encoder efficientnet-liteN)")
    t.add_argument("--augment", choices=("standard", "strong"), default="standard",
                   help="standard: the shipped model's augmentation; strong: adds aspect changes and the classifier's "
                   "site augmentation (window, CLAHE, blur, noise, JPEG)")
    t.add_argument("--hflip", action="store_true", help="also mirror left-right during augmentation")
    t.add_argument("--seed", type=COUNT, default=0)
    t.add_argument("--threads", type=POSITIVE, default=2, help="torch CPU threads")
    t.add_argument("--folds", type=COUNT, default=0, help="cross-validation: number of folds inside split=train")
    t.add_argument("--fold", type=COUNT_OR_OFF, default=-1, help="cross-validation: the fold held out")
    t.add_argument("--threshold", type=FRACTION, default=0.5,
                   help="lung probability threshold stored in the model's contract (post-processing)")
    t.add_argument("--no-export", action="store_true", help="skip the ONNX export")
    t.set_defaults(func=_cmd_train_lungs)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train`` on its own (``python -m thoracic.cli.train lungs ...``)."""
    from thoracic.errors import ThoracicError

    parser = Parser(prog="thoracic")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
