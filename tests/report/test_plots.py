"""The FROC plot of ``thoracic evaluate --report``: its operating points sit on the curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thoracic.evaluate import EvaluationConfig, evaluate, read_predictions, read_truth

PRED_HEADER = "image_id,label,score,x_min,y_min,x_max,y_max\n"
TRUTH_HEADER = "image_id,label,x_min,y_min,x_max,y_max\n"


@pytest.fixture
def result(tmp_path: Path, require):
    """Eight images, each with one nodule; a hit and a false positive per image at ranked scores."""
    require("matplotlib")
    truth, preds = [TRUTH_HEADER], [PRED_HEADER]
    rng = np.random.default_rng(0)
    for i in range(8):
        truth.append(f"im{i},Nodule/Mass,10,10,40,40\n")
        preds.append(f"im{i},Nodule/Mass,{0.95 - 0.1 * i:.2f},11,11,41,41\n")  # hit
        preds.append(f"im{i},Nodule/Mass,{rng.uniform(0.05, 0.9):.3f},60,60,90,90\n")  # false positive
        preds.append(f"im{i},No finding,0.2,0,0,1,1\n")
    (tmp_path / "t.csv").write_text("".join(truth))
    (tmp_path / "p.csv").write_text("".join(preds))
    cfg = EvaluationConfig(score_threshold=0.5, coco=False, bootstrap=0)
    return evaluate(read_truth(tmp_path / "t.csv"), read_predictions(tmp_path / "p.csv"), cfg)


def _step(curve_x: np.ndarray, curve_y: np.ndarray, x: float) -> tuple[float, float]:
    """The lowest and highest y of a steps-post line at ``x`` (a vertical segment spans both)."""
    i = np.flatnonzero(curve_x <= x + 1e-9)
    at = np.flatnonzero(np.isclose(curve_x, x))
    hi = curve_y[i[-1]]
    lo = curve_y[at[0] - 1] if at.size and at[0] > 0 else hi
    return float(min(lo, hi)), float(max(lo, hi))


def test_the_froc_plot_marks_the_reported_rates_and_the_threshold_on_the_curve(result):
    from thoracic.report.plots import froc_figure, froc_operating_points, froc_plot

    m, c = result.metrics, result.curves
    fig = froc_figure(c, m)
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    assert {"froc-curve", "froc-rates", "froc-threshold"} <= set(lines)
    curve = lines["froc-curve"]
    assert curve.get_drawstyle() == "steps-post"
    cx, cy = np.asarray(curve.get_xdata(), float), np.asarray(curve.get_ydata(), float)

    rates = lines["froc-rates"]
    rx, ry = np.asarray(rates.get_xdata(), float), np.asarray(rates.get_ydata(), float)
    assert rx.tolist() == m["froc"]["rates"] and ry.tolist() == m["froc"]["sensitivity"]
    star = lines["froc-threshold"]
    sx, sy = float(star.get_xdata()[0]), float(star.get_ydata()[0])
    micro = m["prf"]["micro_findings"]
    assert sy == pytest.approx(micro["recall"]) and sx == pytest.approx(max(micro["fp"] / 8, ax.get_xlim()[0]))
    assert "0.5" in star.get_label()
    for x, y in [*zip(rx, ry, strict=True), (sx, sy)]:
        lo, hi = _step(cx, cy, x)
        assert lo - 1e-9 <= y <= hi + 1e-9, (x, y, lo, hi)  # on the drawn step line
    # every point is inside the axes
    x0, x1 = ax.get_xlim()
    assert all(x0 <= x <= x1 for _, x, _ in froc_operating_points(c, m) if x > 0)
    assert froc_plot(c, m)[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_the_froc_plot_reads_curves_json(result, tmp_path):
    """``thoracic report --metrics DIR`` plots from the JSON files (lists, ``None`` for nan)."""
    import json

    from thoracic.evaluate import write_results
    from thoracic.report.plots import froc_figure

    write_results(result, tmp_path / "out")
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    c = json.loads((tmp_path / "out" / "curves.json").read_text())
    fig = froc_figure(c, m)
    assert {line.get_gid() for line in fig.axes[0].get_lines()} >= {"froc-curve", "froc-rates", "froc-threshold"}
