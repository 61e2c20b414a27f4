"""``thoracic demo``: run thoracic on the bundled sample radiographs and write an HTML page."""

from __future__ import annotations

import csv
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from thoracic._draw import draw_boxes, label_px, line_px
from thoracic._version import __version__
from thoracic.errors import ThoracicError
from thoracic.io import image_id, read
from thoracic.preprocess import get_chain, to_uint8

__all__ = ["DemoSample", "run_demo", "sample_paths"]

_SAMPLE_SUFFIXES = (".dcm", ".jpg", ".png")
_BOX_COLOR = (255, 140, 0)  # RGB
_SIDE = 768  # longest side of the pictures written (click one on the page to see it whole)
_SHOWN = 480  # longest side at which the page shows them


def sample_paths() -> list[Path]:
    """The bundled sample radiographs, sorted by name."""
    root = resources.files("thoracic") / "samples"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.lower().endswith(_SAMPLE_SUFFIXES))


def _sample_boxes() -> dict[str, list[tuple[str, float, float, float, float]]]:
    path = resources.files("thoracic") / "samples" / "boxes.csv"
    boxes: dict[str, list[tuple[str, float, float, float, float]]] = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            boxes.setdefault(row["image_id"], []).append(
                (row["label"], *(float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")))
            )
    return boxes


@dataclass
class DemoSample:
    image_id: str
    source: str
    facts: dict
    panels: list[tuple[str, str]]  # (caption, file name)
    seconds: float
    error: str = ""


def _thumb(gray: np.ndarray, size: int = _SIDE) -> np.ndarray:
    h, w = gray.shape[:2]
    scale = min(1.0, size / max(h, w))
    return cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _draw_boxes(gray_u8: np.ndarray, boxes, scale: float) -> np.ndarray:
    rgb = cv2.cvtColor(gray_u8, cv2.COLOR_GRAY2RGB)
    side = max(rgb.shape[:2])
    px, thick = label_px(side, _SHOWN), line_px(side, _SHOWN)
    draw_boxes(rgb, [((x0 * scale, y0 * scale, x1 * scale, y1 * scale), label, _BOX_COLOR) for label, x0, y0, x1, y1 in boxes],
               px=px, thick=thick)
    return rgb


def _write_png(path: Path, img: np.ndarray) -> None:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _histogram(pixels: np.ndarray, width: int = _SHOWN, height: int = 150) -> np.ndarray:
    hist = np.bincount(to_uint8(pixels).ravel(), minlength=256).astype(np.float64)
    hist /= max(hist.max(), 1)
    canvas = np.full((height, width, 3), 255, np.uint8)
    for i, v in enumerate(hist):
        x0, x1 = i * width // 256, (i + 1) * width // 256
        cv2.rectangle(canvas, (x0, height - 1), (max(x0, x1 - 1), height - 1 - int(v * (height - 4))), (70, 70, 70), -1)
    return canvas


def _process(path: Path, out: Path, truth, predictor) -> DemoSample:
    start = time.perf_counter()
    rg = read(path)
    iid = rg.image_id
    boxes = truth.get(iid, [])
    panels: list[tuple[str, str]] = []

    display = to_uint8(rg.pixels)
    thumb = _thumb(display)
    name = f"{iid}_1_window.png"
    _write_png(out / name, _draw_boxes(thumb, boxes, thumb.shape[1] / rg.width) if boxes else thumb)
    panels.append((f"read: {rg.voi}" + (" + radiologist boxes" if boxes else ""), name))

    name = f"{iid}_2_hist.png"
    _write_png(out / name, _histogram(rg.pixels))
    panels.append(("histogram after the window", name))

    prepared = get_chain("yolo-512-clahe").run(rg)
    model_in = prepared.to_uint8()
    mapped = [(label, *prepared.transform.apply_boxes([b])[0]) for label, *b in boxes]
    name = f"{iid}_3_chain.png"
    _write_png(out / name, _draw_boxes(model_in, mapped, 1.0) if boxes else model_in)
    panels.append((f"chain yolo-512-clahe ({model_in.shape[1]}x{model_in.shape[0]}), boxes mapped", name))

    from thoracic.anatomy import default_segmenter, lung_roi_crop, overlay

    lungs = default_segmenter().segment(rg)
    name = f"{iid}_4_lungs.png"
    _write_png(out / name, overlay(rg, lungs, max_side=_SIDE, shown=_SHOWN))
    caption = f"lungs (UNet): {lungs.lung_fraction:.0%} of the image, lung square"
    panels.append((caption + (f" - fallback: {lungs.roi.fallback_reason}" if lungs.fallback else ""), name))

    crop, to_crop = lung_roi_crop(rg, lungs.roi, 512)
    crop_u8 = to_uint8(crop)
    mapped = [(label, *to_crop.apply_boxes([b])[0]) for label, *b in boxes]
    name = f"{iid}_5_lung_roi.png"
    _write_png(out / name, _draw_boxes(crop_u8, mapped, 1.0) if boxes else crop_u8)
    panels.append(("lung ROI crop 512x512 (the paper's detector input), boxes mapped", name))

    from thoracic.detect import draw_findings

    pred = predictor.predict(rg, heatmap=True)
    points = predictor.operating_points  # what a clinician sees (predict's CSV keeps every box >= its --conf)
    shown = points.select(pred.detections)
    name = f"{iid}_6_findings.png"
    _write_png(out / name, draw_findings(rg, shown, longest=_SIDE, shown=_SHOWN))
    p_abn = "" if pred.p_abnormal is None else f"P(abnormal) {pred.p_abnormal:.2f}"
    verdict = ("classifier filter: normal, boxes dropped" if pred.filtered
               else f"{len(shown)} finding(s) {points.describe()}")
    panels.append((f"findings (shipped NIH detector): {p_abn}; {verdict}", name))

    if pred.heatmap is not None:
        from thoracic.explain import blend

        name = f"{iid}_7_heatmap.png"
        small = _thumb(display)
        _write_png(out / name, blend(small, cv2.resize(pred.heatmap, small.shape[1::-1], interpolation=cv2.INTER_AREA)))
        panels.append(("heatmap: Eigen-CAM of the detector's P3 feature map (where it looks)", name))

    facts = {
        k: v
        for k, v in rg.summary().items()
        if k in ("format", "width", "height", "photometric", "transfer_syntax", "bits_stored", "window_center", "window_width", "pixel_spacing")
    }
    facts["p_abnormal"] = None if pred.p_abnormal is None else round(pred.p_abnormal, 3)
    facts["findings"] = [f"{label} {score:.2f}" for label, score in zip(shown.labels, shown.scores.tolist(), strict=True)][:8]
    facts["lung_fraction"] = round(lungs.lung_fraction, 3)
    facts["lung_square"] = list(lungs.roi.box)
    return DemoSample(iid, path.name, facts, panels, time.perf_counter() - start)


def _number(v: float, digits: int = 3) -> str:
    """``128`` for 128.0, ``0.168`` for 0.16800000001: no trailing zeros, no float noise."""
    text = f"{float(v):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _findings_text(findings: list[str]) -> str:
    """``Pleural effusion 0.14 (8 boxes), Nodule/Mass 0.36`` from ``["Pleural effusion 0.14", ...]``
    (best score first, boxes of one finding counted)."""
    best: dict[str, tuple[float, int]] = {}
    for item in findings:
        label, _, score = item.rpartition(" ")
        top, n = best.get(label, (0.0, 0))
        best[label] = (max(top, float(score)), n + 1)
    parts = [f"{label} {top:.2f}" + (f" ({n} boxes)" if n > 1 else "")
             for label, (top, n) in sorted(best.items(), key=lambda kv: -kv[1][0])]
    return ", ".join(parts) if parts else "none above the operating points"


def _fact_rows(facts: dict, seconds: float) -> list[tuple[str, str]]:
    """The facts of one sample as ``(name, value)`` text for the page: units, rounded numbers,
    plain lists; a value the image does not have is left out, never shown as ``None``."""
    rows: list[tuple[str, str]] = []

    def add(name: str, value: object) -> None:
        if value is not None and value != "":
            rows.append((name, str(value)))

    f = facts
    add("format", f.get("format"))
    if f.get("width") and f.get("height"):
        add("size", f"{f['width']} × {f['height']} pixels")
    add("photometric", f.get("photometric"))
    add("transfer syntax", f.get("transfer_syntax"))
    add("bits stored", f.get("bits_stored"))
    if f.get("window_center") is not None and f.get("window_width") is not None:
        add("window", f"center {_number(f['window_center'])}, width {_number(f['window_width'])}")
    spacing = f.get("pixel_spacing")
    if spacing:
        values = spacing if isinstance(spacing, list | tuple) else [spacing]
        add("pixel spacing", " × ".join(_number(v) for v in values) + " mm")
    p = f.get("p_abnormal")
    add("P(abnormal)", "n/a (no classifier)" if p is None else f"{p:.2f}")
    if "findings" in f:
        add("findings", _findings_text(list(f["findings"])))
    if f.get("lung_fraction") is not None:
        add("lungs", f"{f['lung_fraction']:.0%} of the image")
    if f.get("lung_square"):
        x0, y0, x1, y1 = (int(v) for v in f["lung_square"])
        add("lung square", f"{x1 - x0} × {y1 - y0} pixels from ({x0}, {y0})")
    add("time", f"{seconds:.2f} s")
    return rows


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#f6f7f9;color:#1b1f24}
h1{margin:0 0 4px}.sub{color:#57606a;margin:0 0 20px}
.sample{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin-bottom:18px}
.panels{display:flex;flex-wrap:wrap;gap:14px}.panel{text-align:center;font-size:13px;color:#57606a}
.panel{max-width:SHOWNpx}.panel img{display:block;max-width:100%;max-height:SHOWNpx;border:1px solid #d0d7de;background:#000;cursor:zoom-in}
#zoom{position:fixed;inset:0;background:rgba(0,0,0,.88);display:flex;align-items:center;justify-content:center;cursor:zoom-out}
#zoom[hidden]{display:none}#zoom img{max-width:96vw;max-height:96vh;background:#000}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td{padding:2px 10px 2px 0}td:first-child{color:#57606a}
.err{color:#b42318}
""".replace("SHOWN", str(_SHOWN))

#: Click a picture to see it whole (fit to the window); click again or press Escape to close.
_ZOOM_JS = """
const zoom = document.getElementById('zoom'), big = zoom.querySelector('img');
document.querySelectorAll('a.zoom').forEach((a) => a.addEventListener('click', (ev) => {
  ev.preventDefault(); big.src = a.href; big.alt = a.querySelector('img').alt; zoom.hidden = false;
}));
zoom.addEventListener('click', () => { zoom.hidden = true; });
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') zoom.hidden = true; });
"""


def _render(samples: list[DemoSample]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>thoracic demo</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>thoracic demo</h1>",
        f"<p class='sub'>thoracic {html.escape(__version__)} on {len(samples)} bundled real radiographs: "
        "read (DICOM windowing, MONOCHROME1 inversion) &rarr; preprocess (resize, CLAHE) &rarr; "
        "lung segmentation (shipped UNet, ONNX Runtime) and the lung-ROI crop &rarr; findings (shipped "
        "YOLOv5n detector trained on NIH ChestX-ray14, with the normal/abnormal classifier). "
        "The NIH samples were in the models' training data; see the model cards for held-out numbers. "
        "Boxes on the NIH images are the NIH radiologists' own.</p>",
    ]
    for s in samples:
        parts.append(f"<div class='sample'><h2>{html.escape(s.image_id)}</h2>")
        if s.error:
            parts.append(f"<p class='err'>{html.escape(s.error)}</p></div>")
            continue
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in _fact_rows(s.facts, s.seconds))
        parts.append(f"<table>{rows}</table><div class='panels'>")
        for caption, name in s.panels:
            src, alt = html.escape(name), html.escape(caption)
            parts.append(
                f"<div class='panel'><a class='zoom' href='{src}' title='click to enlarge'><img src='{src}' alt='{alt}'></a>{alt}</div>"
            )
        parts.append("</div></div>")
    parts.append("<div id='zoom' hidden><img alt=''></div>")
    parts.append(f"<script>{_ZOOM_JS}</script></body></html>")
    return "\n".join(parts)


def run_demo(out_dir: str | Path = "demo-output", *, progress: Callable[[str], None] | None = None) -> Path:
    """Process the bundled samples into ``out_dir`` and return the path of ``index.html``.

    A sample that fails is shown with its error; the others still run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from thoracic.inference.predictor import Predictor

    truth = _sample_boxes()
    predictor = Predictor.load()  # the shipped detector and classifier, loaded once
    samples: list[DemoSample] = []
    for path in sample_paths():
        if progress:
            progress(path.name)
        try:
            samples.append(_process(path, out, truth, predictor))
        except ThoracicError as err:
            samples.append(DemoSample(image_id(path), path.name, {}, [], 0.0, f"{type(err).__name__}: {err}"))
    index = out / "index.html"
    index.write_text(_render(samples), encoding="utf-8")
    (out / "demo.json").write_text(
        json.dumps(
            {"thoracic_version": __version__, "samples": [{"image_id": s.image_id, "error": s.error, **s.facts} for s in samples]},
            indent=2,
            default=str,
        )
    )
    return index
