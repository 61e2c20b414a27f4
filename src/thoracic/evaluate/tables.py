"""Read prediction and truth CSV files into :class:`~thoracic.data.Annotations`, listing bad rows.

Formats
-------
Predictions (as ``thoracic predict`` writes them)::

    image_id,label,score,x_min,y_min,x_max,y_max

with one ``No finding`` row per image (box ``0 0 1 1``, score ``1 - P(abnormal)``). A sidecar
``<stem>.images.csv`` next to the file (``image_id,source,status,error,width,height,...``) is read
when present: its sizes check that boxes lie inside the image, its ``source`` locates the image.

Truth, either the same columns without ``score`` and with an optional ``reader`` column, or
Kaggle's ``train.csv`` layout ``image_id,class_name,class_id,rad_id,x_min,y_min,x_max,y_max``.
``No finding`` rows may have empty coordinates or ``0 0 1 1``. ``.csv.gz`` files are read too.

Nothing is silently dropped or clipped: every refused or suspicious row becomes a
:class:`~thoracic.data.Problem` whose message starts with a short kind (``"unknown label: ..."``).
Rows that cannot be scored (unknown label, non-numeric or inverted box, bad score) are dropped
*and* listed; rows that can be scored but look wrong (box outside the image, duplicate row) are
kept and listed.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic._fs import sidecar_path
from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.errors import ConfigError, ReadError
from thoracic.labels import CLASS_IDS, NO_FINDING, NO_FINDING_BOX

__all__ = [
    "PRED_COLUMNS",
    "TRUTH_COLUMNS",
    "check_boxes",
    "problem_kind",
    "read_predictions",
    "read_sizes",
    "read_truth",
]

#: Columns of a prediction CSV, in order.
PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")
#: Required columns of a truth CSV (``reader`` is optional).
TRUTH_COLUMNS = ("image_id", "label", "x_min", "y_min", "x_max", "y_max")
_KAGGLE_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
_COORDS = ("x_min", "y_min", "x_max", "y_max")

Sizes = Mapping[str, tuple[int, int]]


def problem_kind(problem: Problem) -> str:
    """The kind of a problem: the part of its message before the first colon."""
    return problem.message.split(":", 1)[0]


def _open_rows(path: str | PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ReadError(f"cannot read the file ({err.strerror or err})", path=p) from err
    if p.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ReadError(f"not a valid gzip file ({err})", path=p) from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ReadError("not a UTF-8 text file", path=p) from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise ConfigError("empty file: expected a CSV with a header row", path=p)
    reader.fieldnames = header
    return header, list(reader)


def _require(header: list[str], columns: Iterable[str], path: str | PathLike[str], what: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(
            f"not a {what} CSV: missing column(s) {', '.join(missing)} (found: {', '.join(header)})", path=path
        )


def _number(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _box(row: Mapping[str, str | None], label: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """The row's box, or ``None`` and why not. "No finding" takes ``0 0 1 1`` when empty."""
    texts = [(row.get(c) or "").strip() for c in _COORDS]
    if label == NO_FINDING and not any(texts):
        return NO_FINDING_BOX, ""
    values = [_number(t) for t in texts]
    if any(v is None for v in values):
        return None, f"bad box: coordinates must be finite numbers, got {texts}"
    x0, y0, x1, y1 = values  # type: ignore[misc]
    if x1 < x0 or y1 < y0:  # type: ignore[operator]
        return None, f"bad box: need x_min <= x_max and y_min <= y_max, got {texts}"
    return (x0, y0, x1, y1), ""  # type: ignore[return-value]


def read_sizes(path: str | PathLike[str]) -> tuple[dict[str, tuple[int, int]], list[Problem]]:
    """Image sizes from a CSV with ``image_id,width,height`` (extra columns are ignored).

    Returns the sizes and the problems (bad numbers, duplicate ids with different sizes).
    """
    header, rows = _open_rows(path)
    _require(header, ("image_id", "width", "height"), path, "sizes")
    sizes: dict[str, tuple[int, int]] = {}
    problems: list[Problem] = []
    src = str(path)
    for line, row in enumerate(rows, start=2):
        image = (row.get("image_id") or "").strip()
        w, h = _number(row.get("width")), _number(row.get("height"))
        if not image:
            problems.append(Problem(line, "", "bad row: empty image_id", src))
            continue
        if w is None or h is None or w <= 0 or h <= 0:
            if (row.get("width") or "").strip() or (row.get("height") or "").strip():
                problems.append(Problem(line, image, f"bad size: width/height {row.get('width')!r}, {row.get('height')!r}", src))
            continue
        size = (int(w), int(h))
        if image in sizes and sizes[image] != size:
            problems.append(Problem(line, image, f"duplicate image id: size {size} differs from {sizes[image]}; first kept", src))
            continue
        if image in sizes:
            problems.append(Problem(line, image, "duplicate image id: listed twice", src))
        sizes.setdefault(image, size)
    return sizes, problems


def _read_sidecar(path: Path) -> tuple[dict[str, ImageInfo], list[Problem]]:
    header, rows = _open_rows(path)
    _require(header, ("image_id",), path, "prediction sidecar")
    infos: dict[str, ImageInfo] = {}
    problems: list[Problem] = []
    for line, row in enumerate(rows, start=2):
        image = (row.get("image_id") or "").strip()
        if not image:
            problems.append(Problem(line, "", "bad row: empty image_id", str(path)))
            continue
        if image in infos:
            problems.append(Problem(line, image, "duplicate image id: listed twice in the sidecar; first kept", str(path)))
            continue
        w, h = _number(row.get("width")), _number(row.get("height"))
        ok = w is not None and h is not None and w > 0 and h > 0
        infos[image] = ImageInfo(
            image, int(w) if ok else None, int(h) if ok else None, source=(row.get("source") or None)  # type: ignore[arg-type]
        )
    return infos, problems


def check_boxes(table: Annotations, sizes: Sizes | None = None) -> list[Problem]:
    """Problems for boxes outside their image and degenerate (zero-area) finding boxes.

    Sizes come from ``sizes`` first, else from ``table.images``. "No finding" rows are exempt.
    Boxes are not changed: a box outside the image is still scored as given.
    """
    problems: list[Problem] = []
    src = table.name
    for i in range(len(table)):
        label = table.label[i]
        if label == NO_FINDING:
            continue
        image = table.image_id[i]
        x0, y0, x1, y1 = table.boxes[i]
        if x1 <= x0 or y1 <= y0:
            problems.append(Problem(None, image, f"degenerate box: zero area {table.boxes[i].tolist()} ({label})", src))
        size = sizes.get(image) if sizes else None
        if size is None:
            info = table.images.get(image)
            if info is not None and info.width and info.height:
                size = (info.width, info.height)
        if size is not None and (x0 < 0 or y0 < 0 or x1 > size[0] or y1 > size[1]):
            problems.append(
                Problem(None, image, f"box outside image: {table.boxes[i].tolist()} ({label}) in a {size[0]}x{size[1]} image", src)
            )
    return problems


def _duplicates(keys: list[tuple[Any, ...]], lines: list[int], ids: list[str], src: str) -> list[Problem]:
    seen: dict[tuple[Any, ...], int] = {}
    problems = []
    for key, line, image in zip(keys, lines, ids):
        if key in seen:
            problems.append(Problem(line, image, f"duplicate row: same as line {seen[key]} (kept and scored)", src))
        else:
            seen[key] = line
    return problems


def _with_sizes(images: dict[str, ImageInfo], sizes: Sizes | None) -> dict[str, ImageInfo]:
    if not sizes:
        return images
    out = {}
    for k, info in images.items():
        if k in sizes and not (info.width and info.height):
            w, h = sizes[k]
            info = ImageInfo(k, w, h, info.patient_id, info.source, info.labels)
        out[k] = info
    return out


def read_predictions(
    path: str | PathLike[str], *, sizes: Sizes | None = None, sidecar: str | PathLike[str] | None | bool = True
) -> Annotations:
    """Read a prediction CSV (``image_id,label,score,x_min,y_min,x_max,y_max``).

    Parameters
    ----------
    path:
        The CSV (or ``.csv.gz``).
    sizes:
        Image sizes ``image_id -> (width, height)`` to check boxes against (overrides the sidecar).
    sidecar:
        ``True`` (default): read ``<stem>.images.csv`` next to ``path`` if it exists; a path: read
        that file; ``False``/``None``: none.

    Returns
    -------
    Annotations
        ``score`` set; ``images`` are the images with rows plus those of the sidecar; ``problems``
        lists unknown labels, bad boxes or scores, duplicate rows, images with no or several
        "No finding" rows, and boxes outside the image.

    Raises
    ------
    ReadError
        The file cannot be read.
    ConfigError
        A required column is missing.
    """
    header, rows = _open_rows(path)
    _require(header, PRED_COLUMNS, path, "prediction")
    src = str(path)
    problems: list[Problem] = []
    images: dict[str, ImageInfo] = {}
    side = sidecar_path(path) if sidecar is True else (Path(sidecar) if sidecar else None)
    if side is not None and side.exists():
        images, side_problems = _read_sidecar(side)
        problems += side_problems
    out: list[tuple[Any, ...]] = []
    keys, lines, ids = [], [], []
    no_finding: Counter[str] = Counter()
    for line, row in enumerate(rows, start=2):
        image = (row.get("image_id") or "").strip()
        label = (row.get("label") or "").strip()
        if not image:
            problems.append(Problem(line, "", "bad row: empty image_id", src))
            continue
        images.setdefault(image, ImageInfo(image))
        if label not in CLASS_IDS:
            problems.append(Problem(line, image, f"unknown label: {label!r} (dropped)", src))
            continue
        score = _number(row.get("score"))
        if score is None:
            problems.append(Problem(line, image, f"bad score: {row.get('score')!r} is not a finite number (dropped)", src))
            continue
        if not 0.0 <= score <= 1.0:
            problems.append(Problem(line, image, f"score outside [0, 1]: {score} (kept)", src))
        box, why = _box(row, label)
        if box is None:
            problems.append(Problem(line, image, f"{why} (dropped)", src))
            continue
        if label == NO_FINDING:
            no_finding[image] += 1
            if box != NO_FINDING_BOX:
                problems.append(Problem(line, image, f"no finding box: 'No finding' with box {list(box)}, expected 0 0 1 1 (kept)", src))
        out.append((image, label, *box, "", score))
        keys.append((image, label, score, *box))
        lines.append(line)
        ids.append(image)
    problems += _duplicates(keys, lines, ids, src)
    scored = {r[0] for r in out}
    for image in sorted(scored):
        n = no_finding[image]
        if n != 1:
            problems.append(Problem(None, image, f"no finding count: {n} 'No finding' rows, expected exactly 1", src))
    table = Annotations.from_rows(_with_sizes(images, sizes), out, problems=problems, name=src)
    extra = check_boxes(table, sizes)
    return table if not extra else Annotations.from_rows(table.images, out, problems=[*problems, *extra], name=src)


def read_truth(path: str | PathLike[str], *, sizes: Sizes | None = None) -> Annotations:
    """Read a truth CSV: ``image_id,label,x_min,y_min,x_max,y_max[,reader]`` or Kaggle's layout.

    Kaggle's ``train.csv`` (``image_id,class_name,class_id,rad_id,...``) is recognised by its
    ``class_name`` column; a ``class_id`` that disagrees with ``class_name`` is a problem.

    Returns
    -------
    Annotations
        ``reader`` set when the file has one (``reader`` or ``rad_id``); every image named in the
        file is in ``images``, also when all its rows were refused.
    """
    header, rows = _open_rows(path)
    kaggle = "class_name" in header
    if kaggle:
        _require(header, _KAGGLE_COLUMNS[:2] + _COORDS, path, "Kaggle train")
        label_col, reader_col = "class_name", "rad_id" if "rad_id" in header else None
    else:
        _require(header, TRUTH_COLUMNS, path, "truth")
        label_col, reader_col = "label", "reader" if "reader" in header else None
    src = str(path)
    problems: list[Problem] = []
    images: dict[str, ImageInfo] = {}
    out: list[tuple[Any, ...]] = []
    keys, lines, ids = [], [], []
    for line, row in enumerate(rows, start=2):
        image = (row.get("image_id") or "").strip()
        label = (row.get(label_col) or "").strip()
        reader = (row.get(reader_col) or "").strip() if reader_col else ""
        if not image:
            problems.append(Problem(line, "", "bad row: empty image_id", src))
            continue
        images.setdefault(image, ImageInfo(image))
        if label not in CLASS_IDS:
            problems.append(Problem(line, image, f"unknown label: {label!r} (dropped)", src))
            continue
        if kaggle and (row.get("class_id") or "").strip():
            cid = _number(row.get("class_id"))
            if cid != CLASS_IDS[label]:
                problems.append(Problem(line, image, f"class id mismatch: {row.get('class_id')!r} for {label!r} (label kept)", src))
        box, why = _box(row, label)
        if box is None:
            problems.append(Problem(line, image, f"{why} (dropped)", src))
            continue
        if label == NO_FINDING and box != NO_FINDING_BOX:
            problems.append(Problem(line, image, f"no finding box: 'No finding' with box {list(box)}, read as 0 0 1 1", src))
            box = NO_FINDING_BOX
        out.append((image, label, *box, reader))
        keys.append((image, label, reader, *box))
        lines.append(line)
        ids.append(image)
    problems += _duplicates(keys, lines, ids, src)
    # An image a reader calls both normal and abnormal is contradictory.
    said: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for image, label, *_, reader in out:
        said[image, reader].add(label == NO_FINDING)
    for (image, reader), kinds in sorted(said.items()):
        if len(kinds) == 2:
            who = f" by reader {reader}" if reader else ""
            problems.append(Problem(None, image, f"contradictory truth: 'No finding' and findings{who} (kept)", src))
    table = Annotations.from_rows(_with_sizes(images, sizes), out, problems=problems, name=src)
    extra = check_boxes(table, sizes)
    return table if not extra else Annotations.from_rows(table.images, out, problems=[*problems, *extra], name=src)

