"""Which images a run is about: one fold of a folds CSV, or an image list.

``thoracic predict`` and ``thoracic evaluate`` take ``--folds FILE --fold K`` (the ``folds.csv`` of
``thoracic dataset split`` / ``dataset export``: ``image_id,group,fold``, read by
:func:`thoracic.data.read_folds`) or ``--image-list FILE`` (one image id or image path per line, as
``dataset export``'s ``val_<k>.txt``; or a CSV with an ``image_id`` column). Both are read by the
rules of every table thoracic reads (:mod:`thoracic.data.tables`): UTF-8 with or without a BOM,
``\\n`` or ``\\r\\n`` line ends, blank lines skipped, fields stripped of surrounding blanks; in a
plain list a line starting with ``#`` is a comment. Paths become ids by
:func:`thoracic.io.image_id` (the file name without a known extension), the id every output uses.

>>> sel = ImageSelection(("b", "a"), "fold 1 of folds.csv")
>>> select_inputs([("x/a.dcm", "a"), ("x/b.dcm", "b"), ("x/c.dcm", "c")], sel)
[('x/a.dcm', 'a'), ('x/b.dcm', 'b')]
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from thoracic.data.splits import read_folds
from thoracic.data.tables import PathLike, _unreadable, open_text, read_csv
from thoracic.errors import ConfigError
from thoracic.io.ids import image_id

__all__ = ["ImageSelection", "examples", "fold_ids", "image_selection", "read_image_list", "select_inputs"]

#: How many ids an error message names.
SHOWN = 5


def examples(ids: Iterable[str], n: int = SHOWN) -> str:
    """The first ``n`` of ``ids`` (sorted), for a message: ``"a, b, c, ..."``.

    >>> examples(["c", "a", "b"], 2)
    'a, b, ...'
    """
    ordered = sorted(ids)
    return ", ".join(ordered[:n]) + (", ..." if len(ordered) > n else "")


@dataclass(frozen=True)
class ImageSelection:
    """The image ids of one fold or list, in file order, each once; ``name`` says where they come from."""

    ids: tuple[str, ...]
    name: str
    _set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_set", frozenset(self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image: object) -> bool:
        return image in self._set


def _unique(ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in ids if i))


def read_image_list(path: PathLike) -> ImageSelection:
    """The ids of an image list: one id or image path per line, or a CSV with an ``image_id`` column.

    Raises
    ------
    ReadError
        The file cannot be read or is not UTF-8.
    ConfigError
        The file lists no image.
    """
    p = Path(path)
    try:
        with open_text(p) as fh:
            lines = [line.strip() for line in fh.read().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise _unreadable(err, p) from err
    lines = [line for line in lines if line and not line.startswith("#")]
    header = [h.strip() for h in next(csv.reader(lines[:1]), [])]
    if "image_id" in header:
        head, rows = read_csv(p, ("image_id",), what="image list")
        col = head.index("image_id")
        ids = _unique(f[col].strip() if col < len(f) else "" for _, f in rows)
    else:
        ids = _unique(image_id(line) for line in lines)
    if not ids:
        raise ConfigError("the image list names no image (one image id or path per line)", path=str(p))
    return ImageSelection(ids, p.name)


def fold_ids(path: PathLike, fold: int) -> ImageSelection:
    """The ids of fold ``fold`` of a folds CSV (``image_id,...,fold``).

    Raises
    ------
    ConfigError
        A required column is missing, a fold is not an integer, or no image is in ``fold`` (the
        message lists the folds the file has).
    """
    folds = read_folds(path)
    ids = _unique(i for i, f in folds.items() if f == fold)
    if not ids:
        have = ", ".join(str(k) for k in sorted(set(folds.values()))) or "none"
        raise ConfigError(f"no image is in fold {fold} (the file's folds: {have})", path=str(path))
    return ImageSelection(ids, f"fold {fold} of {Path(path).name}")


def image_selection(
    *, folds: PathLike | None = None, fold: int | None = None, image_list: PathLike | None = None
) -> ImageSelection | None:
    """The selection of ``--folds FILE --fold K`` or ``--image-list FILE``; ``None`` when neither is given.

    Raises
    ------
    ConfigError
        ``folds`` without ``fold`` or the reverse, or both a fold and an image list.
    """
    if (folds is None) != (fold is None):
        raise ConfigError("--folds FILE and --fold K go together: give both")
    if folds is not None and image_list is not None:
        raise ConfigError("give --folds/--fold or --image-list, not both")
    if folds is not None and fold is not None:
        return fold_ids(folds, fold)
    if image_list is not None:
        return read_image_list(image_list)
    return None


def select_inputs(items: Sequence[tuple[str, str]], selection: ImageSelection) -> list[tuple[str, str]]:
    """The ``(path, image_id)`` inputs whose id is in ``selection``, in input order.

    Raises
    ------
    ConfigError
        Images of the selection have no input file (the message counts them and names a few).
    """
    found: Collection[str] = {i for _, i in items}
    missing = [i for i in selection.ids if i not in found]
    if missing:
        raise ConfigError(
            f"{len(missing)} of the {len(selection)} image(s) of {selection.name} have no input file, e.g. "
            f"{examples(missing)} (an input's id is its file name without the extension); give the files "
            "or folders that hold them, or an --image-list of the images you have"
        )
    return [(path, i) for path, i in items if i in selection]
