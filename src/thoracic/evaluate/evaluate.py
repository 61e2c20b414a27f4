"""One call that scores predictions against truth: :func:`evaluate` (computes, writes nothing).

>>> from thoracic.data import Annotations, ImageInfo
>>> truth = Annotations.from_rows([ImageInfo("a"), ImageInfo("b")],
...     [("a", "Cardiomegaly", 10, 10, 20, 20), ("b", "No finding", 0, 0, 1, 1)])
>>> preds = Annotations.from_rows([ImageInfo("a"), ImageInfo("b")],
...     [("a", "Cardiomegaly", 10, 10, 20, 20, "", 0.9), ("a", "No finding", 0, 0, 1, 1, "", 0.1),
...      ("b", "No finding", 0, 0, 1, 1, "", 0.8)])
>>> result = evaluate(truth, preds, EvaluationConfig(bootstrap=0, coco=False))
>>> result.map, result.metrics["ap"]
(1.0, {'Cardiomegaly': 1.0, 'No finding': 1.0})
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.data.annotations import Annotations, Problem
from thoracic.errors import ConfigError, MissingDependencyError
from thoracic.evaluate.bootstrap import bootstrap_intervals, resample_weights, weighted_ap, weighted_auc, weighted_froc
from thoracic.evaluate.classification import image_matrix, roc_auc, roc_curve
from thoracic.evaluate.coco import coco_map
from thoracic.evaluate.detection import FROC_RATES, best_f1, class_confusion, froc, match, pr_curve, prf
from thoracic.evaluate.kaggle import KAGGLE_IOU_THRESHOLD, kaggle_map
from thoracic.evaluate.tables import problem_kind
from thoracic.labels import FINDINGS, LABELS, NO_FINDING

__all__ = [
    "METRICS_KEYS",
    "EvaluationConfig",
    "EvaluationResult",
    "evaluate",
    "evaluate_difference",
    "evaluate_mean",
    "load_curves",
    "markdown_summary",
    "write_results",
]

#: Top-level keys of ``metrics.json``, in order.
METRICS_KEYS = (
    "thoracic_version", "config", "iou", "images", "image_counts", "map", "findings_map", "ap", "n_truth", "coco", "prf",
    "accuracy", "auc", "froc", "distribution", "ci95", "notes", "problem_counts", "problems",
)  # fmt: skip

_MAX_PROBLEMS = 1000
_MAX_POINTS = 500  # per curve kept for plots
_BINS = np.linspace(0.0, 1.0, 21)


def _thin(curve: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """At most ``_MAX_POINTS`` evenly spaced points of a curve, always with its first and last."""
    n = len(next(iter(curve.values())))
    if n <= _MAX_POINTS:
        return curve
    keep = np.unique(np.r_[np.linspace(0, n - 1, _MAX_POINTS).round().astype(int), n - 1])
    return {k: np.asarray(v)[keep] for k, v in curve.items()}


@dataclass(frozen=True)
class EvaluationConfig:
    """Settings of :func:`evaluate`.

    Attributes
    ----------
    iou:
        IoU a match must exceed (the competition's 0.4).
    score_threshold:
        Boxes with ``score >= score_threshold`` count as positive for precision/recall/F1, the
        per-class image accuracy, the confusion matrix and the label distribution.
    abnormal_threshold:
        An image is called abnormal when ``1 - score("No finding") >= abnormal_threshold``.
    bootstrap:
        Number of bootstrap resamples of the images for the intervals (0 disables them).
    seed:
        Seed of the bootstrap (the same seed gives the same intervals).
    level:
        Coverage of the intervals.
    froc_rates:
        False positives per image at which FROC sensitivity is reported.
    coco:
        Compute COCO mAP with pycocotools (needs the ``eval`` extra; without it the ``coco`` entry
        is ``null`` and a note says why).
    """

    iou: float = KAGGLE_IOU_THRESHOLD
    score_threshold: float = 0.5
    abnormal_threshold: float = 0.5
    bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95
    froc_rates: tuple[float, ...] = FROC_RATES
    coco: bool = True

    def __post_init__(self) -> None:
        for name in ("iou", "score_threshold", "abnormal_threshold"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v!r}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, int) or self.bootstrap < 0:
            raise ConfigError(f"bootstrap must be a non-negative number of resamples, got {self.bootstrap!r}")
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"level must be in (0, 1), got {self.level!r}")
        rates = tuple(float(r) for r in self.froc_rates)
        if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
            raise ConfigError(f"froc_rates must be positive numbers, got {self.froc_rates!r}")
        object.__setattr__(self, "froc_rates", rates)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` found.

    Attributes
    ----------
    metrics:
        The JSON-ready contents of ``metrics.json`` (keys :data:`METRICS_KEYS`; no NaN: undefined
        numbers are ``None`` and ``notes`` says why).
    curves:
        Arrays for plots (curves thinned to at most 500 points): ``pr`` and ``roc`` by class,
        ``roc_abnormal``, ``froc``, ``scores`` (histograms of true/false positive scores by class
        over ``bins``), ``p_abnormal`` (histograms for normal and abnormal images),
        ``confusion`` (``labels`` and ``matrix``).
    problems:
        Every problem with the inputs (also those beyond the first 1000 kept in ``metrics``).
    """

    metrics: Mapping[str, Any]
    curves: Mapping[str, Any] = field(repr=False)
    problems: tuple[Problem, ...] = field(repr=False)

    @property
    def map(self) -> float:
        """The Kaggle mAP at the configured IoU."""
        return float(self.metrics["map"])

    def to_json(self) -> str:
        """``metrics.json`` text: indented, keys in a fixed order, strict JSON (no NaN)."""
        return json.dumps(self.metrics, indent=2, allow_nan=False) + "\n"


def _clean(x: Any) -> Any:
    """Recursively turn NumPy values into Python ones and NaN/inf into None."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.integer | bool | np.bool_):
        return bool(x) if isinstance(x, bool | np.bool_) else int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"source": p.source, "line": p.line, "image_id": p.image_id, "kind": problem_kind(p), "message": p.message}


def _findings_map(ap: Mapping[str, float]) -> float:
    """Mean AP of the findings, "No finding" left out (NaN when the truth has no finding)."""
    values = [v for k, v in ap.items() if k != NO_FINDING and v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def _image_scores(p: Annotations, images: list[str], img_index: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Each image's highest score per finding, its P(abnormal), and how many images had no "No finding" row.

    P(abnormal) is ``1 - score("No finding")`` (the lowest when there are several), else the image's
    highest finding score.
    """
    smax = image_matrix(p, images, FINDINGS)
    nf_score = np.full(len(images), np.nan)
    nf_rows = p.label == NO_FINDING
    for image, s in zip(p.image_id[nf_rows].tolist(), p.score[nf_rows].tolist()):
        i = img_index[image]
        nf_score[i] = s if np.isnan(nf_score[i]) else min(nf_score[i], s)
    missing_nf = np.isnan(nf_score)
    p_abn = np.where(missing_nf, smax.max(axis=1), 1.0 - np.nan_to_num(nf_score))
    return smax, p_abn, int(missing_nf.sum())


def _order(labels: set[str]) -> list[str]:
    known = [lab for lab in LABELS if lab in labels]
    return known + sorted(labels - set(LABELS))


def evaluate(truth: Annotations, preds: Annotations, config: EvaluationConfig | None = None) -> EvaluationResult:
    """Score predictions against truth: Kaggle mAP, COCO mAP, P/R/F1, accuracy, AUC, FROC, CIs.

    The truth is used as given (fuse multiple readers first, e.g. with the datasets' WBF); the
    scored images are ``truth.images``. Truth images without predictions count as misses;
    predictions on other images are listed under ``problems`` and ignored.

    Parameters
    ----------
    truth:
        Truth boxes (``score`` ignored); "No finding" rows with the box ``0 0 1 1``.
    preds:
        Predictions with scores; one "No finding" row per image whose score is
        ``1 - P(abnormal)``.
    config:
        :class:`EvaluationConfig`; the defaults are the competition's.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ConfigError
        The truth has no rows, or a prediction score is not finite.
    """
    cfg = config or EvaluationConfig()
    if len(truth) == 0:
        raise ConfigError("the truth has no boxes or 'No finding' rows: nothing to score")
    if len(preds) and not np.isfinite(preds.score).all():
        raise ConfigError("prediction scores must be finite numbers; read the file with read_predictions to list bad rows")
    images = list(truth.images)
    n_img = len(images)
    img_index = {k: i for i, k in enumerate(images)}
    notes: list[str] = []
    problems: list[Problem] = [*truth.problems, *preds.problems]

    # --- predictions on images the truth does not have ---------------------------------------
    known = np.fromiter((i in img_index for i in preds.image_id.tolist()), dtype=bool, count=len(preds))
    unknown = Counter(preds.image_id[~known].tolist())
    for image, n in sorted(unknown.items()):
        problems.append(Problem(None, image, f"unknown image: {n} prediction(s) on an image not in the truth (ignored)", preds.name))
    p = preds.subset(known)
    pred_images = set(p.image_id.tolist())
    readers = sorted(set(truth.reader.tolist()) - {""})
    if len(readers) > 1:
        notes.append(f"the truth has {len(readers)} readers and was scored unfused: every reader's boxes are truth boxes")

    # --- Kaggle mAP and matching -------------------------------------------------------------
    kaggle = kaggle_map(truth, p, cfg.iou)
    matched, _ = match(truth, p, cfg.iou)
    n_truth = dict(kaggle.n_truth)
    findings_map = _findings_map(kaggle.ap)
    if math.isnan(findings_map):
        notes.append("findings_map is null: the truth has no finding boxes, only 'No finding' rows")
    labels = _order(set(n_truth) | set(p.label.tolist()))

    # --- precision / recall / F1 -------------------------------------------------------------
    at_t: dict[str, Any] = {}
    best: dict[str, Any] = {}
    for lab in labels:
        sel = p.label == lab
        at_t[lab] = prf(p.score[sel], matched[sel], n_truth.get(lab, 0), cfg.score_threshold)
        best[lab] = best_f1(p.score[sel], matched[sel], n_truth.get(lab, 0))
    fsel = p.label != NO_FINDING
    n_find = sum(n for lab, n in n_truth.items() if lab != NO_FINDING)
    micro = prf(p.score[fsel], matched[fsel], n_find, cfg.score_threshold)
    prf_out = {"score_threshold": cfg.score_threshold, "at_threshold": at_t, "best_f1": best, "micro_findings": micro}

    # --- image level -------------------------------------------------------------------------
    present = [lab for lab in FINDINGS if lab in n_truth or lab in set(p.label.tolist())]
    y = image_matrix(truth, images, FINDINGS, presence=True) > 0  # (n, 14)
    abnormal = y.any(axis=1)
    smax, p_abn, missing_nf = _image_scores(p, images, img_index)
    if missing_nf:
        notes.append(
            f"{missing_nf} image(s) have no 'No finding' prediction; their P(abnormal) is their highest finding score (0 without predictions)"
        )
    called = smax >= cfg.score_threshold
    accuracy = {
        "abnormal": float(np.mean((p_abn >= cfg.abnormal_threshold) == abnormal)),
        "abnormal_threshold": cfg.abnormal_threshold,
        "exact_match": float(np.mean((called == y).all(axis=1))),
        "per_class": {lab: float(np.mean(called[:, FINDINGS.index(lab)] == y[:, FINDINGS.index(lab)])) for lab in present},
        "score_threshold": cfg.score_threshold,
    }
    auc_pc: dict[str, float] = {}
    for lab in present:
        j = FINDINGS.index(lab)
        auc_pc[lab] = roc_auc(y[:, j], smax[:, j])
        if math.isnan(auc_pc[lab]):
            notes.append(f"auc of {lab!r} is null: the truth has {'no' if not y[:, j].any() else 'only'} positive images")
    auc_abn = roc_auc(abnormal, p_abn)
    if math.isnan(auc_abn):
        notes.append("auc 'abnormal' is null: the truth images are all normal or all abnormal")
    auc = {"abnormal": auc_abn, "per_class": auc_pc}

    # --- FROC (finding boxes pooled) ---------------------------------------------------------
    fr = froc(p.score[fsel], matched[fsel], n_find, n_img, cfg.froc_rates)
    froc_out = {"rates": fr["rates"], "sensitivity": fr["sensitivity"], "mean": fr["mean"], "n_truth": n_find}

    # --- COCO --------------------------------------------------------------------------------
    coco: dict[str, Any] | None = None
    if cfg.coco:
        try:
            coco = coco_map(truth, p)
        except MissingDependencyError as err:
            notes.append(f"coco is null: {err}")
    else:
        notes.append("coco is null: disabled in the configuration")

    # --- distribution (paper Figs. 8-9) ------------------------------------------------------
    keep = p.score >= cfg.score_threshold
    dist = {
        lab: {
            "truth_boxes": int(n_truth.get(lab, 0)),
            "predicted_boxes": int(((p.label == lab) & keep).sum()),
            "truth_images": int(len(set(truth.image_id[truth.label == lab].tolist()))),
            "predicted_images": int(len(set(p.image_id[(p.label == lab) & keep].tolist()))),
        }
        for lab in LABELS
    }

    # --- bootstrap ---------------------------------------------------------------------------
    ci: dict[str, Any] = {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": cfg.level}
    if cfg.bootstrap:
        ci.update(_bootstrap(cfg, truth, p, matched, img_index, n_truth, y, smax, abnormal, p_abn, present))
    else:
        notes.append("ci95 has no intervals: the bootstrap was disabled (bootstrap=0)")

    # --- curves for plots --------------------------------------------------------------------
    curves: dict[str, Any] = {"pr": {}, "roc": {}, "scores": {}}
    for lab in labels:
        sel = p.label == lab
        curves["pr"][lab] = _thin(pr_curve(p.score[sel], matched[sel], n_truth.get(lab, 0)))
        curves["scores"][lab] = {
            "tp": np.histogram(np.clip(p.score[sel & matched], 0, 1), _BINS)[0],
            "fp": np.histogram(np.clip(p.score[sel & ~matched], 0, 1), _BINS)[0],
        }
    for lab in present:
        j = FINDINGS.index(lab)
        curves["roc"][lab] = _thin(roc_curve(y[:, j], smax[:, j]))
    curves["roc_abnormal"] = _thin(roc_curve(abnormal, p_abn))
    curves["bins"] = _BINS
    curves["p_abnormal"] = {
        "normal": np.histogram(np.clip(p_abn[~abnormal], 0, 1), _BINS)[0],
        "abnormal": np.histogram(np.clip(p_abn[abnormal], 0, 1), _BINS)[0],
    }
    curves["froc"] = _thin({"fppi": fr["fppi"], "sensitivity": fr["curve_sensitivity"]})
    curves["confusion"] = {
        "labels": list(LABELS),
        "matrix": class_confusion(truth, p, cfg.iou, cfg.score_threshold, LABELS),
    }

    counts = Counter(problem_kind(x) for x in problems)
    if len(problems) > _MAX_PROBLEMS:
        notes.append(f"problems lists the first {_MAX_PROBLEMS} of {len(problems)}; problem_counts counts them all")
    cfg_dict = asdict(cfg)
    metrics = {
        "thoracic_version": __version__,
        "config": cfg_dict,
        "iou": cfg.iou,
        "images": n_img,
        "image_counts": {
            "truth": n_img,
            "abnormal": int(abnormal.sum()),
            "normal": int(n_img - abnormal.sum()),
            "with_predictions": len(pred_images),
            "without_predictions": n_img - len(pred_images),
            "unknown_in_predictions": len(unknown),
            "ignored_predictions": int((~known).sum()),
        },
        "map": kaggle.map,
        "findings_map": findings_map,
        "ap": dict(kaggle.ap),
        "n_truth": n_truth,
        "coco": coco,
        "prf": prf_out,
        "accuracy": accuracy,
        "auc": auc,
        "froc": froc_out,
        "distribution": dist,
        "ci95": ci,
        "notes": notes,
        "problem_counts": dict(sorted(counts.items())),
        "problems": [_problem_dict(x) for x in problems[:_MAX_PROBLEMS]],
    }
    return EvaluationResult(_clean(metrics), curves, tuple(problems))


def evaluate_mean(truth: Annotations, members: Sequence[Annotations], config: EvaluationConfig | None = None) -> dict[str, Any]:
    """The mean score of several predictions of the same images, with bootstrap intervals of the mean.

    For the models of a cross-validation scored on one test set: each member is scored as
    :func:`evaluate` scores it (the same matching, Kaggle mAP, findings-only mAP, abnormal AUC), and
    every bootstrap resample of the images scores all members at once, so the interval is that of
    their mean on this population of images (not the spread between the members, given apart).

    Parameters
    ----------
    truth:
        Truth as for :func:`evaluate` (its images are the scored ones).
    members:
        One prediction table per model (predictions on other images are ignored).
    config:
        :class:`EvaluationConfig` (``iou``, ``bootstrap``, ``seed``, ``level`` are used).

    Returns
    -------
    dict
        JSON-ready (``None`` for undefined numbers): ``members`` and ``images`` (counts); for
        ``map``, ``findings_map``, ``auc_abnormal`` and, under ``ap``, each truth class: ``values``
        (one per member, in order), their ``mean``, ``sd`` (``ddof=1``; ``None`` for one member),
        ``min`` and ``max``; ``ci95``: the intervals of the means (the same keys) with ``resamples``,
        ``seed`` and ``level``.

    Raises
    ------
    ConfigError
        No members, an empty truth, or a prediction score that is not finite.

    Examples
    --------
    >>> from thoracic.data import Annotations, ImageInfo
    >>> truth = Annotations.from_rows([ImageInfo("a"), ImageInfo("b")],
    ...     [("a", "Cardiomegaly", 10, 10, 20, 20), ("b", "No finding", 0, 0, 1, 1)])
    >>> hit = Annotations.from_rows([ImageInfo("a")], [("a", "Cardiomegaly", 10, 10, 20, 20, "", 0.9)])
    >>> miss = Annotations.from_rows([ImageInfo("a")], [("a", "Cardiomegaly", 50, 50, 60, 60, "", 0.9)])
    >>> m = evaluate_mean(truth, [hit, miss], EvaluationConfig(bootstrap=0))
    >>> m["findings_map"]["values"], m["findings_map"]["mean"]
    ([1.0, 0.0], 0.5)
    """
    cfg = config or EvaluationConfig()
    if not members:
        raise ConfigError("evaluate_mean needs at least one prediction table")
    stats, n_img, n_truth = _member_statistics(truth, members, cfg)
    keys = ["map", "findings_map", "auc_abnormal", *(f"ap/{lab}" for lab in n_truth)]

    def mean(w: np.ndarray) -> dict[str, np.ndarray]:
        return _mean_of(stats, keys, w)

    point = [stat(np.ones((1, n_img))) for stat in stats]
    summary: dict[str, Any] = {}
    for k in keys:
        v = np.array([float(o[k][0]) for o in point])
        defined = bool(np.isfinite(v).all())
        summary[k] = {
            "values": v.tolist(),
            "mean": float(v.mean()) if defined else None,
            "sd": float(v.std(ddof=1)) if defined and len(v) > 1 else None,
            "min": float(v.min()) if defined else None,
            "max": float(v.max()) if defined else None,
        }
    ci: dict[str, Any] = {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": cfg.level}
    if cfg.bootstrap:
        iv = bootstrap_intervals(n_img, mean, cfg.bootstrap, cfg.seed, cfg.level)
        ci.update({k: iv.get(k) for k in keys[:3]})
        ci["ap"] = {lab: iv.get(f"ap/{lab}") for lab in n_truth}
    out = {"members": len(members), "images": n_img, **{k: summary[k] for k in keys[:3]},
           "ap": {lab: summary[f"ap/{lab}"] for lab in n_truth}, "ci95": ci}
    return _clean(out)


def _member_statistics(truth: Annotations, members: Sequence[Annotations], cfg: EvaluationConfig,
                       ) -> tuple[list[Callable[[np.ndarray], dict[str, np.ndarray]]], int, dict[str, int]]:
    """The bootstrap statistic of each prediction table (as :func:`evaluate` scores it), the number
    of images and the truth's class counts."""
    if len(truth) == 0:
        raise ConfigError("the truth has no boxes or 'No finding' rows: nothing to score")
    images = list(truth.images)
    n_img = len(images)
    img_index = {k: i for i, k in enumerate(images)}
    y = image_matrix(truth, images, FINDINGS, presence=True) > 0
    abnormal = y.any(axis=1)
    n_truth = dict(sorted(Counter(str(lab) for lab in truth.label.tolist()).items()))
    stats = []
    for preds in members:
        if len(preds) and not np.isfinite(preds.score).all():
            raise ConfigError("prediction scores must be finite numbers; read the file with read_predictions to list bad rows")
        p = preds.subset(np.fromiter((i in img_index for i in preds.image_id.tolist()), dtype=bool, count=len(preds)))
        matched, _ = match(truth, p, cfg.iou)
        smax, p_abn, _ = _image_scores(p, images, img_index)
        stats.append(_statistic(cfg, truth, p, matched, img_index, n_truth, y, smax, abnormal, p_abn, ()))
    return stats, n_img, n_truth


def _mean_of(stats: Sequence[Callable[[np.ndarray], dict[str, np.ndarray]]], keys: Sequence[str],
             w: np.ndarray) -> dict[str, np.ndarray]:
    """The mean over the tables of each statistic in ``keys``, on the resample weights ``w``."""
    outs = [stat(w) for stat in stats]
    return {k: np.mean([o[k] for o in outs], axis=0) for k in keys}


def evaluate_difference(truth: Annotations, a: Sequence[Annotations], b: Sequence[Annotations],
                        config: EvaluationConfig | None = None) -> dict[str, Any]:
    """Paired difference on the same images: the mean score of the ``a`` predictions minus that of
    the ``b`` predictions, with a bootstrap interval of the difference.

    Every resample of the images scores all tables at once (as :func:`evaluate_mean` does), so the
    interval is that of the difference itself, narrower than two separate intervals suggest when
    both move together. For "what did this step add": an ensemble against its single models
    (``a=[ensemble]``, ``b=[model_1, ..., model_k]``), TTA against no TTA, one input against another.

    Returns
    -------
    dict
        JSON-ready (``None`` for undefined numbers): ``images``, ``a`` and ``b`` (table counts); for
        ``map``, ``findings_map`` and ``auc_abnormal``: ``a`` and ``b`` (the means) and
        ``difference``; ``ci95``: the difference's intervals (the same keys) with ``resamples``,
        ``seed``, ``level``, and ``resamples_above_zero``: the share of resamples where ``a`` scored
        higher, per key.

    Examples
    --------
    One table that finds the box against the mean of itself and one that misses it:

    >>> from thoracic.data import Annotations, ImageInfo
    >>> one = [ImageInfo("x")]
    >>> truth = Annotations.from_rows(one, [("x", "Pleural effusion", 5, 5, 40, 30)])
    >>> found = Annotations.from_rows(one, [("x", "Pleural effusion", 5, 5, 40, 30, "", 0.7)])
    >>> missed = Annotations.from_rows(one, [("x", "Pleural effusion", 60, 60, 90, 90, "", 0.7)])
    >>> evaluate_difference(truth, [found], [found, missed], EvaluationConfig(bootstrap=0))["map"]
    {'a': 1.0, 'b': 0.5, 'difference': 0.5}
    """
    cfg = config or EvaluationConfig()
    if not a or not b:
        raise ConfigError("evaluate_difference needs at least one prediction table on each side")
    sa, n_img, _ = _member_statistics(truth, a, cfg)
    sb, _, _ = _member_statistics(truth, b, cfg)
    keys = ("map", "findings_map", "auc_abnormal")

    def difference(w: np.ndarray) -> dict[str, np.ndarray]:
        ma, mb = _mean_of(sa, keys, w), _mean_of(sb, keys, w)
        return {k: ma[k] - mb[k] for k in keys}

    unit = np.ones((1, n_img))
    pa, pb = _mean_of(sa, keys, unit), _mean_of(sb, keys, unit)
    out: dict[str, Any] = {"images": n_img, "a": len(a), "b": len(b)}
    for k in keys:
        out[k] = {"a": float(pa[k][0]), "b": float(pb[k][0]), "difference": float(pa[k][0] - pb[k][0])}
    ci: dict[str, Any] = {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": cfg.level}
    if cfg.bootstrap:
        ci.update(bootstrap_intervals(n_img, difference, cfg.bootstrap, cfg.seed, cfg.level))
        chunks = [difference(w) for w in resample_weights(n_img, cfg.bootstrap, cfg.seed)]
        d = {k: np.concatenate([c[k] for c in chunks]) for k in keys}
        ci["resamples_above_zero"] = {k: float(np.mean(d[k][np.isfinite(d[k])] > 0)) if np.isfinite(d[k]).any() else None
                                      for k in keys}
    out["ci95"] = ci
    return _clean(out)


def _bootstrap(cfg, truth, p, matched, img_index, n_truth, y, smax, abnormal, p_abn, present) -> dict[str, Any]:
    statistic = _statistic(cfg, truth, p, matched, img_index, n_truth, y, smax, abnormal, p_abn, present)
    iv = bootstrap_intervals(len(img_index), statistic, cfg.bootstrap, cfg.seed, cfg.level)
    return {
        "map": iv.get("map"),
        "findings_map": iv.get("findings_map"),
        "ap": {lab: iv.get(f"ap/{lab}") for lab in n_truth},
        "f1": {lab: iv.get(f"f1/{lab}") for lab in n_truth},
        "auc": {"abnormal": iv.get("auc_abnormal"), "per_class": {lab: iv.get(f"auc/{lab}") for lab in present}},
        "accuracy_abnormal": iv.get("accuracy_abnormal"),
        "froc_mean": iv.get("froc_mean"),
    }


def _nanmean_rows(stacked: np.ndarray) -> np.ndarray:
    """Column means of ``stacked`` over its finite entries (NaN where a column has none)."""
    valid = np.isfinite(stacked)
    cnt = valid.sum(axis=0)
    return np.divide(np.where(valid, stacked, 0).sum(axis=0), cnt, out=np.full(cnt.shape, np.nan), where=cnt > 0)


def _statistic(cfg, truth, p, matched, img_index, n_truth, y, smax, abnormal, p_abn, present):
    """The bootstrap statistic: every interval's metric on a batch of resample weights ``w`` (``(B, n)``)."""
    n_img = len(img_index)
    pidx = np.fromiter((img_index[i] for i in p.image_id.tolist()), dtype=np.int64, count=len(p))
    tidx = np.fromiter((img_index[i] for i in truth.image_id.tolist()), dtype=np.int64, count=len(truth))
    # Kaggle's AP scores only images with truth rows (kaggle_map ignores predictions elsewhere);
    # the per-class F1 and the FROC count every prediction, as their point estimates do
    scored = np.zeros(n_img, dtype=bool)
    scored[tidx] = True
    per_class = []
    for lab in n_truth:
        rows = np.flatnonzero(p.label == lab)
        rows = rows[np.argsort(-p.score[rows], kind="stable")]
        counts = np.bincount(tidx[truth.label == lab], minlength=n_img).astype(np.float64)
        keep = p.score[rows] >= cfg.score_threshold
        ap_rows = rows[scored[pidx[rows]]]
        per_class.append((lab, pidx[rows], matched[rows], counts, keep, pidx[ap_rows], matched[ap_rows]))
    # The mAP's classes are those of the whole truth: a resample that happens to lack a rare class
    # keeps that class's AP at its value on the whole set. Dropping the class from that resample's
    # mean instead (as the metric on the resample alone would) shifted the intervals up: a class
    # with one truth box is missing from ~37 % of resamples, and such classes mostly score AP 0.
    unit = np.ones((1, n_img))
    point_ap = [float(weighted_ap(unit[:, ap_pi], ap_hits, unit @ counts)[0])
                for _lab, _pi, _hits, counts, _keep, ap_pi, ap_hits in per_class]
    frows = np.flatnonzero(p.label != NO_FINDING)
    frows = frows[np.argsort(-p.score[frows], kind="stable")]
    fs = p.score[frows]
    fends = np.r_[np.flatnonzero(np.diff(fs) != 0), fs.size - 1] if fs.size else np.zeros(0, dtype=int)
    fcounts = np.bincount(tidx[truth.label != NO_FINDING], minlength=n_img).astype(np.float64)
    correct = ((p_abn >= cfg.abnormal_threshold) == abnormal).astype(np.float64)

    def statistic(w: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        aps = []
        for lab, pi, hits, counts, keep, ap_pi, ap_hits in per_class:
            nt = w @ counts
            pw = w[:, pi]
            ap = weighted_ap(w[:, ap_pi], ap_hits, nt)
            out[f"ap/{lab}"] = ap
            aps.append(ap)
            tp = (pw * (hits & keep)).sum(axis=1)
            fp = (pw * (~hits & keep)).sum(axis=1)
            den = 2 * tp + fp + (nt - tp)
            out[f"f1/{lab}"] = np.divide(2 * tp, den, out=np.full(den.shape, np.nan), where=den > 0)
        fixed = [np.where(np.isnan(ap), point, ap) for ap, point in zip(aps, point_ap, strict=True)]
        out["map"] = _nanmean_rows(np.vstack(fixed))
        finding_aps = [ap for (lab, *_), ap in zip(per_class, fixed, strict=True) if lab != NO_FINDING]
        out["findings_map"] = _nanmean_rows(np.vstack(finding_aps)) if finding_aps else np.full(w.shape[0], np.nan)
        for lab in present:
            j = FINDINGS.index(lab)
            out[f"auc/{lab}"] = weighted_auc(w, y[:, j], smax[:, j])
        out["auc_abnormal"] = weighted_auc(w, abnormal, p_abn)
        out["accuracy_abnormal"] = (w @ correct) / n_img
        if fs.size:
            out["froc_mean"] = weighted_froc(w[:, pidx[frows]], matched[frows], fends, w @ fcounts, n_img, cfg.froc_rates)
        else:
            out["froc_mean"] = np.where(w @ fcounts > 0, 0.0, np.nan)
        return out

    return statistic


def _fmt(v: Any) -> str:
    return "–" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))


def _ci(v: Any) -> str:
    return "" if not v else f"[{v[0]:.3f}, {v[1]:.3f}]"


def markdown_summary(metrics: Mapping[str, Any]) -> str:
    """A Markdown summary of ``metrics.json``: headline numbers and a per-class table."""
    ci = metrics.get("ci95", {})
    lines = [
        f"# Evaluation ({metrics['images']} images, IoU > {metrics['iou']})",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
        f"| Kaggle mAP@{metrics['iou']} | {_fmt(metrics['map'])} | {_ci(ci.get('map'))} |",
        (f"| findings-only mAP@{metrics['iou']} ('No finding' left out) | {_fmt(metrics.get('findings_map'))} | "
         f"{_ci(ci.get('findings_map'))} |"),
    ]
    coco = metrics.get("coco") or {}
    lines.append(f"| COCO mAP@[.5:.95] | {_fmt(coco.get('map'))} | |")
    lines.append(f"| COCO mAP@.5 | {_fmt(coco.get('map50'))} | |")
    lines.append(f"| AUC abnormal vs normal | {_fmt(metrics['auc']['abnormal'])} | {_ci((ci.get('auc') or {}).get('abnormal'))} |")
    lines.append(f"| accuracy abnormal vs normal | {_fmt(metrics['accuracy']['abnormal'])} | {_ci(ci.get('accuracy_abnormal'))} |")
    lines.append(f"| FROC mean sensitivity | {_fmt(metrics['froc']['mean'])} | {_ci(ci.get('froc_mean'))} |")
    t = metrics["prf"]["score_threshold"]
    lines += [
        "",
        f"| class | truth boxes | AP | AP 95% CI | P@{t} | R@{t} | F1@{t} | best F1 | at score | image AUC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lab, at in metrics["prf"]["at_threshold"].items():
        b = metrics["prf"]["best_f1"][lab]
        lines.append(
            f"| {lab} | {metrics['n_truth'].get(lab, 0)} | {_fmt(metrics['ap'].get(lab))} | {_ci((ci.get('ap') or {}).get(lab))} | "
            f"{_fmt(at['precision'])} | {_fmt(at['recall'])} | {_fmt(at['f1'])} | {_fmt(b['f1'])} | {_fmt(b['threshold'])} | "
            f"{_fmt(metrics['auc']['per_class'].get(lab))} |"
        )
    fr = metrics["froc"]
    lines += ["", "| FP per image | " + " | ".join(f"{r:g}" for r in fr["rates"]) + " |",
              "|---|" + "---|" * len(fr["rates"]),
              "| sensitivity | " + " | ".join(_fmt(s) for s in fr["sensitivity"]) + " |"]
    if metrics["problem_counts"]:
        lines += ["", "Problems: " + ", ".join(f"{k} {v}" for k, v in metrics["problem_counts"].items()) + " (see metrics.json)"]
    for note in metrics["notes"]:
        lines.append(f"\n- {note}")
    return "\n".join(lines) + "\n"


def _curves_json(curves: Mapping[str, Any]) -> dict[str, Any]:
    return _clean(curves)


def write_results(result: EvaluationResult, out_dir: str | PathLike[str]) -> dict[str, Path]:
    """Write ``metrics.json``, ``metrics.md`` and ``curves.json`` (plot data) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "markdown": out / "metrics.md", "curves": out / "curves.json"}
    paths["metrics"].write_text(result.to_json(), encoding="utf-8")
    paths["markdown"].write_text(markdown_summary(result.metrics), encoding="utf-8")
    paths["curves"].write_text(json.dumps(_curves_json(result.curves), allow_nan=False) + "\n", encoding="utf-8")
    return paths


def load_curves(path: str | PathLike[str]) -> dict[str, Any]:
    """Read ``curves.json`` back (lists, ``None`` for undefined values)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))

