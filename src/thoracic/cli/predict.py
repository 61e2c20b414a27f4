"""``thoracic predict INPUTS... --out preds.csv``: findings of every radiograph, resumable.

Wire into the main parser with::

    p = sub.add_parser("predict", help=predict.HELP)
    predict.add_arguments(p)          # sets func=predict.run

Writes ``preds.csv`` (``image_id,label,score,x_min,y_min,x_max,y_max``; with ``--format kaggle``
``image_id,PredictionString``) and the sidecar ``<out stem>.images.csv``
(:data:`~thoracic.batch.predictions.IMAGE_COLUMNS`), appending and flushing per image
(:class:`~thoracic.batch.predictions.PredictionCsv`), so a run killed at any moment resumes with
``--resume`` without losing or repeating an image. Images are decoded ahead of the models by
:class:`~thoracic.inference.batch.BatchPredictor`, or spread over a Ray cluster with ``--ray``
(:mod:`thoracic.inference.ray`); inputs come from folders, files or ``--manifest``. An input that
is not a frontal chest radiograph (by its DICOM header or its pixels) is ``refused`` in the
sidecar, with the reason, unless ``--allow-non-chest`` (then analyzed, its ``flags`` column
saying why). Exit status 1 if any input failed or was refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from thoracic.cli._args import (
    COUNT,
    FRACTION,
    IN_FILE,
    OUT_DIR,
    OUT_FILE,
    POSITIVE,
    POSITIVE_FLOAT,
    Parser,
    add_backend_arguments,
)
from thoracic.cli.evaluate import add_selection
from thoracic.errors import ConfigError, NotChestRadiographError, ThoracicError

if TYPE_CHECKING:
    from thoracic.inference.preset import Preset

__all__ = ["HELP", "PROCESS_READERS_FROM", "add_arguments", "main", "run"]

HELP = "detect findings on radiographs (DICOM, PNG, JPEG) and write them to a CSV"
#: ``--readers-in auto`` decodes in processes from this many images on: they cost ~0.4 s to start
#: and win ~10% on 2 cores (the JPEG, JPEG-LS and JPEG 2000 decoders hold the GIL).
PROCESS_READERS_FROM = 64


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``predict`` options to ``p`` and set ``func=run``."""
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="files or folders (searched recursively)")
    p.add_argument("--manifest", type=IN_FILE, metavar="FILE", default=None,
                   help="a list of inputs: one path per line, or a CSV with a path (or source) column and an "
                        "optional image_id column; relative paths start at the manifest's folder")
    add_selection(p, "predict only the inputs")
    p.add_argument("--out", type=OUT_FILE, required=True, help="predictions CSV (a sidecar <stem>.images.csv is written beside it)")
    p.add_argument("--format", choices=["rows", "kaggle"], default="rows",
                   help="rows: one box per row (default); kaggle: the competition's submission format")
    p.add_argument("--conf", type=FRACTION, default=0.01, help="keep boxes scoring at least this (default 0.01)")
    p.add_argument("--iou", type=FRACTION, default=0.7, help="NMS IoU of each detector (default 0.7, as ultralytics)")
    p.add_argument("--max-det", type=POSITIVE, default=100, help="at most this many boxes per image (default 100)")
    p.add_argument("--preset", metavar="NAME|JSON", default=None,
                   help="the detectors and how they run, in one: 'fast' (the shipped detector and classifier, the "
                        "default) or a preset file such as the ensemble.json of 'thoracic train cv' (its detectors, "
                        "weights, TTA, WBF IoU and classifier); --classifier, --no-classifier and --wbf-iou change "
                        "it, --tta and --lung-roi add to it")
    p.add_argument("--models", nargs="+", metavar="ONNX", default=None,
                   help="detector ONNX files fused by WBF (default: the shipped detector)")
    p.add_argument("--weights", nargs="+", type=POSITIVE_FLOAT, default=None, help="one WBF weight per --models file")
    p.add_argument("--wbf-iou", type=FRACTION, default=None, help="IoU of the WBF fusion (models and TTA; default 0.55)")
    p.add_argument("--classifier", default=None, help="normal/abnormal ONNX (default: the shipped one with the shipped detector)")
    p.add_argument("--no-classifier", action="store_true", help="no 2-class filter")
    p.add_argument("--low", type=FRACTION, default=None,
                   help="drop all boxes of images with P(abnormal) below this (default: the classifier's validated threshold)")
    p.add_argument("--tta", action="store_true", help="also predict the mirrored image and fuse (WBF)")
    p.add_argument("--lung-roi", action="store_true", help="detect on the lung crop of the lungs model (boxes mapped back)")
    p.add_argument("--overlays", type=OUT_DIR, metavar="DIR", default=None, help="write a PNG with the boxes drawn per image")
    p.add_argument("--overlay-conf", type=FRACTION, default=None,
                   help="draw every finding scoring at least this (default: the clinical findings, each above the "
                        "detector's operating point, overlapping boxes of one finding merged); the CSV keeps --conf")
    p.add_argument("--heatmaps", action="store_true",
                   help="with --overlays: also write <image_id>_heatmap.png, the detector's Eigen-CAM over the image with the "
                        "boxes, and with a multi-label classifier <image_id>_heatmap_<finding>.png, its class activation "
                        "map of each finding of --heatmap-findings")
    p.add_argument("--heatmap-findings", metavar="SPEC", default=None,
                   help="with --heatmaps and a multi-label classifier, the findings whose maps are written: above "
                        "(default: each finding whose probability reaches its threshold), all, none, or labels "
                        "separated by commas (names or snake_case, e.g. cardiomegaly,pleural_effusion; abnormal too)")
    p.add_argument("--resume", action="store_true",
                   help="skip images already done; refused when the table was written with other settings "
                        "(<out stem>.settings.json)")
    p.add_argument("--threads", type=POSITIVE, default=None,
                   help="ONNX Runtime threads per model (default: cores / --workers)")
    p.add_argument("--readers", type=COUNT, default=0, help="images decoded ahead of the models at once (default: one per core)")
    p.add_argument("--workers", type=COUNT, default=0,
                   help="images run through the models at once (default: one per core)")
    p.add_argument("--prefetch", type=COUNT, default=0,
                   help="prepared images waiting for the models, at most (default 0: 16 when they are the models' "
                        "inputs only, 4 with --lung-roi, where the decoded images wait)")
    p.add_argument("--readers-in", choices=["auto", "threads", "processes"], default="auto",
                   help="processes: decoders run outside this process (no GIL; a decoder crash fails only its "
                        "image; ~0.4 s to start); auto (default): processes from "
                        f"{PROCESS_READERS_FROM} images on")
    p.add_argument("--full-decode", action="store_true",
                   help="decode JPEG 2000 at full resolution (default: the coarsest level the models need)")
    p.add_argument("--device", default="auto",
                   help="ONNX Runtime device: auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    add_backend_arguments(p)
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster with Ray Data: a local one without ADDRESS, else e.g. HEAD:6379 or "
                        "ray://HEAD:10001 (after the inputs, or --ray=ADDRESS; needs thoracic[ray])")
    p.add_argument("--ray-workers", type=COUNT, default=0,
                   help="model replicas on the Ray cluster (default: one per CPU of the cluster)")
    p.add_argument("--allow-non-chest", action="store_true",
                   help="analyze what the chest check refuses (photos, documents, CT slices, lateral views, colour "
                        "or non-chest images); flagged in the sidecar's flags column")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _preset(args: argparse.Namespace) -> Preset:
    """--preset with the options that change it (--classifier, --no-classifier, --wbf-iou)."""
    from thoracic.inference.preset import load_preset

    preset = load_preset(args.preset)
    if args.classifier is not None:
        preset = replace(preset, classifier=args.classifier)
    elif args.no_classifier:
        preset = replace(preset, classifier=None)
    if args.wbf_iou is not None:
        preset = replace(preset, wbf_iou=args.wbf_iou)
    return preset


def _threads(args: argparse.Namespace, workers: int) -> int:
    if args.threads is not None:
        return args.threads
    from thoracic.inference.batch import default_workers

    return max(1, default_workers() // max(1, workers))


def run(args: argparse.Namespace) -> int:
    """The ``predict`` handler (returns the exit status)."""
    from tqdm import tqdm

    from thoracic.batch.predictions import (
        ABOVE_THRESHOLD,
        PredictionCsv,
        heatmap_findings,
        maps_to_write,
        prediction_backends,
        prediction_inputs,
        prediction_settings,
        write_overlay,
    )
    from thoracic.inference.batch import BatchPredictor, PipelineConfig
    from thoracic.inference.predictor import PredictConfig, Predictor
    from thoracic.io.radiograph import ReadConfig
    from thoracic.models.runtime import onnx_backend, onnx_device

    if args.weights and (not args.models or len(args.weights) != len(args.models)):
        raise ConfigError("--weights needs one weight per --models file")
    if args.no_classifier and args.classifier:
        raise ConfigError("give --classifier or --no-classifier, not both")
    if args.ray and os.path.exists(args.ray):
        raise ConfigError(f"--ray took the input {args.ray!r} as the cluster address; put --ray after the "
                          "inputs, or write --ray=ADDRESS")
    if not args.inputs and not args.manifest:
        raise ConfigError("give input files or folders, or --manifest FILE")
    items = _select(prediction_inputs(args.inputs, args.manifest), args)
    if args.preset is not None and args.models:
        raise ConfigError("give --preset or --models, not both (a preset names its detectors)")
    cfg = PredictConfig(conf=args.conf, iou=args.iou, max_det=args.max_det, tta=args.tta,
                        weights=tuple(args.weights or ()), wbf_iou=0.55 if args.wbf_iou is None else args.wbf_iou,
                        low=args.low, lung_roi=args.lung_roi)
    if args.heatmaps and not args.overlays:
        raise ConfigError("--heatmaps draws into the --overlays folder: give --overlays DIR too")
    if args.heatmaps and args.ray is not None:
        raise ConfigError("--heatmaps is not available with --ray (run the overlays without --ray)")
    if args.heatmap_findings is not None and not args.heatmaps:
        raise ConfigError("--heatmap-findings chooses the maps of --heatmaps: give --heatmaps too")
    pipeline = PipelineConfig(readers=args.readers, workers=args.workers, prefetch=args.prefetch,
                              reduced_decode=not args.full_decode, heatmap=args.heatmaps)
    with onnx_device(args.device), onnx_backend(args.backend, args.precision):
        if args.preset is not None:
            predictor = Predictor.from_preset(_preset(args), cfg, threads=_threads(args, pipeline.n_workers))
        else:
            predictor = Predictor.load(args.models or (), args.classifier, cfg, use_classifier=not args.no_classifier,
                                       threads=_threads(args, pipeline.n_workers))
    if args.lung_roi:
        _check_lungs()
    chosen_maps: tuple[str, ...] | None = ()
    thresholds: dict[str, float] = {}
    if args.heatmaps and predictor.classifier is not None:
        clf = predictor.classifier
        chosen_maps = heatmap_findings(args.heatmap_findings or ABOVE_THRESHOLD, clf.labels, has_maps=clf.has_maps)
        thresholds = clf.thresholds
    elif args.heatmap_findings not in (None, ABOVE_THRESHOLD, "none"):
        raise ConfigError(f"--heatmap-findings {args.heatmap_findings}: no classifier runs (per-finding maps are its)")
    read_opts = ReadConfig(allow_non_chest=args.allow_non_chest, check_content=True)
    overlay_points = predictor.operating_points
    if args.overlay_conf is not None:
        from thoracic.detect.clinical import OperatingPoints

        overlay_points = OperatingPoints.uniform(args.overlay_conf)
    failed = n_ok = 0
    settings = prediction_settings(predictor, read_opts, reduced_decode=pipeline.reduced_decode)
    with PredictionCsv(args.out, args.format, predictor.model_ids, resume=args.resume, settings=settings,
                       extra=prediction_backends(predictor)) as sink:
        already = len({i for _, i in items} & sink.done)
        todo = [(f, i) for f, i in items if i not in sink.done]
        if args.ray is not None:
            from thoracic.inference.ray import predict_ray

            results = predict_ray(predictor, todo, address=args.ray or None, read=read_opts,
                                  reduced_decode=pipeline.reduced_decode, workers=args.ray_workers)
        else:
            auto = len(todo) >= PROCESS_READERS_FROM
            processes = {"threads": False, "processes": True}.get(args.readers_in, auto)
            results = BatchPredictor(predictor, replace(pipeline, processes=processes), read_opts).run(todo)
        bar = tqdm(total=len(todo), unit="img", desc="predict", disable=args.quiet or None, dynamic_ncols=True,
                   file=sys.stderr)
        if already:
            bar.write(f"resuming: {already} image(s) already done with the same settings")
        try:
            for result in results:
                sink.write(result)
                if result.ok:
                    n_ok += 1
                    if args.overlays:
                        try:
                            write_overlay(result.prediction, result.source, Path(args.overlays), read_opts, overlay_points,
                                          maps_to_write(result.prediction, chosen_maps, thresholds))
                        except (ThoracicError, OSError) as err:
                            bar.write(f"overlay failed: {result.source}: {err}")
                else:
                    failed += 1
                    what = result.error if isinstance(result.error, ThoracicError) else f"{result.source}: {result.describe_error()}"
                    bar.write(f"{'refused' if isinstance(result.error, NotChestRadiographError) else 'failed'}: {what}")
                bar.update(1)
        finally:
            bar.close()
            close = getattr(results, "close", None)
            if close is not None:
                close()
    print(f"{n_ok} image(s) predicted, {already} already done, {failed} failed; models {predictor.model_ids}; "
          f"{sink.out} and {sink.side}")
    if failed:
        print(f"error: {failed} input(s) failed; see the error column of {sink.side}", file=sys.stderr)
        return 1
    return 0


def _select(items: list[tuple[str, str]], args: argparse.Namespace) -> list[tuple[str, str]]:
    """The inputs of ``--folds/--fold`` or ``--image-list`` (all without them); says how many."""
    from thoracic.data.selection import image_selection, select_inputs

    selection = image_selection(folds=args.folds, fold=args.fold, image_list=args.image_list)
    if selection is None:
        return items
    chosen = select_inputs(items, selection)
    print(f"selected {len(chosen)} of {len(items)} input(s): the images of {selection.name}", file=sys.stderr)
    return chosen


def _check_lungs() -> None:
    try:
        from thoracic.anatomy import default_segmenter
    except ImportError as err:
        raise ConfigError("lung ROI needs the lungs model (not shipped yet)") from err
    try:
        default_segmenter()
    except ThoracicError as err:
        raise ConfigError(f"lung ROI needs the lungs model, which cannot be loaded: {err}") from err


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``predict`` standalone (tests call this in-process)."""
    parser = add_arguments(Parser(prog="thoracic predict", description=f"{HELP[0].upper()}{HELP[1:]}."))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
