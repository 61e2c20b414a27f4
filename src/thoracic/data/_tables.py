"""Shared helpers of the loaders: opening (gzipped) CSV files, parsing numbers, checking boxes."""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from thoracic.errors import ConfigError, ReadError
from thoracic.io.ids import check_unique_ids

__all__: list[str] = []

PathLike = str | os.PathLike[str]


def open_text(path: PathLike) -> io.TextIOBase:
    """Open a CSV or JSON file for reading text; ``.gz`` files are decompressed."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".gz":
            return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
        return p.open("r", encoding="utf-8-sig", newline="")
    except OSError as err:
        raise ReadError(f"cannot open: {err.strerror or err}", path=str(p)) from err


def read_header(path: PathLike) -> list[str]:
    """The header fields of a CSV file."""
    with open_text(path) as fh:
        try:
            return [h.strip() for h in next(csv.reader(fh))]
        except StopIteration:
            raise ConfigError("empty file; expected a CSV header line", path=str(path)) from None
        except (csv.Error, UnicodeDecodeError, OSError, EOFError) as err:
            raise ReadError(f"not a readable CSV file: {err}", path=str(path)) from err


def read_csv(path: PathLike, required: Sequence[str] = ()) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header and an iterator of ``(line, fields)``; ``line`` is the 1-based file line.

    Raises
    ------
    ConfigError
        When a required column is missing (the message lists the columns found).
    """
    fh = open_text(path)
    reader = csv.reader(fh)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        fh.close()
        raise ConfigError("empty file; expected a CSV header line", path=str(path)) from None
    except (csv.Error, UnicodeDecodeError, OSError, EOFError) as err:
        fh.close()
        raise ReadError(f"not a readable CSV file: {err}", path=str(path)) from err
    missing = [c for c in required if c not in header]
    if missing:
        fh.close()
        raise ConfigError(f"missing column(s) {missing}; found {header}", path=str(path))

    def rows() -> Iterator[tuple[int, list[str]]]:
        with fh:
            try:
                for fields in reader:
                    if not fields or all(not f.strip() for f in fields):
                        continue
                    yield reader.line_num, fields
            except (csv.Error, UnicodeDecodeError, OSError, EOFError) as err:
                raise ReadError(f"line {reader.line_num}: not readable CSV: {err}", path=str(path)) from err

    return header, rows()


def parse_float(text: str) -> float | None:
    """A float, ``None`` for an empty field, ``nan`` for text that is not a number."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse_size(width: str, height: str) -> tuple[int | None, int | None, str | None]:
    """Parse an image size; returns ``(w, h, problem)``."""
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


def check_box(
    box: Sequence[float | None], width: int | None = None, height: int | None = None
) -> str | None:
    """Why a box is refused, or ``None`` when it is valid.

    >>> check_box([0, 0, 10, 10], 8, 20)
    'box (0, 0, 10, 10) extends outside the 8x20 image'
    >>> check_box([5, 5, 2, 9]) is not None, check_box([1, 2, 3, 4]) is None
    (True, True)
    """
    if any(v is None for v in box):
        return "box coordinates missing"
    x0, y0, x1, y1 = (float(v) for v in box)  # type: ignore[arg-type]
    shown = "(" + ", ".join(f"{v:g}" for v in (x0, y0, x1, y1)) + ")"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"box coordinates are not numbers {shown}"
    if min(x0, y0, x1, y1) < 0:
        return f"box {shown} has negative coordinates"
    if x1 <= x0 or y1 <= y0:
        return f"box {shown} is empty or inverted (needs x_min < x_max and y_min < y_max)"
    if width is not None and height is not None and (x1 > width or y1 > height):
        return f"box {shown} extends outside the {width}x{height} image"
    return None


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
