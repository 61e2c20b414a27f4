"""Image sizes read from the files' headers, with a cache so a second run reads nothing.

A data set's boxes are checked against its images' sizes and its statistics need them; VinDr-CXR
ships none beside ``train.csv``. :func:`header_sizes` reads them from the files themselves
(:func:`thoracic.io.image_size`: DICOM ``Rows``/``Columns`` without the pixel data, PNG/JPEG/TIFF
headers without decoding) and keeps them in a small CSV cache:

- where: ``<parent>/.thoracic-sizes-<folder>.csv`` beside the images folder (for VinDr-CXR's
  ``train/``: ``.thoracic-sizes-train.csv`` next to ``train.csv``); when that folder is not
  writable, ``$XDG_CACHE_HOME/thoracic/sizes/<folder>-<hash of its path>.csv`` (``~/.cache`` when
  ``XDG_CACHE_HOME`` is not set); when neither is writable, sizes are read every time;
- what: ``path,bytes,mtime_ns,width,height``, ``path`` relative to the images folder; an entry is
  used only while the file's byte size and modification time are unchanged, so a replaced file
  is read again. Deleting the cache is always safe.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from thoracic.data.annotations import Problem
from thoracic.data.tables import PathLike
from thoracic.errors import ThoracicError
from thoracic.io.size import image_size

__all__ = ["SIZE_CACHE_COLUMNS", "SizeScan", "header_sizes", "size_cache_paths"]

SIZE_CACHE_COLUMNS = ("path", "bytes", "mtime_ns", "width", "height")
_THREADS = 8


@dataclass
class SizeScan:
    """What :func:`header_sizes` found.

    Attributes
    ----------
    sizes:
        ``image_id -> (width, height)`` of every file whose size is known.
    problems:
        Files whose header could not be read (``kind`` ``"unreadable image"``).
    read, cached:
        How many sizes were read from headers now, and how many came from the cache.
    cache:
        The cache file used, or ``None`` when none could be written.
    """

    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    read: int = 0
    cached: int = 0
    cache: Path | None = None


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thoracic" / "sizes"


def size_cache_paths(images: PathLike) -> tuple[Path, Path]:
    """The two places of the cache of the images under ``images``: beside the folder, and the user's cache."""
    folder = Path(images).resolve()
    digest = hashlib.sha1(str(folder).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return folder.parent / f".thoracic-sizes-{folder.name}.csv", _user_cache_dir() / f"{folder.name}-{digest}.csv"


def _read_cache(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """``relative path -> (bytes, mtime_ns, width, height)``; an unreadable or damaged cache is empty."""
    entries: dict[str, tuple[int, int, int, int]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            if tuple(next(reader, ())) != SIZE_CACHE_COLUMNS:
                return {}
            for row in reader:
                if len(row) == len(SIZE_CACHE_COLUMNS):
                    try:
                        entries[row[0]] = (int(row[1]), int(row[2]), int(row[3]), int(row[4]))
                    except ValueError:
                        continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    return entries


def _write_cache(path: Path, entries: Mapping[str, tuple[int, int, int, int]]) -> bool:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(SIZE_CACHE_COLUMNS)
            w.writerows([k, *v] for k, v in sorted(entries.items()))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def _key(path: str, folder: Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(folder).as_posix()
    except ValueError:
        return str(p)


def header_sizes(
    sources: Mapping[str, str], images: PathLike, *, ids: Iterable[str] | None = None, cache: bool = True
) -> SizeScan:
    """Sizes of the files ``sources`` (``image_id -> path``, found under ``images``), from their headers.

    Parameters
    ----------
    sources:
        The files, by image id (as :func:`thoracic.data.tables.find_images` returns them).
    images:
        Their folder: it names the cache (see the module docstring).
    ids:
        Only these images (default: every one of ``sources``).
    cache:
        Use and update the cache (default); ``False`` reads every header.
    """
    folder = Path(images).resolve()
    wanted = [(i, sources[i]) for i in (sources if ids is None else ids) if i in sources]
    scan = SizeScan()
    beside, user = size_cache_paths(folder)
    entries: dict[str, tuple[int, int, int, int]] = {}
    if cache:
        for candidate in (beside, user):
            if candidate.is_file():
                entries = _read_cache(candidate)
                scan.cache = candidate
                break
    todo: list[tuple[str, str, str, int, int]] = []
    for iid, path in wanted:
        try:
            st = os.stat(path)
        except OSError as err:
            scan.problems.append(Problem(None, iid, f"cannot read the image size ({err.strerror or err})", path, "unreadable image"))
            continue
        key = _key(path, folder)
        hit = entries.get(key)
        if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
            scan.sizes[iid] = (hit[2], hit[3])
            scan.cached += 1
        else:
            todo.append((iid, path, key, st.st_size, st.st_mtime_ns))

    def one(task: tuple[str, str, str, int, int]) -> tuple[int, int] | ThoracicError:
        try:
            return image_size(task[1])
        except ThoracicError as err:
            return err

    with ThreadPoolExecutor(max_workers=max(1, min(_THREADS, len(todo)))) as pool:
        for (iid, path, key, nbytes, mtime), got in zip(todo, pool.map(one, todo), strict=True):
            if isinstance(got, ThoracicError):
                scan.problems.append(Problem(None, iid, f"cannot read the image size: {got.message}", path, "unreadable image"))
                continue
            scan.sizes[iid] = got
            entries[key] = (nbytes, mtime, *got)
            scan.read += 1
    if cache and scan.read:
        for candidate in dict.fromkeys((scan.cache or beside, beside, user)):
            if _write_cache(candidate, entries):
                scan.cache = candidate
                break
        else:
            scan.cache = None
    return scan
