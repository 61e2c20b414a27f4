"""What every batch command shares: the settings file, the manifest, atomic writes, the process pool.

A batch command (``convert``, ``segment``, ``dataset export``, ``predict``, ``deidentify``) reads
many inputs into one output place and must survive being killed, re-run, or fed a broken file:

- :func:`claim_settings`: the settings file beside the outputs (``convert.json``, ...) must hold
  the settings of this run; outputs made with other settings are refused, never mixed;
- :class:`Manifest`: the CSV with one row per input. :meth:`Manifest.resume` splits the inputs
  into those already done (kept) and those to do; :meth:`Manifest.start` rewrites it atomically
  to the kept rows and appends each new row flushed, so a kill loses at most the row being
  written; :meth:`Manifest.rows` drops a row torn by a kill;
- :func:`replacing`, :func:`write_text`, :func:`write_png`: every file is written to a hidden
  temporary file beside it and renamed over it, so no output is ever half-written;
- :func:`run_isolated`: the inputs over all cores, a worker's native crash failing only its input
  (:func:`thoracic._pool.run_tasks`);
- :class:`BatchSummary` and :class:`ManifestRow`: the base of each command's summary and rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from thoracic._fs import replacing, write_text
from thoracic._pool import run_tasks
from thoracic._version import __version__
from thoracic.errors import ConfigError
from thoracic.io.radiograph import ReadConfig
from thoracic.preprocess.chain import Chain

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BatchSummary",
    "ImageBatchConfig",
    "Manifest",
    "ManifestRow",
    "ManifestWriter",
    "claim_settings",
    "read_settings",
    "replacing",
    "run_isolated",
    "settings_differences",
    "write_png",
    "write_text",
]

R = TypeVar("R")
T = TypeVar("T")
Row = dict[str, str]


# --- atomic writes --------------------------------------------------------------------------------
def write_png(path: str | os.PathLike[str], img: np.ndarray, compression: int | None = None,
              text: Mapping[str, str] | None = None) -> None:
    """Write an image as a PNG atomically (:func:`replacing`); ``compression`` 0..9 (None: OpenCV's).

    ``text``: ``tEXt`` chunks (keyword -> Latin-1 text) placed after the header, e.g. the chain
    ``dataset export`` wrote the image through (:data:`thoracic.io.raster.CHAIN_TEXT_KEY`).

    Raises
    ------
    OSError
        OpenCV could not write the file.
    """
    import cv2

    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    with replacing(path, ".png") as tmp:
        if not text:
            if not cv2.imwrite(str(tmp), img, params):
                raise OSError(f"cannot write {path}")
            return
        ok, buf = cv2.imencode(".png", img, params)
        if not ok:
            raise OSError(f"cannot write {path}")
        data = buf.tobytes()
        chunks = b"".join(_png_chunk(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1"))
                          for k, v in text.items())
        head = 8 + 25  # the signature and the IHDR chunk, always first
        try:
            Path(tmp).write_bytes(data[:head] + chunks + data[head:])
        except OSError as err:
            raise OSError(f"cannot write {path} ({err.strerror})") from err


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# --- the settings file ----------------------------------------------------------------------------
def claim_settings(
    path: str | os.PathLike[str], settings: Mapping[str, Any], made_with: str, extra: Mapping[str, Any] | None = None,
    *, advice: str = "use another --out, or delete it to start over",
) -> dict[str, Any]:
    """Check that the settings file ``path`` (beside the outputs) holds ``settings``, then write it.

    The file is ``{"thoracic_version", "settings", **extra}`` (JSON, sorted keys). Resuming
    requires the same settings: outputs made with others are refused, never mixed with new ones.

    Parameters
    ----------
    made_with:
        What the folder holds when the settings differ, for the message: ``"{folder} holds
        {made_with} (see {path}): {what changed}; {advice}"``.

    Returns
    -------
    dict
        The written document.

    Raises
    ------
    ConfigError
        The file holds other settings.
    """
    file = Path(path)
    settings = json.loads(json.dumps(settings))  # as they read back (tuples become lists)
    if file.exists():
        try:
            previous = json.loads(file.read_text()).get("settings")
        except (OSError, ValueError, AttributeError) as err:
            raise ConfigError(f"cannot read the settings file {file} ({err}); delete it to start over") from err
        if previous != settings:
            changed = "; ".join(settings_differences(previous, settings))
            raise ConfigError(
                f"{file.parent} holds {made_with} (see {file}): {changed}; {advice}"
            )
    doc = {"thoracic_version": __version__, **(extra or {}), "settings": settings}
    write_text(file, json.dumps(doc, indent=2, sort_keys=True))
    return doc


def settings_differences(before: Any, now: Any, prefix: str = "") -> list[str]:
    """What changed between two settings documents, one ``"key was A, now B"`` per leaf (dotted keys).

    >>> settings_differences({"conf": 0.01, "read": {"normalize": "window"}, "tta": False},
    ...                      {"conf": 0.25, "read": {"normalize": "minmax"}, "tta": False})
    ['conf was 0.01, now 0.25', "read.normalize was 'window', now 'minmax'"]
    """
    if isinstance(before, Mapping) and isinstance(now, Mapping):
        out: list[str] = []
        for key in sorted(set(before) | set(now), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in before:
                out.append(f"{name} is new ({_show(now[key])})")
            elif key not in now:
                out.append(f"{name} was {_show(before[key])}, now not set")
            else:
                out += settings_differences(before[key], now[key], name)
        return out
    if before == now:
        return []
    return [f"{prefix or 'settings'} was {_show(before)}, now {_show(now)}"]


def _show(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (bool, type(None))) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_settings(read: ReadConfig) -> dict[str, Any]:
    """The reading options that determine output pixels (the target size is the chain's business)."""
    out = asdict(read)
    out.pop("target_size", None)
    return out


@dataclass(frozen=True, kw_only=True)
class ImageBatchConfig:
    """The settings every command that writes images through a chain shares (convert, export).

    Attributes
    ----------
    chain:
        The preprocessing chain the images are written through.
    read:
        How the inputs are read.
    workers:
        Processes writing images (0: one per core).
    png_compression:
        PNG compression level, 0..9.
    """

    chain: Chain
    read: ReadConfig = field(default_factory=ReadConfig)
    workers: int = 0
    png_compression: int = 3

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 = one per core), got {self.workers}")
        if not 0 <= self.png_compression <= 9:
            raise ConfigError(f"PNG compression must be 0..9, got {self.png_compression}")

    def settings(self) -> dict[str, Any]:
        """What determines the written pixels (resuming requires the same)."""
        return {"chain": self.chain.to_dict(), "read": read_settings(self.read)}


# --- the manifest ---------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """The counts every batch run has: its inputs, and how many of them failed."""

    total: int = 0
    failed: int = 0

    @property
    def ok(self) -> bool:
        """No input failed."""
        return self.failed == 0


class ManifestRow:
    """Mixin of the dataclasses that are one manifest row: :meth:`row` writes ``None`` as ``""``."""

    def row(self) -> dict[str, Any]:
        return {k: ("" if v is None else v) for k, v in asdict(self).items()}  # type: ignore[call-overload]


class ManifestWriter:
    """Appends rows to a manifest, flushed per call (see :meth:`Manifest.start`)."""

    def __init__(self, fh: IO[str], columns: Sequence[str]) -> None:
        self._fh = fh
        self.columns = tuple(columns)
        self._writer = csv.DictWriter(fh, fieldnames=list(columns))

    def write(self, *rows: Mapping[str, Any]) -> None:
        """Append ``rows`` (the manifest's columns; a missing one is empty), then flush."""
        self._writer.writerows({k: row.get(k, "") for k in self.columns} for row in rows)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Manifest:
    """The CSV table of a batch with one row per input (or several: predictions), beside its outputs.

    Parameters
    ----------
    path:
        The CSV file.
    columns:
        Its columns, in order.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)

    def rows(self) -> list[Row]:
        """The complete rows, in order, keyed by the file's own header (empty without a file).

        A row torn by a kill (no line end, another number of fields, or an unterminated quote) is
        dropped, never half-kept.
        """
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as fh:
            text = fh.read()
        records: list[list[str]] = []
        torn = not text.endswith("\n")
        try:
            records.extend(csv.reader(io.StringIO(text)))
        except csv.Error:  # the file ends inside a quoted field
            torn = True
        if not records:
            return []
        header, body = records[0], records[1:]
        if torn and body:
            body = body[:-1]
        return [dict(zip(header, r, strict=True)) for r in body if len(r) == len(header)]

    def read(self, key: str) -> dict[str, Row]:
        """``row[key] -> row`` of the complete rows (:meth:`rows`; a later row wins)."""
        return {row[key]: row for row in self.rows() if key in row}

    def resume(
        self, items: Iterable[tuple[str, T]], key: str, done: Callable[[Row], bool]
    ) -> tuple[list[Row], list[T]]:
        """Split ``(key value, item)`` pairs into the rows of the inputs already done and the items to do.

        An input is done when the manifest has a row with its ``key`` value that ``done`` accepts
        (the command's rule: its status, its output files on disk, ...).
        """
        previous = self.read(key)
        keep: list[Row] = []
        todo: list[T] = []
        for value, item in items:
            row = previous.get(value)
            if row is not None and done(row):
                keep.append(row)
            else:
                todo.append(item)
        return keep, todo

    def rewrite(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        """Replace the file, atomically and synced, with the header and ``rows``."""
        with replacing(self.path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(self.columns))
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in self.columns} for row in rows)
            fh.flush()
            os.fsync(fh.fileno())

    def start(self, rows: Iterable[Mapping[str, Any]] = ()) -> ManifestWriter:
        """:meth:`rewrite` the file with ``rows`` (those kept), then open it to append the new ones."""
        self.rewrite(rows)
        return ManifestWriter(self.path.open("a", newline=""), self.columns)


# --- the process pool -----------------------------------------------------------------------------
def run_isolated(
    fn: Callable[..., R], tasks: Sequence[tuple], workers: int, crashed: Callable[[tuple], R]
) -> Iterator[R]:
    """Yield ``fn(*task)`` for every task as it completes, from ``workers`` processes (0: one per
    core; never more than tasks); a task whose process crashes gets ``crashed(task)``
    (:func:`thoracic._pool.run_tasks`)."""
    n = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    return run_tasks(fn, tasks, n, crashed)
