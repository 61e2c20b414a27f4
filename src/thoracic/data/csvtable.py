"""A plain CSV annotation table, and writing any table as one.

Columns: ``image_id, label, x_min, y_min, x_max, y_max`` (required) and ``reader, score, width,
height, patient_id`` (optional). Labels are VinDr names (:data:`~thoracic.labels.LABELS`). A "No
finding" row may leave its box empty. A row with an empty label and an empty box lists an image
without any annotation (so sizes and patients of such images survive a round trip).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.tables import PathLike, check_box, parse_float, parse_size, read_csv
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS, NO_FINDING, NO_FINDING_BOX

__all__ = ["CSV_COLUMNS", "load_csv", "write_csv"]

CSV_COLUMNS = ("image_id", "label", "x_min", "y_min", "x_max", "y_max", "reader", "score", "width", "height", "patient_id")
_REQUIRED = CSV_COLUMNS[:6]


def load_csv(path: PathLike, *, name: str = "") -> Annotations:
    """Load a plain CSV table (see the module docstring); refused rows go to ``problems``."""
    header, lines = read_csv(path, _REQUIRED, what="thoracic annotation")
    col = {c: header.index(c) for c in CSV_COLUMNS if c in header}
    src = str(path)
    problems: list[Problem] = []
    infos: dict[str, ImageInfo] = {}
    rows: list[tuple] = []

    def get(f: list[str], c: str) -> str:
        i = col.get(c)
        return f[i].strip() if i is not None and i < len(f) else ""

    for line, f in lines:
        iid = get(f, "image_id")
        if not iid:
            problems.append(Problem(line, "", "empty image_id", src))
            continue
        w, h, why = parse_size(get(f, "width"), get(f, "height"))
        if why:
            problems.append(Problem(line, iid, why, src))
            continue
        old = infos.get(iid)
        if old is None:
            infos[iid] = ImageInfo(iid, w, h, get(f, "patient_id") or None)
        elif w is not None and (old.width, old.height) not in ((None, None), (w, h)):
            problems.append(Problem(line, iid, f"size {w}x{h} differs from {old.width}x{old.height} given earlier", src))
            continue
        elif w is not None and old.width is None:
            infos[iid] = ImageInfo(iid, w, h, old.patient_id or get(f, "patient_id") or None)
        info = infos[iid]
        label = get(f, "label")
        coords = [get(f, c) for c in ("x_min", "y_min", "x_max", "y_max")]
        if not label:
            if any(coords):
                problems.append(Problem(line, iid, "box without a label", src))
            continue
        if label not in CLASS_IDS:
            problems.append(Problem(line, iid, str(ConfigError.unknown("label", label, LABELS)), src))
            continue
        s = parse_float(get(f, "score"))
        if s is not None and not math.isfinite(s):
            problems.append(Problem(line, iid, f"score {get(f, 'score')!r} is not a number", src))
            continue
        score = math.nan if s is None else s
        if label == NO_FINDING:
            rows.append((iid, label, *NO_FINDING_BOX, get(f, "reader"), score))
            continue
        box = [parse_float(c) for c in coords]
        why = check_box(box, info.width, info.height)
        if why:
            problems.append(Problem(line, iid, f"{label}: {why}", src))
            continue
        rows.append((iid, label, *box, get(f, "reader"), score))
    return Annotations.from_rows(infos, rows, problems=problems, name=name or Path(path).stem)


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6g}" if abs(v) < 1e6 else repr(v)


def write_csv(ann: Annotations, path: PathLike) -> Path:
    """Write ``ann`` as a plain CSV table (images without rows get one row with an empty label)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        with_rows = set()
        for iid, label, x0, y0, x1, y1, reader, score in ann.rows():
            info = ann.images[iid]
            with_rows.add(iid)
            w.writerow(
                [iid, label, *(repr(float(v)) for v in (x0, y0, x1, y1)), reader, _fmt(float(score)),
                 info.width or "", info.height or "", info.patient_id or ""]
            )
        for iid, info in ann.images.items():
            if iid not in with_rows:
                w.writerow([iid, "", "", "", "", "", "", "", info.width or "", info.height or "", info.patient_id or ""])
    os.replace(tmp, out)
    return out
