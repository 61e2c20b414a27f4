"""File-system helpers every batch command shares: finding inputs, sidecar names, atomic writes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path

from thoracic.errors import ConfigError, ThoracicError

__all__ = ["IGNORED_SUFFIXES", "find_inputs", "no_inputs_message", "replacing", "sidecar_path", "write_text"]

#: Files in input folders that are clearly not images and are not reported as failures.
IGNORED_SUFFIXES = frozenset(
    {".csv", ".txt", ".json", ".md", ".html", ".htm", ".yaml", ".yml", ".xml", ".log", ".py", ".zip", ".gz", ".pdf"}
)


def find_inputs(inputs: Iterable[str | os.PathLike[str]], exclude: str | os.PathLike[str] | None = None,
                *, empty_ok: bool = True) -> list[str]:
    """Expand files and folders (recursively, sorted) into the list of files to read, each file once.

    Hidden files and obvious non-images (csv, txt, json, ...) inside folders are skipped; anything
    else is tried, so broken or mislabelled files are reported instead of silently ignored.
    Files named explicitly are always tried. A file reached twice (named twice, or named and in a
    folder named too, or through a linked folder) under one name is listed once, where it was
    first reached.

    Raises
    ------
    ThoracicError
        An input does not exist.
    ConfigError
        Nothing was found and ``empty_ok`` is false (the batch commands: a run over no inputs is a
        mistake, not a success).
    """
    inputs = list(inputs)
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                if excluded is not None and Path(root).resolve() == excluded:
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith(".") or Path(name).suffix.lower() in IGNORED_SUFFIXES:
                        continue
                    found.append(str(Path(root) / name))
        elif p.exists():
            found.append(str(p))
        else:
            raise ThoracicError("no such file or folder", path=str(p))
    seen: set[tuple[str, str]] = set()
    unique: list[str] = []
    for f in found:  # one file under one name once (a link with another name is another image id)
        key = (os.path.realpath(f), os.path.basename(f))
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique and not empty_ok:
        raise ConfigError(no_inputs_message(inputs))
    return unique


def no_inputs_message(inputs: Iterable[str | os.PathLike[str]]) -> str:
    """The error message of a run whose ``inputs`` hold no file to read."""
    names = [os.fspath(i) for i in inputs]
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (f"no input files found in {where or 'the inputs given'} (folders are searched recursively; "
            "hidden files and .csv, .txt, .json, ... files in them are skipped)")


def sidecar_path(pred_path: str | PathLike[str]) -> Path:
    """The sidecar ``thoracic predict`` writes beside a predictions CSV (one row per image).

    ``preds.csv`` and ``preds.csv.gz`` -> ``preds.images.csv``; any other name -> its stem
    (``preds.tsv`` -> ``preds.images.csv``). ``thoracic evaluate`` finds it by the same rule.

    >>> sidecar_path("out/preds.csv.gz").as_posix(), sidecar_path("preds.tsv").name
    ('out/preds.images.csv', 'preds.images.csv')
    """
    p = Path(pred_path)
    name = p.name
    stem = name[: -len(".csv.gz")] if name.endswith(".csv.gz") else p.stem
    return p.with_name(stem + ".images.csv")


@contextmanager
def replacing(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A hidden temporary path beside ``path`` (ending in ``suffix``) that replaces ``path`` when the
    block ends without an error; on an error it is removed and ``path`` is left as it was.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     target = Path(folder) / "a.txt"
    ...     with replacing(target) as tmp:
    ...         _ = tmp.write_text("whole")
    ...     print(target.read_text(), [p.name for p in Path(folder).iterdir()])
    whole ['a.txt']
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text)
