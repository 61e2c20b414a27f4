"""The files of ``thoracic predict``: its inputs, ``preds.csv`` and its sidecar, resumable, and overlays.

``preds.csv`` holds ``image_id,label,score,x_min,y_min,x_max,y_max`` (:data:`PRED_COLUMNS`; with
the ``kaggle`` format ``image_id,PredictionString``) and the sidecar ``<out stem>.images.csv``
one row per image (:data:`IMAGE_COLUMNS`: the image's status and P(abnormal), then
:data:`FINDING_COLUMNS`, ``p_<finding>``: a multi-label classifier's probability of each of the 14
VinDr findings, in VinDr's class order, empty where the classifier has no output for it). :class:`PredictionCsv` appends and flushes them per
image (:class:`~thoracic.batch.runner.Manifest`), so a run killed at any moment resumes without
losing or repeating an image.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thoracic._fs import sidecar_path
from thoracic._version import __version__
from thoracic.batch.runner import Manifest, claim_settings, read_settings, write_png
from thoracic.errors import ConfigError, DuplicateImageIdError, NotChestRadiographError
from thoracic.labels import CLASS_IDS, FINDINGS, NO_FINDING, NO_FINDING_BOX, NO_FINDING_ID, label_slug

if TYPE_CHECKING:
    from thoracic.detect.clinical import OperatingPoints
    from thoracic.inference.batch import BatchResult
    from thoracic.inference.predictor import ImagePrediction, Predictor
    from thoracic.io.radiograph import ReadConfig

__all__ = [
    "FINDING_COLUMNS",
    "IMAGE_COLUMNS",
    "KAGGLE_COLUMNS",
    "PRED_COLUMNS",
    "PredictionCsv",
    "heatmap_findings",
    "maps_to_write",
    "prediction_backends",
    "prediction_inputs",
    "prediction_settings",
    "read_manifest",
    "settings_path",
    "write_overlay",
]

PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")
KAGGLE_COLUMNS = ("image_id", "PredictionString")
#: The sidecar's per-finding probability columns: ``p_`` and the finding's slug
#: (:func:`~thoracic.labels.label_slug`: ``p_aortic_enlargement`` ... ``p_nodule_mass`` ...
#: ``p_pulmonary_fibrosis``), one per VinDr finding in class-id order, whatever the classifier.
FINDING_COLUMNS = tuple(f"p_{label_slug(f)}" for f in FINDINGS)
IMAGE_COLUMNS = ("image_id", "source", "status", "error", "width", "height", "p_abnormal", "models", "thoracic_version",
                 "flags", *FINDING_COLUMNS)


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


def settings_path(pred_path: str | os.PathLike[str]) -> Path:
    """The settings file of a predictions CSV: ``preds.csv`` -> ``preds.settings.json`` beside it
    (the stem as :func:`~thoracic._fs.sidecar_path` takes it)."""
    side = sidecar_path(pred_path)
    return side.with_name(side.name[: -len(".images.csv")] + ".settings.json")


def prediction_backends(predictor: Predictor) -> dict[str, Any]:
    """Where each model ran, for the settings file beside the predictions (``{"backends": [...]}``,
    one ``"role file backend"`` per model): recorded, not compared on ``--resume`` (the parity
    tests hold the float32 back-ends to the same rows)."""
    return {"backends": [f"{m.role} {m.file} {m.backend}" for m in predictor.models]}


def prediction_settings(predictor: Predictor, read: ReadConfig | None = None, *,
                        reduced_decode: bool = True) -> dict[str, Any]:
    """What decides the rows of a prediction run, for :class:`PredictionCsv` (resuming requires the same).

    Every field of the predictor's :class:`~thoracic.inference.predictor.PredictConfig` (``conf``,
    ``iou``, ``max_det``, ``tta``, ``weights``, ``wbf_iou``, ``lung_roi``, ...), the filter threshold
    in effect (``low``: the classifier's own when not given), each model file (role, file, sha256
    prefix: its chain and classes come with it), how the images are read, and whether JPEG 2000 is
    decoded at a reduced resolution. Not the image selection, workers, threads or device.
    """
    from thoracic.io.radiograph import ReadConfig

    config = asdict(predictor.config)
    config["low"] = predictor.low
    config["models"] = [f"{m.role} {m.file} {m.sha256[:12]}" for m in predictor.models]
    config["read"] = read_settings(read or ReadConfig())
    config["reduced_decode"] = reduced_decode
    return json.loads(json.dumps(config, default=str))


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
    settings:
        What decides the rows (:func:`prediction_settings`), kept in :func:`settings_path` beside
        the table: with ``resume`` a table written with other settings is refused (naming what
        changed), never continued; without it the file is replaced. ``None``: no settings file.
    extra:
        Recorded in the settings file beside ``settings`` but not compared on ``resume`` (the
        models' back-ends, :func:`prediction_backends`).

    Raises
    ------
    ConfigError
        With ``resume``: the table was written in another format or with other settings.
    """

    def __init__(
        self, out: str | os.PathLike[str], fmt: str = "rows", models: str = "", *, resume: bool = False,
        settings: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
    ) -> None:
        if fmt not in ("rows", "kaggle"):
            raise ConfigError.unknown("prediction format", fmt, ("rows", "kaggle"))
        self.out = Path(out)
        self.side = sidecar_path(self.out)
        self.settings_file = settings_path(self.out)
        self.fmt, self.models = fmt, models
        self.columns = KAGGLE_COLUMNS if fmt == "kaggle" else PRED_COLUMNS
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            if not (resume and (self.out.exists() or self.side.exists())):
                self.settings_file.unlink(missing_ok=True)  # a fresh table: its settings are this run's
            claim_settings(self.settings_file, {"format": fmt, **settings}, f"{self.out.name} made with other settings",
                           advice="use another --out, or run without --resume to start over", extra=extra)
        preds, images = Manifest(self.out, self.columns), Manifest(self.side, IMAGE_COLUMNS)
        kept_preds: list[dict[str, str]] = []
        kept_images: list[dict[str, str]] = []
        if resume:
            kept_preds, kept_images = self._done(preds, images)
        self.done: set[str] = {r["image_id"] for r in kept_images}
        self._preds = preds.start(kept_preds)
        self._images = images.start(kept_images)

    def _done(self, preds: Manifest, images: Manifest) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        """The rows of both files of the images done with these models."""
        rows = preds.rows()
        if rows and set(rows[0]) != set(self.columns):
            raise ConfigError(f"{self.out} was written in another --format; use another --out")
        with_rows = {r["image_id"] for r in rows}  # every image done has rows ("No finding" at least)
        previous: dict[str, dict[str, str]] = {}
        for r in images.rows():  # the first ok row of each image (a later one is a duplicate)
            iid = r["image_id"]
            if r.get("status") == "ok" and r.get("models") == self.models and iid in with_rows and iid not in previous:
                previous[iid] = r
        return [r for r in rows if r["image_id"] in previous], list(previous.values())

    def write(self, result: BatchResult) -> None:
        """Append one image's rows (predictions first, then the sidecar row) and flush both."""
        row: dict[str, Any] = {"image_id": result.image_id, "source": result.source, "models": self.models,
                               "thoracic_version": __version__}
        pred = result.prediction
        if pred is not None:
            self._preds.write(*([_kaggle_row(pred)] if self.fmt == "kaggle" else _pred_rows(pred)))
            row.update(status="ok", error="", width=pred.width, height=pred.height,
                       p_abnormal="" if pred.p_abnormal is None else _fmt(pred.p_abnormal), flags=";".join(pred.flags))
            row.update({f"p_{label_slug(k)}": _fmt(v) for k, v in pred.finding_probabilities.items() if k in FINDINGS})
        else:  # refused: not a frontal chest radiograph (header or pixels); failed: anything else
            row.update(status="refused" if isinstance(result.error, NotChestRadiographError) else "failed",
                       error=" ".join(result.describe_error().split()))  # one line
        self._images.write(row)
        if pred is not None:
            self.done.add(result.image_id)

    def close(self) -> None:
        self._preds.close()
        self._images.close()

    def __enter__(self) -> PredictionCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: The default of :func:`heatmap_findings`: each finding whose probability reaches its threshold.
ABOVE_THRESHOLD = "above"
#: The threshold of a finding whose classifier stores none.
DEFAULT_FINDING_THRESHOLD = 0.5


def heatmap_findings(spec: str, labels: Sequence[str], *, has_maps: bool) -> tuple[str, ...] | None:
    """Which per-finding maps ``predict --heatmaps`` writes (``--heatmap-findings SPEC``).

    ``above`` (default): for each image, the findings whose probability reaches their threshold
    (``None`` is returned: the choice is per image, :func:`maps_to_write`); ``all``: ``abnormal``
    and every finding of the classifier; ``none``; or a comma-separated list of labels (VinDr
    names or their slugs, e.g. ``cardiomegaly,pleural_effusion``; ``abnormal`` too), whatever
    their probability. ``labels`` are the classifier's; ``has_maps`` whether it makes maps.

    Raises
    ------
    ConfigError
        Labels or ``all`` asked of a classifier without per-finding maps (a 2-class one), or a label
        the classifier does not have.
    """
    spec = spec.strip()
    if spec.lower() == ABOVE_THRESHOLD:
        return None
    if spec.lower() == "none":
        return ()
    mapped = [k for k in labels if k == "abnormal" or k in FINDINGS]
    if not has_maps or len(mapped) < 2:
        raise ConfigError(f"--heatmap-findings {spec}: the classifier has no per-finding maps (a multi-label "
                          "classifier with its feature map and head weights has them)")
    if spec.lower() == "all":
        return tuple(mapped)
    by_name = {**{label_slug(k): k for k in mapped}, **{k.lower(): k for k in mapped}}
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        label = by_name.get(part.lower()) or by_name.get(label_slug(part))
        if label is None:
            raise ConfigError.unknown("finding of the classifier", part, mapped)
        out.append(label)
    if not out:
        raise ConfigError("--heatmap-findings names no finding: give labels, all, above or none")
    return tuple(dict.fromkeys(out))


def maps_to_write(pred: ImagePrediction, chosen: Sequence[str] | None, thresholds: Mapping[str, float]) -> list[str]:
    """The labels of ``pred``'s per-finding maps to write: ``chosen`` (:func:`heatmap_findings`), or
    with ``None`` the findings whose probability reaches their threshold (``thresholds``, else
    :data:`DEFAULT_FINDING_THRESHOLD`), most probable first."""
    available = set(pred.map_labels)
    if chosen is not None:
        return [k for k in chosen if k in available]
    above = [(v, k) for k, v in pred.finding_probabilities.items()
             if k in available and v >= thresholds.get(k, DEFAULT_FINDING_THRESHOLD)]
    return [k for _, k in sorted(above, key=lambda t: -t[0])]


def write_overlay(pred: ImagePrediction, src: str, out_dir: Path, read: ReadConfig, points: OperatingPoints,
                  maps: Sequence[str] = ()) -> None:
    """Write ``<image_id>.png`` (the clinical findings of ``points`` drawn on the image: each above its
    operating point, overlapping boxes of one finding merged) into ``out_dir``,
    ``<image_id>_heatmap.png`` when the prediction has a heatmap, and
    ``<image_id>_heatmap_<slug>.png`` with the classifier's map of each label of ``maps``
    (:func:`maps_to_write`; :func:`~thoracic.labels.label_slug` of the label)."""
    import cv2

    from thoracic.detect.overlay import draw_findings
    from thoracic.io import read as read_file

    rg = read_file(src, read, image_id=pred.image_id)
    rgb = draw_findings(rg, points.select(pred.detections))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_png(out_dir / f"{pred.image_id}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if pred.heatmap is not None:
        from thoracic.explain import blend

        # the heatmap at the overlay's size (draw_findings may have scaled the image down)
        cam = cv2.resize(pred.heatmap, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        write_png(out_dir / f"{pred.image_id}_heatmap.png", cv2.cvtColor(blend(rgb, cam, alpha=0.5), cv2.COLOR_RGB2BGR))
    for label in maps:
        from thoracic.explain import blend

        cam = pred.finding_map(label, (rgb.shape[1], rgb.shape[0]))
        write_png(out_dir / f"{pred.image_id}_heatmap_{label_slug(label)}.png",
                  cv2.cvtColor(blend(rgb, cam, alpha=0.5), cv2.COLOR_RGB2BGR))


def read_manifest(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(path, image_id)`` of every input a manifest lists (see ``thoracic predict --manifest``):
    one path per line, or a CSV with a ``path`` (or ``source``) column and an optional ``image_id``
    column; relative paths start at the manifest's folder.

    Raises
    ------
    ConfigError
        The manifest cannot be read, lists nothing, or has a row without a path.
    """
    from thoracic.io import image_id

    manifest = Path(path)
    try:
        text = manifest.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read the manifest: {err.strerror or err}", path=str(manifest)) from err
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ConfigError("the manifest lists no inputs (it is empty)", path=str(manifest))
    header = next(csv.reader([lines[0]]))
    column = next((c for c in ("path", "source") if c in header), None)
    if column is not None:
        rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
        if not rows:
            raise ConfigError("the manifest lists no inputs (it has a header and no rows)", path=str(manifest))
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


def prediction_inputs(inputs: list[str], manifest: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """``(path, image_id)`` of files and folders (:func:`thoracic._fs.find_inputs`) and then of the
    ``manifest`` (:func:`read_manifest`), each image once: a file reached twice with one image id
    (named twice, in a folder named too, listed again in the manifest) is predicted once.

    Raises
    ------
    DuplicateImageIdError
        Two different files have one image id (their rows could not be told apart).
    ConfigError
        Nothing to predict: the files and folders hold no file and there is no manifest, or the
        manifest lists nothing.
    """
    from thoracic._fs import find_inputs, no_inputs_message
    from thoracic.io import image_id

    items = [(f, image_id(f)) for f in find_inputs(inputs)] + (read_manifest(manifest) if manifest else [])
    if not items:
        raise ConfigError(no_inputs_message(inputs))
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
