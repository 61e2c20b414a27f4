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
``No finding`` rows may have empty coordinates or ``0 0 1 1``. Files are read by
:func:`thoracic.data.tables.read_csv` (``.csv.gz`` too; its rules for numbers and blank rows); image
sizes by :func:`thoracic.data.read_image_sizes`.

Nothing is silently dropped or clipped: every refused or suspicious row becomes a
:class:`~thoracic.data.Problem` whose message starts with a short kind (``"unknown label: ..."``).
Rows that cannot be scored (unknown label, non-numeric or inverted box, bad score) are dropped
*and* listed; rows that can be scored but look wrong (box outside the image, duplicate row) are
kept and listed.

A label map (:func:`read_label_map`: a CSV ``from,to``) renames source labels to the schema
before the rows are checked, or drops them deliberately (an empty ``to``; each such row is listed
as ``dropped by label map``). :func:`unknown_labels` counts the labels of a table's
``unknown label`` problems; ``thoracic evaluate`` refuses to score while there are any.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from thoracic._fs import sidecar_path
from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.tables import parse_finite, parse_size, read_csv, read_header
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS, NO_FINDING, NO_FINDING_BOX

__all__ = [
    "PRED_COLUMNS",
    "TRUTH_COLUMNS",
    "LabelMap",
    "check_boxes",
    "problem_kind",
    "read_label_map",
    "read_predictions",
    "read_truth",
    "unknown_labels",
]

#: Columns of a prediction CSV, in order.
PRED_COLUMNS = ("image_id", "label", "score", "x_min", "y_min", "x_max", "y_max")
#: Required columns of a truth CSV (``reader`` is optional).
TRUTH_COLUMNS = ("image_id", "label", "x_min", "y_min", "x_max", "y_max")
_KAGGLE_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")
_COORDS = ("x_min", "y_min", "x_max", "y_max")

Sizes = Mapping[str, tuple[int, int]]
#: Source label -> schema label, or ``None`` to drop the label's rows (:func:`read_label_map`).
LabelMap = Mapping[str, str | None]

_UNKNOWN = "unknown label"
_MAPPED_AWAY = "dropped by label map"


def problem_kind(problem: Problem) -> str:
    """The kind of a problem: the part of its message before the first colon."""
    return problem.message.split(":", 1)[0]


def read_label_map(path: str | PathLike[str]) -> dict[str, str | None]:
    """Read a label map: a CSV with the columns ``from,to``, one source label a row.

    ``to`` is one of the 14 VinDr findings or ``No finding`` (:data:`thoracic.labels.LABELS`,
    spelled exactly), or empty to drop the rows of ``from`` deliberately. Labels already in the
    schema may be mapped too (renamed or dropped). Blanks around fields are ignored.

    Raises
    ------
    ReadError
        The file cannot be read.
    ConfigError
        A column is missing, a row has no ``from``, a ``to`` is not in the schema, or one ``from``
        is mapped twice to different labels.
    """
    header, rows = read_csv(path, ("from", "to"), what="label map")
    out: dict[str, str | None] = {}
    for line, row in _records(header, rows):
        source, target = row["from"], row["to"]
        where = f"{path}:{line}"
        if not source:
            raise ConfigError(f"{where}: a label map row needs a 'from' label")
        if target and target not in CLASS_IDS:
            err = ConfigError.unknown("label", target, LABELS)
            raise ConfigError(f"{where}: {source!r} is mapped to an {err}") from None
        mapped = target or None
        if source in out and out[source] != mapped:
            raise ConfigError(f"{where}: {source!r} is mapped twice ({out[source]!r} and {mapped!r})")
        out[source] = mapped
    return out


def unknown_labels(table: Annotations) -> Counter[str]:
    """How many rows of each label outside the schema ``table``'s loader refused (its ``unknown label`` problems)."""
    found: Counter[str] = Counter()
    for p in table.problems:
        if problem_kind(p) == _UNKNOWN:
            text = p.message.split(":", 1)[1].rsplit(" (", 1)[0].strip()
            try:
                found[str(ast.literal_eval(text))] += 1
            except (ValueError, SyntaxError):
                found[text] += 1
    return found


def _records(header: list[str], rows: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped field})``; fields missing from a short row are empty."""
    for line, fields in rows:
        yield line, {c: (fields[k].strip() if k < len(fields) else "") for k, c in enumerate(header)}


def _box(row: Mapping[str, str], label: str) -> tuple[tuple[float, float, float, float] | None, str]:
    """The row's box, or ``None`` and why not. "No finding" takes ``0 0 1 1`` when empty."""
    texts = [row.get(c, "") for c in _COORDS]
    if label == NO_FINDING and not any(texts):
        return NO_FINDING_BOX, ""
    values = [parse_finite(t) for t in texts]
    if any(v is None for v in values):
        return None, f"bad box: coordinates must be finite numbers, got {texts}"
    x0, y0, x1, y1 = values  # type: ignore[misc]
    if x1 < x0 or y1 < y0:  # type: ignore[operator]
        return None, f"bad box: need x_min <= x_max and y_min <= y_max, got {texts}"
    return (x0, y0, x1, y1), ""  # type: ignore[return-value]


def _read_sidecar(path: Path) -> tuple[dict[str, ImageInfo], list[Problem]]:
    header, rows = read_csv(path, ("image_id",), what="prediction sidecar")
    infos: dict[str, ImageInfo] = {}
    problems: list[Problem] = []
    for line, row in _records(header, rows):
        image = row["image_id"]
        if not image:
            problems.append(Problem(line, "", "bad row: empty image_id", str(path)))
            continue
        if image in infos:
            problems.append(Problem(line, image, "duplicate image id: listed twice in the sidecar; first kept", str(path)))
            continue
        w, h, _ = parse_size(row.get("width", ""), row.get("height", ""))
        infos[image] = ImageInfo(image, w, h, source=row.get("source") or None)
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


class _Reading:
    """What a reader gathers from one file: images, kept rows, problems, and duplicate rows."""

    def __init__(self, src: str, images: dict[str, ImageInfo], problems: list[Problem],
                 label_map: LabelMap | None = None) -> None:
        self.src = src
        self.images = images
        self.problems = problems
        self.label_map = label_map or {}
        self.rows: list[tuple[Any, ...]] = []
        self.duplicates: list[Problem] = []
        self._first: dict[tuple[Any, ...], int] = {}

    def problem(self, line: int | None, image: str, message: str) -> None:
        self.problems.append(Problem(line, image, message, self.src))

    def labelled(self, line: int, image: str, label: str) -> str | None:
        """Record the row's image; the row's label through the label map, or ``None`` when the row
        has no image id, its label is mapped away or is not in the schema (each a problem)."""
        if not image:
            self.problem(line, "", "bad row: empty image_id")
            return None
        self.images.setdefault(image, ImageInfo(image))
        if label in self.label_map:
            mapped = self.label_map[label]
            if mapped is None:
                self.problem(line, image, f"{_MAPPED_AWAY}: {label!r}")
                return None
            label = mapped
        if label not in CLASS_IDS:
            self.problem(line, image, f"{_UNKNOWN}: {label!r} (dropped)")
            return None
        return label

    def keep(self, line: int, row: tuple[Any, ...], key: tuple[Any, ...]) -> None:
        """Keep ``row``; a row with the same ``key`` as an earlier one is listed as a duplicate."""
        self.rows.append(row)
        if key in self._first:
            self.duplicates.append(Problem(line, row[0], f"duplicate row: same as line {self._first[key]} (kept and scored)", self.src))
        else:
            self._first[key] = line

    def table(self, sizes: Sizes | None) -> Annotations:
        """The table of the kept rows; its problems, then boxes outside their image, are its problems."""
        table = Annotations.from_rows(_with_sizes(self.images, sizes), self.rows, problems=self.problems, name=self.src)
        extra = check_boxes(table, sizes)
        if not extra:
            return table
        return Annotations.from_rows(table.images, self.rows, problems=[*self.problems, *extra], name=self.src)


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
    path: str | PathLike[str], *, sizes: Sizes | None = None, sidecar: str | PathLike[str] | None | bool = True,
    label_map: LabelMap | None = None,
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
    label_map:
        Source label -> schema label, or ``None`` to drop its rows (:func:`read_label_map`).

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
    images: dict[str, ImageInfo] = {}
    problems: list[Problem] = []
    side = sidecar_path(path) if sidecar is True else (Path(sidecar) if sidecar else None)
    if side is not None and side.exists():
        images, problems = _read_sidecar(side)
    header, rows = read_csv(path, PRED_COLUMNS, what="prediction")
    got = _Reading(str(path), images, problems, label_map)
    no_finding: Counter[str] = Counter()
    for line, row in _records(header, rows):
        image = row["image_id"]
        label = got.labelled(line, image, row["label"])
        if label is None:
            continue
        score = parse_finite(row["score"])
        if score is None:
            got.problem(line, image, f"bad score: {row['score']!r} is not a finite number (dropped)")
            continue
        if not 0.0 <= score <= 1.0:
            got.problem(line, image, f"score outside [0, 1]: {score} (kept)")
        box, why = _box(row, label)
        if box is None:
            got.problem(line, image, f"{why} (dropped)")
            continue
        if label == NO_FINDING:
            no_finding[image] += 1
            if box != NO_FINDING_BOX:
                got.problem(line, image, f"no finding box: 'No finding' with box {list(box)}, expected 0 0 1 1 (kept)")
        got.keep(line, (image, label, *box, "", score), (image, label, score, *box))
    got.problems += got.duplicates
    for image in sorted({r[0] for r in got.rows}):
        n = no_finding[image]
        if n != 1:
            got.problem(None, image, f"no finding count: {n} 'No finding' rows, expected exactly 1")
    return got.table(sizes)


def read_truth(path: str | PathLike[str], *, sizes: Sizes | None = None, label_map: LabelMap | None = None) -> Annotations:
    """Read a truth CSV: ``image_id,label,x_min,y_min,x_max,y_max[,reader]`` or Kaggle's layout.

    Kaggle's ``train.csv`` (``image_id,class_name,class_id,rad_id,...``) is recognised by its
    ``class_name`` column; a ``class_id`` that disagrees with ``class_name`` is a problem (not
    checked for a label the ``label_map`` renamed). ``label_map`` as for :func:`read_predictions`.

    Returns
    -------
    Annotations
        ``reader`` set when the file has one (``reader`` or ``rad_id``); every image named in the
        file is in ``images``, also when all its rows were refused, and an image listed on a row
        with neither label nor box (how ``thoracic.data.write_csv`` writes an image without rows,
        e.g. an NIH image whose findings have no boxes) is there without rows, not a problem.
    """
    kaggle = "class_name" in read_header(path)
    if kaggle:
        header, rows = read_csv(path, _KAGGLE_COLUMNS[:2] + _COORDS, what="Kaggle train")
        label_col, reader_col = "class_name", "rad_id" if "rad_id" in header else None
    else:
        header, rows = read_csv(path, TRUTH_COLUMNS, what="truth")
        label_col, reader_col = "label", "reader" if "reader" in header else None
    got = _Reading(str(path), {}, [], label_map)
    for line, row in _records(header, rows):
        image, source = row["image_id"], row[label_col]
        reader = row[reader_col] if reader_col else ""
        if image and not source and not any(row[c] for c in _COORDS):
            got.images.setdefault(image, ImageInfo(image))  # an image listed without rows (as write_csv writes it)
            continue
        label = got.labelled(line, image, source)
        if label is None:
            continue
        if kaggle and row.get("class_id") and label == source and parse_finite(row["class_id"]) != CLASS_IDS[label]:
            got.problem(line, image, f"class id mismatch: {row['class_id']!r} for {label!r} (label kept)")
        box, why = _box(row, label)
        if box is None:
            got.problem(line, image, f"{why} (dropped)")
            continue
        if label == NO_FINDING and box != NO_FINDING_BOX:
            got.problem(line, image, f"no finding box: 'No finding' with box {list(box)}, read as 0 0 1 1")
            box = NO_FINDING_BOX
        got.keep(line, (image, label, *box, reader), (image, label, reader, *box))
    got.problems += got.duplicates
    # An image a reader calls both normal and abnormal is contradictory.
    said: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for image, label, *_, reader in got.rows:
        said[image, reader].add(label == NO_FINDING)
    for (image, reader), kinds in sorted(said.items()):
        if len(kinds) == 2:
            who = f" by reader {reader}" if reader else ""
            got.problem(None, image, f"contradictory truth: 'No finding' and findings{who} (kept)")
    return got.table(sizes)
