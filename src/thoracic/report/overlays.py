"""Sample overlays: truth (green) and predicted (red, with score) boxes drawn on the radiograph."""

from __future__ import annotations

import io
from os import PathLike
from pathlib import Path

import numpy as np
from PIL import Image

from thoracic._draw import draw_boxes, label_px, line_px
from thoracic.data.annotations import Annotations
from thoracic.errors import ThoracicError
from thoracic.labels import NO_FINDING

__all__ = ["IMAGE_SUFFIXES", "SHOWN_SIDE", "draw_overlay", "find_image", "pick_samples", "sample_overlays"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff")
TRUTH_COLOR = (40, 200, 70)
PRED_COLOR = (230, 40, 40)
#: Longest side, in screen pixels, of an overlay as the report shows it.
SHOWN_SIDE = 480


def find_image(image_id: str, folder: str | PathLike[str] | None, source: str | None = None) -> Path | None:
    """``folder/<image_id><suffix>`` for a known suffix, else ``source`` if it exists."""
    if folder is not None:
        for suffix in IMAGE_SUFFIXES:
            p = Path(folder) / f"{image_id}{suffix}"
            if p.is_file():
                return p
    if source and Path(source).is_file():
        return Path(source)
    return None


def draw_overlay(
    pixels: np.ndarray, truth: list[tuple[str, np.ndarray]], preds: list[tuple[str, float, np.ndarray]],
    scale: float, max_side: int = 768, shown: int | None = SHOWN_SIDE,
) -> bytes:
    """PNG of the gray image (``[0, 1]`` floats) with boxes; ``scale`` maps box to pixel coordinates.

    Truth labels sit above their boxes, predicted ones below, each whole inside the image and
    readable with the picture shown ``shown`` pixels on its longest side (the report's size).
    """
    import cv2

    gray = (np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    f = min(1.0, max_side / max(gray.shape[:2]))
    if f < 1.0:
        size = (max(1, round(gray.shape[1] * f)), max(1, round(gray.shape[0] * f)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    side = max(rgb.shape[:2])
    px, thick = label_px(side, shown), line_px(side, shown)
    k = scale * f
    taken = draw_boxes(rgb, [([float(v) * k for v in box], label, TRUTH_COLOR) for label, box in truth], px=px, thick=thick)
    ranked = sorted(preds, key=lambda p: -p[1])
    draw_boxes(rgb, [([float(v) * k for v in box], f"{label} {score:.2f}", PRED_COLOR) for label, score, box in ranked],
               px=px, thick=thick, where="below", taken=taken)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def pick_samples(truth: Annotations, preds: Annotations | None, n: int, score_threshold: float) -> list[str]:
    """Up to ``n`` images, busiest first (truth finding boxes plus predicted boxes above the threshold)."""
    busy: dict[str, int] = {k: 0 for k in truth.images}
    for image, label in zip(truth.image_id.tolist(), truth.label.tolist()):
        busy[image] += label != NO_FINDING
    if preds is not None:
        for image, label, s in zip(preds.image_id.tolist(), preds.label.tolist(), preds.score.tolist()):
            if image in busy and label != NO_FINDING and s >= score_threshold:
                busy[image] += 1
    return [k for k, _ in sorted(busy.items(), key=lambda kv: (-kv[1], kv[0]))][: max(n, 0)]


def sample_overlays(
    truth: Annotations,
    preds: Annotations | None,
    folder: str | PathLike[str] | None,
    n: int = 6,
    score_threshold: float = 0.5,
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """Overlays of up to ``n`` images that can be found and read.

    Returns ``[(image_id, png_bytes)]`` and notes about images that could not be shown.
    """
    from thoracic.io import read

    out: list[tuple[str, bytes]] = []
    notes: list[str] = []
    candidates = pick_samples(truth, preds, 10 * n, score_threshold)
    for image in candidates:
        if len(out) >= n:
            break
        src = None
        for table in (preds, truth):
            info = table.images.get(image) if table is not None else None
            src = src or (info.source if info else None)
        path = find_image(image, folder, src)
        if path is None:
            continue
        try:
            rg = read(path)
        except ThoracicError as err:
            notes.append(f"overlay of {image} skipped: {err}")
            continue
        h, w = rg.pixels.shape[:2]
        info = truth.images.get(image)
        orig_w = (info.width if info and info.width else None) or w
        scale = w / orig_w  # boxes are in original pixels; the file may be resized
        t = [(lab, box) for i, lab, box in zip(truth.image_id, truth.label, truth.boxes) if i == image and lab != NO_FINDING]
        p: list[tuple[str, float, np.ndarray]] = []
        if preds is not None:
            sel = (preds.image_id == image) & (preds.label != NO_FINDING) & (preds.score >= score_threshold)
            p = [(lab, float(s), box) for lab, s, box in zip(preds.label[sel], preds.score[sel], preds.boxes[sel])]
        out.append((image, draw_overlay(rg.pixels, t, p, scale)))
    if not out:
        notes.append("no overlays: no image files found (pass --images DIR with <image_id>.png/.jpg/.dcm)")
    return out, notes


