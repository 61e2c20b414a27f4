"""One self-contained HTML page: metrics, plots and overlays, every image a ``data:`` URI."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic.data.annotations import Annotations
from thoracic.evaluate.evaluate import markdown_summary
from thoracic.report import plots
from thoracic.report.overlays import SHOWN_SIDE, sample_overlays

__all__ = ["SECTIONS", "render_report", "write_report"]

#: ``id`` of each section of the page, in order.
SECTIONS = ("summary", "classes", "pr", "roc", "froc", "confusion", "distribution", "scores", "overlays", "problems", "config")

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.overlays{display:flex;flex-wrap:wrap;gap:12px}.overlays figure{margin:0}
figcaption{font-size:12px;word-break:break-all}.note{color:#555;font-size:13px}pre{background:#f6f6f6;padding:8px;overflow:auto}
""" + f".overlays figure{{width:{SHOWN_SIDE}px}}"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _md_tables(md: str) -> str:
    """The Markdown tables of :func:`markdown_summary` as HTML tables; other lines as paragraphs."""
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, *body = table
            out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>")
            out.extend(["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body])
            out.append("</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= {"-"} for c in cells):
                table.append(cells)
            continue
        flush()
        text = line.lstrip("#- ").strip()
        if text and not line.startswith("#"):
            out.append(f'<p class="note">{html.escape(text)}</p>')
    flush()
    return "\n".join(out)


def render_report(
    metrics: Mapping[str, Any],
    curves: Mapping[str, Any] | None = None,
    truth: Annotations | None = None,
    preds: Annotations | None = None,
    images: str | PathLike[str] | None = None,
    samples: int = 6,
    title: str = "thoracic evaluation",
) -> str:
    """The report page as a string (see :data:`SECTIONS`); sections without data say so."""
    md = markdown_summary(metrics)
    summary_md, _, class_md = md.partition("\n| class |")
    class_md = "| class |" + class_md
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]

    def section(sid: str, heading: str, body: str) -> None:
        parts.append(f'<section id="{sid}"><h2>{html.escape(heading)}</h2>\n{body}\n</section>')

    section("summary", "Summary", _md_tables(summary_md))
    section("classes", "Per class", _md_tables(class_md))
    missing = '<p class="note">No curve data (curves.json) was given.</p>'
    t = metrics["prf"]["score_threshold"]
    section("pr", "Precision-recall curves", _img(plots.pr_plot(curves, metrics), "PR curves") if curves else missing)
    section("roc", "ROC curves", _img(plots.roc_plot(curves, metrics), "ROC curves") if curves else missing)
    section("froc", "FROC", _img(plots.froc_plot(curves, metrics), "FROC") if curves else missing)
    section("confusion", "Class confusion", (f'<p class="note">Boxes with score &ge; {t}, matched to truth boxes of any '
            f"class at IoU &gt; {metrics['iou']}.</p>" + _img(plots.confusion_plot(curves), "confusion")) if curves else missing)
    section("distribution", "Predicted vs actual label distribution", _img(plots.distribution_plot(metrics), "distribution"))
    section("scores", "Score histograms", _img(plots.score_histograms(curves), "score histograms") if curves else missing)
    if truth is not None:
        shown, notes = sample_overlays(truth, preds, images, samples, t)
        body = '<p class="note">Green: truth; red: predictions with score &ge; {}.</p><div class="overlays">'.format(t)
        body += "".join(f"<figure>{_img(png, image)}<figcaption>{html.escape(image)}</figcaption></figure>" for image, png in shown)
        body += "</div>" + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
    else:
        body = '<p class="note">No overlays: pass the truth, the predictions and --images to draw them.</p>'
    section("overlays", "Sample overlays", body)
    probs = metrics.get("problems", [])
    rows = "".join(
        f"<tr><td>{html.escape(str(p.get('source', '')))}</td><td>{p.get('line') or ''}</td><td>{html.escape(str(p.get('image_id', '')))}</td>"
        f"<td>{html.escape(str(p.get('message', '')))}</td></tr>" for p in probs[:200]
    )
    counts = ", ".join(f"{html.escape(k)}: {v}" for k, v in metrics.get("problem_counts", {}).items()) or "none"
    section("problems", "Input problems", f"<p>{counts}</p>" + (f"<table><tr><th>file</th><th>line</th><th>image</th><th>problem</th></tr>{rows}</table>" if rows else "")
            + (f'<p class="note">first 200 of {len(probs)} listed in metrics.json</p>' if len(probs) > 200 else ""))
    cfg = {k: metrics.get(k) for k in ("thoracic_version", "config", "image_counts", "notes")}
    section("config", "Configuration", f"<pre>{html.escape(json.dumps(cfg, indent=2))}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(page: str, out: str | PathLike[str]) -> Path:
    """Write a page made by :func:`render_report` to ``out`` (parent folders created); returns the path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
