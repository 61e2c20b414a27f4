"""Evaluation reports: plots (matplotlib, Agg) and one self-contained HTML page."""

from thoracic.report.html import SECTIONS, render_report, write_report
from thoracic.report.overlays import (
    draw_overlay,
    find_image,
    pick_samples,
    sample_overlays,
)
from thoracic.report.plots import (
    confusion_plot,
    distribution_plot,
    froc_plot,
    pr_plot,
    roc_plot,
    score_histograms,
)

__all__ = [
    "SECTIONS",
    "confusion_plot",
    "distribution_plot",
    "draw_overlay",
    "find_image",
    "froc_plot",
    "pick_samples",
    "pr_plot",
    "render_report",
    "roc_plot",
    "sample_overlays",
    "score_histograms",
    "write_report",
]
