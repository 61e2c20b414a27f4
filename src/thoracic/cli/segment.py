"""``thoracic segment``: lung masks (and the lung square) of radiographs with the shipped model."""

from __future__ import annotations

import argparse

from thoracic.cli._args import FRACTION, IN_FILE, OUT_DIR, POSITIVE, add_backend_arguments

__all__ = ["add_parser"]


def _cmd_segment(args: argparse.Namespace) -> int:
    from thoracic.anatomy.roi import RoiConfig
    from thoracic.batch.segment import SegmentConfig, segment_files
    from thoracic.cli._progress import finish, run_batch
    from thoracic.io import DEFAULT_MAX_PIXELS, ReadConfig
    from thoracic.models.runtime import onnx_backend

    options = SegmentConfig(
        roi=RoiConfig(margin=args.margin),
        read=ReadConfig(allow_non_chest=args.allow_non_chest, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                        check_content=True),
        overlays=args.overlays,
        crop_size=args.size if args.crops else None,
        model=args.model,
        threads=args.threads,
    )
    with onnx_backend(args.backend, args.precision):
        summary = run_batch("segment", args, segment_files, args.inputs, args.out, options, done="segmented")
    line = (f"{summary.segmented} segmented ({summary.fallbacks} fell back to the full image), "
            f"{summary.skipped} already done, {summary.failed} failed ({summary.refused} refused: not a frontal chest "
            f"radiograph); table: {summary.table}")
    return finish(summary, line, "the error column of masks.csv")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``segment`` to the ``thoracic`` subcommands."""
    p = subparsers.add_parser("segment", help="segment the lungs: mask PNGs at the original size and a masks.csv")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders (searched recursively)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder (re-running resumes)")
    p.add_argument("--overlays", action="store_true", help="also write overlays/<image_id>.png (mask outline, lung square)")
    p.add_argument("--crops", action="store_true", help="also write crops/<image_id>.png: the lung square, resized")
    p.add_argument("--size", type=POSITIVE, default=512, help="side of the lung-square crops (default 512)")
    p.add_argument("--margin", type=FRACTION, default=0.05, help="lung square margin per side, fraction of its side (default 0.05)")
    p.add_argument("--model", type=IN_FILE, default=None, help="an ONNX lung model (default: the shipped one)")
    p.add_argument("--threads", type=POSITIVE, default=2, help="inference threads (default 2)")
    add_backend_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-non-chest", action="store_true", help="segment what the chest check refuses (photos, CT slices, lateral views, ...) anyway (flagged)")
    p.add_argument("--max-pixels", type=POSITIVE, default=None, help="refuse images with more pixels (default 64e6)")
    p.set_defaults(func=_cmd_segment)
    return p
