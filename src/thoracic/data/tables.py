"""Reading CSV tables: the one reader of the data-set loaders and of ``thoracic evaluate``.

Rules, the same for every table thoracic reads:

- files are UTF-8 (a byte-order mark is skipped), ``.gz`` (any case) is decompressed, line ends
  may be ``\\n`` or ``\\r\\n``; the first line is the header (names stripped of blanks);
- blank lines and rows whose fields are all empty are skipped; a row's ``line`` is its line in the
  file (the last one when a quoted field spans lines);
- a number (:func:`parse_float`) is a plain decimal with ASCII digits, an optional sign and
  exponent, surrounded by optional blanks: ``3``, `` -2.5 ``, ``1e3``; ``nan`` and ``inf`` are read
  as such, and every caller refuses them where a finite number is needed; ``1,000``, ``1_000``
  and non-ASCII digits are not numbers.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from thoracic.data.annotations import Problem
from thoracic.errors import ConfigError, ReadError
from thoracic.io.ids import check_unique_ids

__all__ = [
    "OUTSIDE",
    "PathLike",
    "box_problem",
    "check_box",
    "clip_box",
    "find_images",
    "open_text",
    "parse_finite",
    "parse_float",
    "parse_size",
    "read_csv",
    "read_header",
    "read_image_sizes",
]

PathLike = str | os.PathLike[str]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


_READ_ERRORS = (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error)


def _unreadable(err: BaseException, path: Path, line: int | None = None) -> ReadError:
    """The :class:`ReadError` for an error met while reading ``path`` (at ``line`` when known)."""
    if isinstance(err, UnicodeDecodeError):
        return ReadError(f"not a UTF-8 text file ({err.reason})", path=str(path))
    if isinstance(err, csv.Error):
        return ReadError(f"{f'line {line}: ' if line else ''}not a readable CSV file: {err}", path=str(path))
    if _is_gzip(path) and isinstance(err, gzip.BadGzipFile | EOFError | zlib.error):
        return ReadError(f"not a valid gzip file ({err})", path=str(path))
    reason = err.strerror if isinstance(err, OSError) and err.strerror else err
    return ReadError(f"cannot read the file ({reason})", path=str(path))


def open_text(path: PathLike) -> io.TextIOBase:
    """Open a CSV or JSON file for reading text; ``.gz`` files are decompressed."""
    p = Path(path)
    try:
        if _is_gzip(p):
            return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
        return p.open("r", encoding="utf-8-sig", newline="")
    except OSError as err:
        raise _unreadable(err, p) from err


def _check_columns(header: Sequence[str], required: Iterable[str], path: PathLike, what: str = "") -> None:
    """Raise :class:`ConfigError` naming the ``required`` columns missing from ``header``."""
    missing = [c for c in required if c not in header]
    if missing:
        kind = f"not a {what} CSV: " if what else ""
        raise ConfigError(f"{kind}missing column(s) {', '.join(missing)} (found: {', '.join(header)})", path=str(path))


def _open_csv(p: Path) -> tuple[io.TextIOBase, Iterator[list[str]], list[str]]:
    """The open file, its CSV reader and the header (the file is closed on any error)."""
    fh = open_text(p)
    reader = csv.reader(fh)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        fh.close()
        raise ConfigError("empty file: expected a CSV header line", path=str(p)) from None
    except _READ_ERRORS as err:
        fh.close()
        raise _unreadable(err, p) from err
    if not any(header):
        fh.close()
        raise ConfigError("the first line is empty: expected a CSV header line", path=str(p))
    return fh, reader, header


def read_csv(
    path: PathLike, required: Sequence[str] = (), *, what: str = ""
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of ``(line, fields)`` (see the module docstring for the rules).

    Parameters
    ----------
    path:
        A CSV file, or ``.csv.gz``.
    required:
        Columns the header must have.
    what:
        The kind of table, for the error message (``"prediction"``: "not a prediction CSV").

    Raises
    ------
    ReadError
        The file cannot be read, is not UTF-8, not gzip although named ``.gz``, or not CSV.
    ConfigError
        The file is empty, its first line is empty, or a required column is missing.
    """
    p = Path(path)
    fh, reader, header = _open_csv(p)
    try:
        _check_columns(header, required, p, what)
    except ConfigError:
        fh.close()
        raise

    def rows() -> Iterator[tuple[int, list[str]]]:
        with fh:
            try:
                for fields in reader:
                    if not fields or all(not f.strip() for f in fields):
                        continue
                    yield reader.line_num, fields  # type: ignore[attr-defined]
            except _READ_ERRORS as err:
                raise _unreadable(err, p, reader.line_num) from err  # type: ignore[attr-defined]

    return header, rows()


def read_header(path: PathLike) -> list[str]:
    """The header fields of a CSV file."""
    fh, _, header = _open_csv(Path(path))
    fh.close()
    return header


def parse_float(text: str | None) -> float | None:
    """A number: ``None`` for an empty field, ``nan`` for text that is not a number.

    ``nan`` and ``inf`` are returned as read (callers needing a finite number refuse them).

    >>> parse_float(" 1e3 "), parse_float(""), parse_float("1,000")
    (1000.0, None, nan)
    """
    text = (text or "").strip()
    if not text:
        return None
    return float(text) if _NUMBER.fullmatch(text) else math.nan


def parse_finite(text: str | None) -> float | None:
    """A finite number, or ``None`` (empty, not a number, NaN or infinite).

    >>> parse_finite("2.5"), parse_finite("inf"), parse_finite("x")
    (2.5, None, None)
    """
    value = parse_float(text)
    return value if value is not None and math.isfinite(value) else None


def parse_size(width: str, height: str) -> tuple[int | None, int | None, str | None]:
    """Parse an image size; returns ``(w, h, problem)``; ``(None, None, None)`` when both are empty."""
    w, h = parse_float(width), parse_float(height)
    if w is None or h is None:
        return None, None, None if (w is None and h is None) else "only one of width/height given"
    if not (math.isfinite(w) and math.isfinite(h)):
        return None, None, f"image size is not a number ({width!r} x {height!r})"
    if w <= 0 or h <= 0:
        return None, None, f"image size must be positive, got {width} x {height}"
    if w != int(w) or h != int(h):
        return None, None, f"image size must be whole pixels, got {width} x {height}"
    return int(w), int(h), None


def read_image_sizes(path: PathLike) -> tuple[dict[str, tuple[int, int]], list[Problem]]:
    """``image_id -> (width, height)`` from a table with ``image_id, width, height`` (more columns allowed).

    E.g. VinBigData's ``train_meta.csv`` (the sizes of the DICOM headers). Returns the sizes and the
    rows refused or doubtful, as problems whose message starts with a kind: ``bad row`` (no image
    id), ``bad size`` (missing, not a number, not positive, not whole pixels), ``duplicate image
    id`` (the first size is kept).
    """
    header, rows = read_csv(path, ("image_id", "width", "height"), what="image size")
    ci, cw, ch = header.index("image_id"), header.index("width"), header.index("height")
    sizes: dict[str, tuple[int, int]] = {}
    problems: list[Problem] = []
    src = str(path)
    for line, f in rows:
        iid, width, height = (f[c].strip() if c < len(f) else "" for c in (ci, cw, ch))
        if not iid:
            problems.append(Problem(line, "", "bad row: empty image_id", src))
            continue
        w, h, why = parse_size(width, height)
        if why or w is None or h is None:
            problems.append(Problem(line, iid, f"bad size: {why or 'image size missing'}", src))
        elif iid not in sizes:
            sizes[iid] = (w, h)
        elif sizes[iid] == (w, h):
            problems.append(Problem(line, iid, "duplicate image id: listed twice", src))
        else:
            problems.append(Problem(line, iid, f"duplicate image id: size {(w, h)} differs from {sizes[iid]}; first kept", src))
    return sizes, problems


#: The :attr:`Problem.kind` of a box that extends outside its image (or has negative coordinates).
OUTSIDE = "outside"


def box_problem(
    box: Sequence[float | None], width: int | None = None, height: int | None = None
) -> tuple[str, str] | None:
    """``(kind, why)`` a box is refused, or ``None`` when it is valid.

    ``kind`` is :data:`OUTSIDE` for a box with negative coordinates or beyond ``width`` x ``height``
    (which :func:`clip_box` can mend), ``""`` for anything else (missing, not numbers, empty).

    >>> box_problem([0, 0, 10, 10], 8, 20)
    ('outside', 'box (0, 0, 10, 10) extends outside the 8x20 image')
    """
    if any(v is None for v in box):
        return "", "box coordinates missing"
    x0, y0, x1, y1 = (float(v) for v in box)  # type: ignore[arg-type]
    shown = "(" + ", ".join(f"{v:g}" for v in (x0, y0, x1, y1)) + ")"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return "", f"box coordinates are not numbers {shown}"
    if x1 <= x0 or y1 <= y0:
        return "", f"box {shown} is empty or inverted (needs x_min < x_max and y_min < y_max)"
    if min(x0, y0, x1, y1) < 0:
        return OUTSIDE, f"box {shown} has negative coordinates"
    if width is not None and height is not None and (x1 > width or y1 > height):
        return OUTSIDE, f"box {shown} extends outside the {width}x{height} image"
    return None


def check_box(
    box: Sequence[float | None], width: int | None = None, height: int | None = None
) -> str | None:
    """Why a box is refused, or ``None`` when it is valid (:func:`box_problem` without the kind).

    >>> check_box([0, 0, 10, 10], 8, 20)
    'box (0, 0, 10, 10) extends outside the 8x20 image'
    >>> check_box([5, 5, 2, 9]) is not None, check_box([1, 2, 3, 4]) is None
    (True, True)
    """
    found = box_problem(box, width, height)
    return found[1] if found else None


def clip_box(box: Sequence[float], width: int | None = None, height: int | None = None) -> list[float]:
    """``box`` clipped to the image: negative coordinates to 0, and to ``width`` x ``height`` when known.

    The result may be empty (a box entirely outside the image); :func:`box_problem` refuses it then.

    >>> clip_box([-3, 5, 120, 40], 100, 50)
    [0.0, 5.0, 100.0, 40.0]
    """
    x0, y0, x1, y1 = (max(0.0, float(v)) for v in box)
    if width is not None and height is not None:
        x0, x1 = min(x0, float(width)), min(x1, float(width))
        y0, y1 = min(y0, float(height)), min(y1, float(height))
    return [x0, y0, x1, y1]


def find_images(folder: PathLike) -> dict[str, str]:
    """Map ``image_id -> path`` for every image file under ``folder`` (recursive).

    Raises
    ------
    DuplicateImageIdError
        Two files share an image id.
    """
    from thoracic._fs import find_inputs

    if not Path(folder).is_dir():
        raise ReadError("not a folder", path=str(folder))
    return check_unique_ids(find_inputs([folder]))
