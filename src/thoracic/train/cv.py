"""Cross-validate a detector on an annotation table: export, train every fold, predict out of fold, score.

:func:`cross_validate` does what a researcher would otherwise write by hand::

    out/
      folds.csv            every image's fold (patient-grouped, stratified; the test fold included)
      test_images.txt      with ``test_fold``: its image ids, never exported, trained on or predicted
      data/                ``thoracic dataset export`` of the other folds (data_<k>.yaml, chain.json)
      runs/fold_<k>/       the ultralytics run validated on fold k (weights/best.pt, last.pt)
      models/fold_<k>.onnx its ONNX export (the training chain, then the letterbox)
      oof/fold_<k>.csv     fold k's ORIGINAL images (DICOM, PNG: what the table names, never the
                           exported crops) predicted by the model that did not train on them
      oof.csv              every out-of-fold prediction (``thoracic predict``'s rows format)
      truth.csv            the truth it is scored against (readers fused as for training)
      cv.json, cv.md       per-fold scores, their mean and spread, and the pooled out-of-fold
                           score with bootstrap 95 % intervals
      ensemble.json        a preset of the fold models fused by WBF (no TTA, no 2-class filter):
                           ``thoracic predict --preset out/ensemble.json`` (:mod:`thoracic.inference.preset`)

Every step resumes: a finished fold is not trained again, an interrupted one continues from its
``last.pt``, exported models and complete prediction files are kept. Nothing is chosen on the test
fold; score it once, at the end, with ``thoracic predict`` + ``thoracic evaluate --folds out/folds.csv``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thoracic.data.annotations import Annotations
from thoracic.errors import ConfigError
from thoracic.inference.preset import Preset, members_of, write_preset

__all__ = ["CrossValConfig", "CrossValResult", "cross_validate"]

#: The ``DetectorTrainConfig`` fields that :func:`cross_validate` sets itself.
_OWN = frozenset({"data", "out", "name", "resume"})


@dataclass(frozen=True)
class CrossValConfig:
    """Settings of one cross-validation (written to ``out/cv_config.json``; a resumed run must match).

    Attributes
    ----------
    out:
        The output folder (see the module docstring).
    folds:
        Number of folds, the test fold included (patient-grouped, stratified: :func:`thoracic.data.kfold_split`).
    test_fold:
        A fold held out of everything (``None``: every fold is a CV fold).
    seed:
        Seed of the fold split.
    chain:
        The preprocessing chain of the training images and of prediction (a name or spec).
    fuse:
        How several readers become training labels and truth: ``"auto"`` (WBF when an image has
        several readers), ``"wbf"``, ``"nms"`` or ``"none"``.
    fuse_iou:
        IoU above which the readers' boxes are one finding (as ``thoracic dataset fuse``).
    detector:
        Fields of :class:`~thoracic.train.detector.DetectorTrainConfig` for every fold (``model``,
        ``pretrained``, ``epochs``, ``imgsz``, ``batch``, ``device``, ``threads``, ...).
    conf, max_det:
        Post-processing of the out-of-fold predictions (the Kaggle defaults of ``thoracic predict``).
    bootstrap:
        Bootstrap resamples of the pooled intervals.
    workers:
        Processes of the export (0: one per core).
    """

    out: str
    folds: int = 5
    test_fold: int | None = None
    seed: int = 0
    chain: str = "yolo-512-clahe"
    fuse: str = "auto"
    fuse_iou: float = 0.4
    detector: Mapping[str, Any] = field(default_factory=dict)
    conf: float = 0.01
    max_det: int = 100
    bootstrap: int = 1000
    workers: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"cross-validation needs at least 2 folds, got {self.folds}")
        if self.test_fold is not None and not 0 <= self.test_fold < self.folds:
            raise ConfigError(f"test_fold must be in 0..{self.folds - 1}, got {self.test_fold}")
        if self.test_fold is not None and self.folds < 3:
            raise ConfigError("with a test fold, cross-validation needs at least 3 folds")
        if self.fuse not in ("auto", "wbf", "nms", "none"):
            raise ConfigError.unknown("fusion", self.fuse, ("auto", "wbf", "nms", "none"))
        own = sorted(_OWN & set(self.detector))
        if own:
            raise ConfigError(f"cross-validation sets {', '.join(own)} itself; leave them out of the detector settings")

    @property
    def cv_folds(self) -> list[int]:
        return [k for k in range(self.folds) if k != self.test_fold]

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share (everything but the post-processing and bootstrap)."""
        return {"folds": self.folds, "test_fold": self.test_fold, "seed": self.seed, "chain": self.chain,
                "fuse": self.fuse, "fuse_iou": self.fuse_iou, "detector": dict(sorted(self.detector.items()))}


@dataclass(frozen=True)
class CrossValResult:
    """Scores of a cross-validation (also in ``cv.json``).

    ``folds`` holds one entry per CV fold (images, Kaggle mAP@0.4, findings-only mAP, abnormal
    AUC); ``pooled`` the out-of-fold metrics of every CV image scored at once, with intervals.
    """

    out: Path
    folds: list[dict[str, Any]]
    pooled: dict[str, Any]
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "pooled": self.pooled, "files": self.files}


Progress = Callable[[str, Mapping[str, Any]], None]


def _say(progress: Progress | None, step: str, **info: Any) -> None:
    if progress is not None:
        progress(step, info)


def _fused(ann: Annotations, cfg: CrossValConfig) -> Annotations:
    from thoracic.data.fusion import FusionConfig, fuse_readers, has_several_readers

    method = cfg.fuse
    if method == "auto":
        method = "wbf" if has_several_readers(ann) else "none"
    if method == "none":
        return ann
    return fuse_readers(ann, FusionConfig(method=method, iou_thr=cfg.fuse_iou))


def _claim(out: Path, cfg: CrossValConfig) -> None:
    path = out / "cv_config.json"
    settings = cfg.settings()
    if path.is_file():
        old = json.loads(path.read_text())
        if old != json.loads(json.dumps(settings)):
            changed = sorted(k for k in settings if old.get(k) != json.loads(json.dumps(settings[k])))
            raise ConfigError(f"{out} holds a cross-validation with other settings ({', '.join(changed)}); "
                              "use another output folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _sources(ann: Annotations, images: str | Path | None) -> dict[str, str]:
    from thoracic.data.tables import find_images

    found = find_images(images) if images is not None else {}
    return {iid: found.get(iid) or ann.images[iid].source for iid in ann.images if found.get(iid) or ann.images[iid].source}


def _train_fold(cfg: CrossValConfig, out: Path, k: int, progress: Progress | None) -> Path:
    """Train (or resume, or skip) fold ``k``; returns its ``best.pt``."""
    from thoracic.train.detector import DetectorTrainConfig, train_detector

    run = out / "runs" / f"fold_{k}"
    best, last = run / "weights" / "best.pt", run / "weights" / "last.pt"
    if (run / "thoracic_summary.json").is_file() and best.is_file():
        _say(progress, "trained", fold=k, best=str(best), resumed=True)
        return best
    resume = last.is_file()
    data = out / "data" / f"data_{k}.yaml"
    tcfg = DetectorTrainConfig(data=str(data), out=str(out / "runs"), name=f"fold_{k}", resume=resume,
                               **dict(cfg.detector))
    _say(progress, "train", fold=k, resume=resume)

    def on_epoch(row: Mapping[str, Any]) -> None:
        _say(progress, "epoch", fold=k, **row)

    summary = train_detector(tcfg, on_epoch=on_epoch)
    _say(progress, "trained", fold=k, best=summary["best"], resumed=False)
    return Path(summary["best"])


def _export_fold(out: Path, k: int, best: Path) -> Path:
    from thoracic.train.export import export_detector_onnx

    onnx = out / "models" / f"fold_{k}.onnx"
    if onnx.is_file() and onnx.stat().st_mtime >= best.stat().st_mtime:
        return onnx
    onnx.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx.with_suffix(".onnx.part")
    export_detector_onnx(best, tmp, data=out / "data" / f"data_{k}.yaml",
                         training_data=f"cross-validation fold {k} of {out}: trained on the other CV folds")
    tmp.replace(onnx)
    return onnx


def _predict_fold(cfg: CrossValConfig, out: Path, k: int, model: Path, items: list[tuple[str, str]],
                  progress: Progress | None) -> Path:
    """Predict fold ``k``'s original images with its model into ``oof/fold_<k>.csv`` (resumable)."""
    from thoracic.batch.predictions import PredictionCsv
    from thoracic.inference.batch import BatchPredictor, PipelineConfig
    from thoracic.inference.predictor import PredictConfig, Predictor

    threads = int(cfg.detector.get("threads", 1))
    predictor = Predictor.load([model], None, PredictConfig(conf=cfg.conf, max_det=cfg.max_det),
                               use_classifier=False, threads=threads)
    path = out / "oof" / f"fold_{k}.csv"
    with PredictionCsv(path, "rows", predictor.model_ids, resume=True) as sink:
        todo = [(s, i) for s, i in items if i not in sink.done]
        _say(progress, "predict", fold=k, images=len(items), todo=len(todo))
        failed = []
        for result in BatchPredictor(predictor, PipelineConfig(readers=1, workers=1)).run(todo):
            sink.write(result)
            if not result.ok:
                failed.append(f"{result.image_id}: {result.describe_error()}")
            _say(progress, "predicted", fold=k, image_id=result.image_id, ok=result.ok)
    if failed:
        raise ConfigError(f"{len(failed)} image(s) of fold {k} could not be predicted (first: {failed[0]}); "
                          f"see {path.with_suffix('.images.csv')}; fix or drop them and run again")
    return path


def _concat(parts: list[Path], out: Path) -> Path:
    """``oof.csv`` (and its sidecar) from the per-fold files, header once."""
    from thoracic._fs import sidecar_path

    for target, sources in ((out, parts), (sidecar_path(out), [sidecar_path(p) for p in parts])):
        lines: list[str] = []
        for i, src in enumerate(sources):
            text = src.read_text().splitlines(keepends=True)
            lines += text if i == 0 else text[1:]
        tmp = target.with_name(target.name + ".part")
        tmp.write_text("".join(lines))
        tmp.replace(target)
    return out


def _scores(truth: Annotations, preds: Annotations, bootstrap: int, seed: int) -> dict[str, Any]:
    from thoracic.evaluate.evaluate import EvaluationConfig, evaluate

    m = evaluate(truth, preds, EvaluationConfig(bootstrap=bootstrap, seed=seed, coco=False)).metrics
    ci = m.get("ci95") or {}
    return {
        "images": m["images"],
        "kaggle_map": m["map"],
        "findings_map": m["findings_map"],
        "abnormal_auc": m["auc"]["abnormal"],
        "per_class_ap": m["ap"],
        "ci": {"kaggle_map": ci.get("map"), "findings_map": ci.get("findings_map"),
               "abnormal_auc": (ci.get("auc") or {}).get("abnormal")},
    }


def cross_validate(
    ann: Annotations,
    config: CrossValConfig,
    *,
    images: str | Path | None = None,
    progress: Progress | None = None,
) -> CrossValResult:
    """Export, train every CV fold, predict each fold's original images with its model, and score.

    Parameters
    ----------
    ann:
        The table as loaded (several readers allowed: they are fused for training and truth).
    images:
        Folder of the image files (searched recursively); default: the sources the table names
        (``train/`` beside a VinBigData ``train.csv``).
    progress:
        Called with a step name (``export``, ``train``, ``epoch``, ``trained``, ``predict``,
        ``predicted``, ``score``) and its details; the CLI drives its output with it.

    Raises
    ------
    ConfigError
        Bad settings, an output folder of another cross-validation, images missing or not
        predictable.
    MissingDependencyError
        torch/ultralytics are missing (the ``train`` extra).
    """
    from thoracic.batch.export import ExportConfig, export_dataset
    from thoracic.data.csvtable import write_csv
    from thoracic.data.splits import kfold_split, write_folds
    from thoracic.evaluate.tables import read_predictions

    out = Path(config.out)
    _claim(out, config)
    start = time.time()
    folds = kfold_split(ann, config.folds, seed=config.seed)
    write_folds(folds, ann, out / "folds.csv")
    cv_ids = sorted(i for i, f in folds.items() if f != config.test_fold)
    if config.test_fold is not None:
        test = sorted(i for i, f in folds.items() if f == config.test_fold)
        (out / "test_images.txt").write_text("".join(i + "\n" for i in test))
    cv = ann.select_images(cv_ids)
    fused = _fused(cv, config)
    sources = _sources(cv, images)
    missing = [i for i in cv_ids if i not in sources or not Path(sources[i]).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} image(s) of the table have no file (first: {', '.join(missing[:3])}); "
                          "give --images DIR, or check the table with `thoracic dataset check`")

    _say(progress, "export", images=len(cv_ids))
    summary = export_dataset(fused, out / "data", ExportConfig(chain=config.chain, workers=config.workers),
                             images=images, folds={i: folds[i] for i in cv_ids})
    if summary.failed or summary.missing:
        raise ConfigError(f"the export of {summary.failed + summary.missing} image(s) failed: "
                          f"{'; '.join(summary.errors[:3])}; see {out / 'data' / 'manifest.csv'}")

    truth = fused
    write_csv(truth, out / "truth.csv")
    parts: list[Path] = []
    per_fold: list[dict[str, Any]] = []
    for k in config.cv_folds:
        best = _train_fold(config, out, k, progress)
        model = _export_fold(out, k, best)
        ids = [i for i in cv_ids if folds[i] == k]
        part = _predict_fold(config, out, k, model, [(sources[i], i) for i in ids], progress)
        parts.append(part)
        _say(progress, "score", fold=k)
        row = _scores(truth.select_images(ids), read_predictions(part), 0, config.seed)
        per_fold.append({"fold": k, "model": str(model), **row})
    oof = _concat(parts, out / "oof.csv")
    pooled = _scores(truth, read_predictions(oof), config.bootstrap, config.seed)
    maps = np.array([f["kaggle_map"] for f in per_fold], dtype=float)
    pooled["fold_kaggle_map_mean"] = float(np.nanmean(maps))
    pooled["fold_kaggle_map_sd"] = float(np.nanstd(maps, ddof=1)) if len(maps) > 1 else 0.0
    pooled["seconds"] = round(time.time() - start, 1)
    ensemble = write_preset(out / "ensemble.json", Preset(
        name=f"{out.name}-cv", detectors=members_of([f["model"] for f in per_fold]), classifier=None,
        description=f"the {len(per_fold)} cross-validation models of {out.name} (chain {config.chain}), "
                    "fused by WBF; no TTA, no 2-class filter"))
    files = {"oof": str(oof), "truth": str(out / "truth.csv"), "folds": str(out / "folds.csv"),
             "cv": str(out / "cv.json"), "report": str(out / "cv.md"), "ensemble": str(ensemble)}
    result = CrossValResult(out, per_fold, pooled, files)
    (out / "cv.json").write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=_json) + "\n")
    (out / "cv.md").write_text(markdown(result, config))
    return result


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON: {type(v).__name__}")


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{float(v):.4f}"


def markdown(result: CrossValResult, config: CrossValConfig) -> str:
    """``cv.md``: the folds, the pooled score with its intervals, and how it was made."""
    p = result.pooled
    ci = p.get("ci", {}) or {}

    def interval(key: str) -> str:
        lo_hi = ci.get(key)
        return f" (95% CI {_f(lo_hi[0])}-{_f(lo_hi[1])})" if lo_hi else ""

    lines = [
        f"# Cross-validation: {len(result.folds)} folds"
        + (f", fold {config.test_fold} held out" if config.test_fold is not None else ""),
        "",
        "| fold | images | Kaggle mAP@0.4 | findings mAP | abnormal AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in result.folds:
        lines.append(f"| {f['fold']} | {f.get('images', '')} | {_f(f.get('kaggle_map'))} | "
                     f"{_f(f.get('findings_map'))} | {_f(f.get('abnormal_auc'))} |")
    lines += [
        "",
        f"Folds: Kaggle mAP@0.4 {_f(p['fold_kaggle_map_mean'])} +- {_f(p['fold_kaggle_map_sd'])} (mean +- sd).",
        "",
        (f"Out of fold, all {p.get('images', '')} images at once: Kaggle mAP@0.4 {_f(p.get('kaggle_map'))}"
        f"{interval('kaggle_map')}; findings mAP {_f(p.get('findings_map'))}{interval('findings_map')}; "
        f"abnormal AUC {_f(p.get('abnormal_auc'))}{interval('abnormal_auc')} "
        f"({config.bootstrap} bootstrap resamples of images)."),
        "",
        "| finding | AP (out of fold) |",
        "| --- | --- |",
        *(f"| {k} | {_f(v)} |" for k, v in (p.get("per_class_ap") or {}).items()),
        "",
        f"Chain `{config.chain}`, seed {config.seed}, detector settings `{json.dumps(dict(config.detector), sort_keys=True)}`.",
        "",
    ]
    return "\n".join(lines)
