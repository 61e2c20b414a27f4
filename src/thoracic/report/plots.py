"""Evaluation plots as PNG bytes (matplotlib, Agg backend; never opens a window).

Each function takes the ``metrics`` dict of ``metrics.json`` and/or the ``curves`` of an
:class:`~thoracic.evaluate.EvaluationResult` (arrays, or the lists of ``curves.json``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from thoracic.errors import MissingDependencyError

__all__ = [
    "confusion_plot",
    "distribution_plot",
    "froc_figure",
    "froc_operating_points",
    "froc_plot",
    "pr_plot",
    "roc_plot",
    "score_histograms",
]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependencyError.for_feature("evaluation plots", "matplotlib", "eval") from err
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _a(x: Any) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in x] if isinstance(x, list) else x, dtype=np.float64)


def _grid(n: int):
    cols = min(5, max(1, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = _plt().subplots(rows, cols, figsize=(3.0 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def pr_plot(curves: Mapping[str, Any], metrics: Mapping[str, Any]) -> bytes:
    """Precision-recall curve of every class, titled with its AP."""
    pr = curves["pr"]
    labels = [lab for lab in pr if metrics["n_truth"].get(lab)]
    fig, axes = _grid(len(labels))
    for ax, lab in zip(axes, labels):
        c = pr[lab]
        r, p = _a(c["recall"]), _a(c["precision"])
        ax.plot(np.r_[0, r], np.r_[p[:1] if p.size else [1], p], lw=1.5)
        ap = metrics["ap"].get(lab)
        ax.set_title(f"{lab}\nAP {ap:.3f}" if ap is not None else lab, fontsize=9)
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8), ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7), ax.grid(alpha=0.3)
    fig.suptitle(f"Precision-recall at IoU > {metrics['iou']}", fontsize=11)
    fig.tight_layout()
    return _png(fig)


def roc_plot(curves: Mapping[str, Any], metrics: Mapping[str, Any]) -> bytes:
    """Image-level ROC curves: abnormal vs normal (thick) and each finding."""
    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 5))
    c = curves["roc_abnormal"]
    auc = metrics["auc"]["abnormal"]
    ax0.plot(_a(c["fpr"]), _a(c["tpr"]), lw=2.5, color="k", label=f"AUC {auc:.3f}" if auc is not None else "AUC n/a")
    ax0.set_title("abnormal vs normal (1 - 'No finding' score)", fontsize=10)
    cmap = plt.get_cmap("tab20")
    for i, (lab, c) in enumerate(curves["roc"].items()):
        a = metrics["auc"]["per_class"].get(lab)
        ax1.plot(_a(c["fpr"]), _a(c["tpr"]), lw=1.2, color=cmap(i % 20), label=f"{lab} ({a:.2f})" if a is not None else lab)
    ax1.set_title("per finding (image score = highest box score)", fontsize=10)
    for ax in (ax0, ax1):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set_xlabel("false positive rate"), ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.01), ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def froc_operating_points(curves: Mapping[str, Any], metrics: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """``(name, false positives per image, sensitivity)`` of the points the FROC plot marks: the
    reported rates (the step curve's value at each rate) and the score threshold's operating point
    (finding boxes scoring at least ``prf.score_threshold``), when the metrics have it."""
    fr = metrics["froc"]
    out = [(f"{r:g} FP/image", float(r), float(s)) for r, s in zip(fr["rates"], fr["sensitivity"], strict=True)
           if s is not None]
    micro = metrics.get("prf", {}).get("micro_findings") or {}
    images = metrics.get("images")
    if images and micro.get("recall") is not None and micro.get("fp") is not None:
        t = metrics["prf"]["score_threshold"]
        out.append((f"score ≥ {t:g}", micro["fp"] / images, float(micro["recall"])))
    return out


def froc_figure(curves: Mapping[str, Any], metrics: Mapping[str, Any]):
    """The FROC figure (matplotlib): the curve as the step function the metrics read (the best
    sensitivity at or below each false-positive rate), the reported rates on it (dots) and the score
    threshold's operating point (a star, annotated), all on the curve.

    Each marker's line carries a ``gid``: ``froc-curve``, ``froc-rates`` and ``froc-threshold``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    f = curves["froc"]
    fr = metrics["froc"]
    rates = [float(r) for r in fr["rates"]]
    points = froc_operating_points(curves, metrics)
    xs = [x for _, x, _ in points if x > 0] + rates
    left, right = min(xs) / 2, max(xs) * 2
    x, y = _a(f["fppi"]), _a(f["sensitivity"])
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size:  # from the left edge (fppi 0 on a log axis) to the right edge, as a step function
        x = np.r_[np.maximum(x, left), right]
        y = np.r_[y, y[-1]]
    ax.plot(x, y, lw=1.5, drawstyle="steps-post", label="curve", gid="froc-curve")
    at_rates = [(xx, yy) for name, xx, yy in points if not name.startswith("score")]
    if at_rates:
        mean = fr.get("mean")
        ax.plot(*zip(*at_rates, strict=True), "o", color="C3", ms=6, gid="froc-rates",
                label=f"reported rates (mean sensitivity {mean:.3f})" if mean is not None else "reported rates")
    for name, xx, yy in points:
        if name.startswith("score"):
            shown_x = max(xx, left)
            ax.plot([shown_x], [yy], "*", color="C2", ms=14, mec="k", mew=0.6, gid="froc-threshold",
                    label=f"operating point: {name}")
            ax.annotate(f"{yy:.2f} at {xx:.2f} FP/image", (shown_x, yy), textcoords="offset points",
                        xytext=(8, -14), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left, right)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positives per image"), ax.set_ylabel("sensitivity (finding boxes)")
    ax.set_title(f"FROC at IoU > {metrics['iou']}", fontsize=10)
    ax.grid(alpha=0.3, which="both"), ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def froc_plot(curves: Mapping[str, Any], metrics: Mapping[str, Any]) -> bytes:
    """FROC: lesion sensitivity against false positives per image (log scale), with its operating
    points on the curve (:func:`froc_figure`)."""
    return _png(froc_figure(curves, metrics))


def confusion_plot(curves: Mapping[str, Any]) -> bytes:
    """Box-level class confusion (matched regardless of class), log-colored counts."""
    plt = _plt()
    conf = curves["confusion"]
    m = np.asarray(conf["matrix"], dtype=np.float64)
    names = [*conf["labels"], "background / missed"]
    fig, ax = plt.subplots(figsize=(9, 8))
    ax.imshow(np.log1p(m), cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted class (last column: truth box missed)")
    ax.set_ylabel("truth class (last row: prediction on background)")
    hi = m.max() if m.size else 0
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=6,
                    color="white" if np.log1p(v) > 0.6 * np.log1p(hi) else "black")
    ax.set_title("Class confusion of boxes above the score threshold", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def distribution_plot(metrics: Mapping[str, Any]) -> bytes:
    """Predicted vs actual label distribution: boxes and images per class (paper Figs. 8-9)."""
    plt = _plt()
    dist = metrics["distribution"]
    labels = list(dist)
    x = np.arange(len(labels))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, what in zip(axes, ("boxes", "images")):
        t = [dist[lab][f"truth_{what}"] for lab in labels]
        p = [dist[lab][f"predicted_{what}"] for lab in labels]
        ax.bar(x - 0.2, t, 0.4, label="actual (truth)")
        ax.bar(x + 0.2, p, 0.4, label=f"predicted (score >= {metrics['prf']['score_threshold']})")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(what), ax.set_title(f"{what} per class", fontsize=10), ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def score_histograms(curves: Mapping[str, Any]) -> bytes:
    """Score histograms: true vs false positive boxes (findings pooled), P(abnormal) by truth."""
    plt = _plt()
    bins = _a(curves["bins"])
    centers, width = (bins[:-1] + bins[1:]) / 2, np.diff(bins)
    tp = sum((_a(v["tp"]) for k, v in curves["scores"].items() if k != "No finding"), np.zeros(centers.size))
    fp = sum((_a(v["fp"]) for k, v in curves["scores"].items() if k != "No finding"), np.zeros(centers.size))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    ax0.bar(centers, fp, width, alpha=0.6, label="false positive", color="C3")
    ax0.bar(centers, tp, width, alpha=0.6, label="true positive", color="C2")
    ax0.set_title("finding box scores", fontsize=10), ax0.set_xlabel("score"), ax0.set_ylabel("boxes"), ax0.legend()
    pa = curves["p_abnormal"]
    ax1.bar(centers, _a(pa["normal"]), width, alpha=0.6, label="normal images", color="C0")
    ax1.bar(centers, _a(pa["abnormal"]), width, alpha=0.6, label="abnormal images", color="C1")
    ax1.set_title("P(abnormal) = 1 - 'No finding' score", fontsize=10), ax1.set_xlabel("P(abnormal)")
    ax1.set_ylabel("images"), ax1.legend()
    fig.tight_layout()
    return _png(fig)
