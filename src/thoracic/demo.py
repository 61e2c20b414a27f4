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

from thoracic._version import __version__
from thoracic.errors import ThoracicError
from thoracic.io import image_id, read
from thoracic.preprocess import get_chain, to_uint8

__all__ = ["DemoSample", "run_demo", "sample_paths"]

_SAMPLE_SUFFIXES = (".dcm", ".jpg", ".png")
_BOX_COLOR = (255, 140, 0)  # RGB


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


def _thumb(gray: np.ndarray, size: int = 384) -> np.ndarray:
    h, w = gray.shape[:2]
    scale = size / max(h, w)
    return cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _draw_boxes(gray_u8: np.ndarray, boxes, scale: float) -> np.ndarray:
    rgb = cv2.cvtColor(gray_u8, cv2.COLOR_GRAY2RGB)
    for label, x0, y0, x1, y1 in boxes:
        p0 = (round(x0 * scale), round(y0 * scale))
        p1 = (round(x1 * scale), round(y1 * scale))
        cv2.rectangle(rgb, p0, p1, _BOX_COLOR, 2)
        cv2.putText(rgb, label, (p0[0] + 3, max(12, p0[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _BOX_COLOR, 1, cv2.LINE_AA)
    return rgb


def _write_png(path: Path, img: np.ndarray) -> None:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")


def _histogram(pixels: np.ndarray, width: int = 384, height: int = 120) -> np.ndarray:
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
    _write_png(out / name, overlay(rg, lungs, max_side=384))
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
    _write_png(out / name, draw_findings(rg, shown, longest=512))
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


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;background:#f6f7f9;color:#1b1f24}
h1{margin:0 0 4px}.sub{color:#57606a;margin:0 0 20px}
.sample{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin-bottom:18px}
.panels{display:flex;flex-wrap:wrap;gap:14px}.panel{text-align:center;font-size:13px;color:#57606a}
.panel img{display:block;max-width:384px;border:1px solid #d0d7de;background:#000}
table{border-collapse:collapse;font-size:13px;margin:8px 0}td{padding:2px 10px 2px 0}td:first-child{color:#57606a}
.err{color:#b42318}
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
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in s.facts.items())
        parts.append(f"<table>{rows}<tr><td>time</td><td>{s.seconds:.2f} s</td></tr></table><div class='panels'>")
        for caption, name in s.panels:
            parts.append(
                f"<div class='panel'><img src='{html.escape(name)}' alt='{html.escape(caption)}'>{html.escape(caption)}</div>"
            )
        parts.append("</div></div>")
    parts.append("</body></html>")
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
