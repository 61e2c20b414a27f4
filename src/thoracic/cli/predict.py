"""``thoracic predict INPUTS... --out preds.csv``: findings of every radiograph, resumable.

Wire into the main parser with::

    p = sub.add_parser("predict", help=predict.HELP)
    predict.add_arguments(p)          # sets func=predict.run

Writes ``preds.csv`` (``image_id,label,score,x_min,y_min,x_max,y_max``; with ``--format kaggle``
``image_id,PredictionString``) and the sidecar ``<out stem>.images.csv``
(:data:`IMAGE_COLUMNS`), appending and flushing per image (:class:`PredictionCsv`), so a run
killed at any moment resumes with ``--resume`` without losing or repeating an image. Images are
decoded ahead of the models by :class:`~thoracic.inference.batch.BatchPredictor`, or spread
over a Ray cluster with ``--ray`` (:mod:`thoracic.inference.ray`); inputs come from
folders, files or ``--manifest``. Exit status 1 if any input failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from thoracic._version import __version__
from thoracic.errors import ConfigError, ThoracicError
from thoracic.labels import CLASS_IDS, NO_FINDING, NO_FINDING_BOX, NO_FINDING_ID

if TYPE_CHECKING:
    from thoracic.inference.batch import BatchResult

__all__ = [
    "HELP",
    "IMAGE_COLUMNS",
    "KAGGLE_COLUMNS",
    "PRED_COLUMNS",
    "PROCESS_READERS_FROM",
    "PredictionCsv",
    "add_arguments",
    "main",
    "read_manifest",
    "run",
    "sidecar_path",
]

HELP = "detect findings on radiographs (DICOM/PNG/JPEG) and write a CSV"
PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")
KAGGLE_COLUMNS = ("image_id", "PredictionString")
#: ``--readers-in auto`` decodes in processes from this many images on: they cost ~0.4 s to start
#: and win ~10% on 2 cores (the JPEG, JPEG-LS and JPEG 2000 decoders hold the GIL).
PROCESS_READERS_FROM = 64
IMAGE_COLUMNS = ("image_id", "source", "status", "error", "width", "height", "p_abnormal", "models", "thoracic_version")


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """``<out stem>.images.csv`` next to ``out``."""
    p = Path(out)
    return p.with_name(f"{p.stem}.images.csv")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``predict`` options to ``p`` and set ``func=run``."""
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="files or folders (searched recursively)")
    p.add_argument("--manifest", metavar="FILE", default=None,
                   help="a list of inputs: one path per line, or a CSV with a path (or source) column and an "
                        "optional image_id column; relative paths start at the manifest's folder")
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
    p.add_argument("--heatmaps", action="store_true",
                   help="with --overlays: also write <image_id>_heatmap.png, the detector's Eigen-CAM over the image with the boxes")
    p.add_argument("--resume", action="store_true", help="skip images already done with the same models")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime threads per model (default: cores / --workers)")
    p.add_argument("--readers", type=int, default=0, help="images decoded ahead of the models at once (default: one per core)")
    p.add_argument("--workers", type=int, default=0,
                   help="images run through the models at once (default: one per core)")
    p.add_argument("--prefetch", type=int, default=0,
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
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster with Ray Data: a local one without ADDRESS, else e.g. HEAD:6379 or "
                        "ray://HEAD:10001 (after the inputs, or --ray=ADDRESS; needs thoracic[ray])")
    p.add_argument("--ray-workers", type=int, default=0,
                   help="model replicas on the Ray cluster (default: one per CPU of the cluster)")
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
    """The complete rows of a CSV this command wrote; a row torn by a kill (no line end, wrong
    number of fields, or an unterminated quote) is dropped, never half-kept."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        text = fh.read()
    records: list[list[str]] = []
    torn = not text.endswith("\n")
    try:
        records.extend(csv.reader(io.StringIO(text)))
    except csv.Error:  # the file ends inside a quoted field
        torn = True
    if not records:
        return []
    header, body = records[0], records[1:]
    if torn and body:
        body = body[:-1]
    return [dict(zip(header, r, strict=True)) for r in body if len(r) == len(header)]


def _rewrite(path: Path, columns: Sequence[str], rows: list[dict[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns))
        w.writeheader()
        w.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _open_append(path: Path, columns: Sequence[str], fresh: bool) -> tuple[TextIO, csv.DictWriter]:
    if fresh or not path.is_file():
        _rewrite(path, columns, [])
    fh = path.open("a", newline="")
    return fh, csv.DictWriter(fh, fieldnames=list(columns))


def _overlay(pred: Any, src: str, out_dir: Path, read_opts: Any, min_score: float) -> None:
    import cv2

    from thoracic.detect.overlay import draw_findings
    from thoracic.io import read

    rg = read(src, read_opts, image_id=pred.image_id)
    rgb = draw_findings(rg, pred.detections, min_score=min_score)
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_dir / f"{pred.image_id}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if pred.heatmap is not None:
        from thoracic.explain import blend

        # the heatmap at the overlay's size (draw_findings may have scaled the image down)
        cam = cv2.resize(pred.heatmap, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out_dir / f"{pred.image_id}_heatmap.png"), cv2.cvtColor(blend(rgb, cam, alpha=0.5), cv2.COLOR_RGB2BGR))


class PredictionCsv:
    """``preds.csv`` and its sidecar, written one image at a time so that a run can be killed anytime.

    Each image's prediction rows are appended and flushed first, then its sidecar row; an image
    counts as done only once its sidecar row says ``ok`` with the same models. With ``resume``
    both files are first rewritten (atomically) to the done images only, which drops the rows of
    an image cut short by a kill (a torn last line included), so that image is predicted again
    and written exactly once.

    Parameters
    ----------
    out:
        The predictions CSV; the sidecar is :func:`sidecar_path` of it.
    fmt:
        ``"rows"`` or ``"kaggle"``.
    models:
        The model ids of this run (:attr:`Predictor.model_ids <thoracic.inference.predictor.Predictor.model_ids>`).
    resume:
        Keep the images already done with the same models (else start both files afresh).
    """

    def __init__(self, out: str | os.PathLike[str], fmt: str = "rows", models: str = "", *, resume: bool = False) -> None:
        if fmt not in ("rows", "kaggle"):
            raise ConfigError.unknown("prediction format", fmt, ("rows", "kaggle"))
        self.out = Path(out)
        self.side = sidecar_path(self.out)
        self.fmt, self.models = fmt, models
        self.columns = KAGGLE_COLUMNS if fmt == "kaggle" else PRED_COLUMNS
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        if resume:
            self._keep_done()
        self._pf, self._pw = _open_append(self.out, self.columns, fresh=not resume)
        self._sf, self._sw = _open_append(self.side, IMAGE_COLUMNS, fresh=not resume)

    def _keep_done(self) -> None:
        rows = _read_rows(self.out)
        if rows and set(rows[0]) != set(self.columns):
            raise ConfigError(f"{self.out} was written in another --format; use another --out")
        with_rows = {r["image_id"] for r in rows}  # every image done has rows ("No finding" at least)
        previous: dict[str, dict[str, str]] = {}
        for r in _read_rows(self.side):  # the first ok row of each image (a later one is a duplicate)
            iid = r["image_id"]
            if r.get("status") == "ok" and r.get("models") == self.models and iid in with_rows and iid not in previous:
                previous[iid] = r
        self.done = set(previous)
        _rewrite(self.out, self.columns, [r for r in rows if r["image_id"] in self.done])
        _rewrite(self.side, IMAGE_COLUMNS, list(previous.values()))

    def write(self, result: BatchResult) -> None:
        """Append one image's rows (predictions first, then the sidecar row) and flush both."""
        row: dict[str, Any] = {"image_id": result.image_id, "source": result.source, "models": self.models,
                               "thoracic_version": __version__}
        pred = result.prediction
        if pred is not None:
            if self.fmt == "kaggle":
                self._pw.writerow(_kaggle_row(pred))
            else:
                self._pw.writerows(_pred_rows(pred))
            self._pf.flush()
            row.update(status="ok", error="", width=pred.width, height=pred.height,
                       p_abnormal="" if pred.p_abnormal is None else _fmt(pred.p_abnormal))
        else:
            row.update(status="failed", error=" ".join(result.describe_error().split()))  # one line
        self._sw.writerow({k: row.get(k, "") for k in IMAGE_COLUMNS})
        self._sf.flush()
        if pred is not None:
            self.done.add(result.image_id)

    def close(self) -> None:
        self._pf.close()
        self._sf.close()

    def __enter__(self) -> PredictionCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _threads(args: argparse.Namespace, workers: int) -> int:
    if args.threads is not None:
        return args.threads
    from thoracic.inference.batch import default_workers

    return max(1, default_workers() // max(1, workers))


def run(args: argparse.Namespace) -> int:
    """The ``predict`` handler (returns the exit status)."""
    from tqdm import tqdm

    from thoracic._fs import find_inputs
    from thoracic.inference.batch import BatchPredictor, PipelineConfig
    from thoracic.inference.predictor import PredictConfig, Predictor
    from thoracic.io import image_id
    from thoracic.io.radiograph import ReadOptions
    from thoracic.models.runtime import onnx_device

    if args.weights and (not args.models or len(args.weights) != len(args.models)):
        raise ConfigError("--weights needs one weight per --models file")
    if args.no_classifier and args.classifier:
        raise ConfigError("give --classifier or --no-classifier, not both")
    if args.ray and os.path.exists(args.ray):
        raise ConfigError(f"--ray took the input {args.ray!r} as the cluster address; put --ray after the "
                          "inputs, or write --ray=ADDRESS")
    if not args.inputs and not args.manifest:
        raise ConfigError("give input files or folders, or --manifest FILE")
    cfg = PredictConfig(conf=args.conf, iou=args.iou, max_det=args.max_det, tta=args.tta,
                        weights=tuple(args.weights or ()), wbf_iou=args.wbf_iou, low=args.low, lung_roi=args.lung_roi)
    if args.heatmaps and not args.overlays:
        raise ConfigError("--heatmaps draws into the --overlays folder: give --overlays DIR too")
    if args.heatmaps and args.ray is not None:
        raise ConfigError("--heatmaps is not available with --ray (run the overlays without --ray)")
    pipeline = PipelineConfig(readers=args.readers, workers=args.workers, prefetch=args.prefetch,
                              reduced_decode=not args.full_decode, heatmap=args.heatmaps)
    with onnx_device(args.device):
        predictor = Predictor.load(args.models or (), args.classifier, cfg, use_classifier=not args.no_classifier,
                                   threads=_threads(args, pipeline.n_workers))
    if args.lung_roi:
        _check_lungs()
    items = [(f, image_id(f)) for f in find_inputs(args.inputs)] + (read_manifest(args.manifest) if args.manifest else [])
    items = _unique(items)
    read_opts = ReadOptions(allow_non_chest=args.allow_non_chest)
    failed = n_ok = 0
    with PredictionCsv(args.out, args.format, predictor.model_ids, resume=args.resume) as sink:
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
            bar.write(f"resuming: {already} image(s) already done with the same models")
        try:
            for result in results:
                sink.write(result)
                if result.ok:
                    n_ok += 1
                    if args.overlays:
                        try:
                            _overlay(result.prediction, result.source, Path(args.overlays), read_opts, args.overlay_conf)
                        except (ThoracicError, OSError) as err:
                            bar.write(f"overlay failed: {result.source}: {err}")
                else:
                    failed += 1
                    what = result.error if isinstance(result.error, ThoracicError) else f"{result.source}: {result.describe_error()}"
                    bar.write(f"failed: {what}")
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


def read_manifest(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(path, image_id)`` of every input a manifest lists (see ``--manifest``)."""
    from thoracic.io import image_id

    manifest = Path(path)
    try:
        text = manifest.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the manifest: {err.strerror or err}", path=str(manifest)) from err
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    header = next(csv.reader([lines[0]]))
    column = next((c for c in ("path", "source") if c in header), None)
    if column is not None:
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        entries = [(r[column], r.get("image_id") or "") for r in rows]
    else:
        entries = [(line.strip(), "") for line in lines]
    out = []
    for name, iid in entries:
        if not name:
            raise ConfigError("a manifest row has no path", path=str(manifest))
        full = Path(name) if Path(name).is_absolute() else manifest.parent / name
        out.append((str(full), iid or image_id(full)))
    return out


def _unique(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The inputs once each; two different files with one image id are an error."""
    from thoracic.errors import DuplicateImageIdError

    seen: dict[str, str] = {}
    out = []
    for path, iid in items:
        if iid in seen:
            if os.path.realpath(seen[iid]) != os.path.realpath(path):
                raise DuplicateImageIdError(
                    f"two inputs have the image id {iid!r}: {seen[iid]} and {path}; "
                    "rename one of them, give image_id in a manifest, or process them in separate runs"
                )
            continue
        seen[iid] = path
        out.append((path, iid))
    return out


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
    parser = add_arguments(argparse.ArgumentParser(prog="thoracic predict", description=HELP))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
