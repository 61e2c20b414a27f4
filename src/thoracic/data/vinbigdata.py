"""Load the VinBigData (VinDr-CXR) Kaggle ``train.csv``, its images and their sizes.

``train.csv`` has one row per reader statement: ``image_id, class_name, class_id, rad_id, x_min,
y_min, x_max, y_max`` in original DICOM pixels, three readers per image; "No finding" rows have
empty boxes and become the ``0 0 1 1`` "No finding" row of :class:`Annotations`.

The images are found in the Kaggle layout, ``train/<image_id>.dicom`` beside ``train.csv`` (or in
the folder given as ``images``). Their sizes come from a meta table when one is given
(``image_id, width, height, ...``, e.g. ``train_meta.csv``), else from the files' own headers
(:mod:`thoracic.data.sizes`, cached); with sizes known every box is checked against its image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.sizes import SizeScan, header_sizes
from thoracic.data.tables import (
    OUTSIDE,
    PathLike,
    box_problem,
    clip_box,
    find_images,
    parse_float,
    read_csv,
    read_image_sizes,
)
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS, NO_FINDING, NO_FINDING_BOX

__all__ = ["TRAIN_COLUMNS", "default_images", "load_vinbigdata"]

TRAIN_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")


def default_images(train_csv: PathLike) -> Path | None:
    """The Kaggle layout's image folder, ``train/`` beside ``train.csv``, when there is one."""
    folder = Path(train_csv).parent / "train"
    return folder if folder.is_dir() else None


def load_vinbigdata(
    train_csv: PathLike,
    meta: PathLike | None = None,
    *,
    images: PathLike | None = None,
    name: str = "vinbigdata",
    clip: bool = False,
    size_cache: bool = True,
    on_sizes: Callable[[SizeScan], None] | None = None,
) -> Annotations:
    """Load ``train.csv`` (optionally ``.gz``) into an :class:`Annotations`.

    Parameters
    ----------
    train_csv:
        The Kaggle competition's ``train.csv``.
    meta:
        A table with ``image_id, width, height`` (e.g. ``train_meta.csv.gz``); its sizes win over
        the files' headers. Optional: without it sizes are read from the image files.
    images:
        A folder with the images (searched recursively, any format thoracic reads); by default
        ``train/`` beside ``train_csv`` (:func:`default_images`). Sets each image's ``source``;
        without a folder, files and sizes (unless ``meta``) are unknown and boxes are only checked
        for being non-negative and non-empty.
    clip:
        Clip boxes that extend outside their image (or have negative coordinates) to it, and list
        them in ``clipped``, instead of refusing them.
    size_cache:
        Keep the sizes read from headers in a cache (:mod:`thoracic.data.sizes`).
    on_sizes:
        Called with the :class:`~thoracic.data.sizes.SizeScan` after sizes were read from headers.

    Returns
    -------
    Annotations
        Every image of ``train_csv``; refused rows are in ``problems`` with their line numbers
        (unknown class names, class ids that do not match the name, findings without a box,
        empty boxes, and, without ``clip``, boxes outside the image: ``kind`` ``"outside"``),
        as are bad sizes in ``meta``, images whose file is not in the folder (``kind``
        ``"missing image"``) and files whose header cannot be read.
    """
    sizes: dict[str, tuple[int, int]] = {}
    problems: list[Problem] = []
    if meta is not None:
        sizes, problems = read_image_sizes(meta)
    folder = images if images is not None else default_images(train_csv)
    sources = find_images(folder) if folder is not None else {}
    header, lines = read_csv(train_csv, TRAIN_COLUMNS, what="VinBigData train")
    col = {c: header.index(c) for c in TRAIN_COLUMNS}
    src = str(train_csv)
    rows: list[tuple] = []
    boxed: list[tuple[int, str, str, list[float | None], str]] = []
    seen: dict[str, None] = {}
    for line, f in lines:
        if len(f) < len(header):
            problems.append(Problem(line, f[0].strip() if f else "", f"expected {len(header)} fields, got {len(f)}", src))
            continue
        iid = f[col["image_id"]].strip()
        if not iid:
            problems.append(Problem(line, "", "empty image_id", src))
            continue
        seen.setdefault(iid, None)
        label = f[col["class_name"]].strip()
        if label not in CLASS_IDS:
            problems.append(Problem(line, iid, str(ConfigError.unknown("label", label, LABELS)), src))
            continue
        cid = f[col["class_id"]].strip()
        if cid and cid != str(CLASS_IDS[label]):
            problems.append(Problem(line, iid, f"class_id {cid} does not match {label!r} (id {CLASS_IDS[label]})", src))
            continue
        reader = f[col["rad_id"]].strip()
        if label == NO_FINDING:
            rows.append((iid, label, *NO_FINDING_BOX, reader))
            continue
        boxed.append((line, iid, label, [parse_float(f[col[c]]) for c in ("x_min", "y_min", "x_max", "y_max")], reader))
    if folder is not None:
        problems += [Problem(None, iid, f"no image file for this id in {folder}", src, "missing image")
                     for iid in seen if iid not in sources]
        scan = header_sizes(sources, folder, ids=[i for i in seen if i not in sizes], cache=size_cache)
        problems += scan.problems
        sizes = {**scan.sizes, **sizes}
        if on_sizes is not None:
            on_sizes(scan)
    clipped: list[Problem] = []
    for line, iid, label, coords, reader in boxed:
        box: list[float | None] | list[float] = coords
        w, h = sizes.get(iid, (None, None))
        found = box_problem(box, w, h)
        if found and found[0] == OUTSIDE and clip:
            fitted = clip_box(box, w, h)  # type: ignore[arg-type]  # finite numbers: box_problem said OUTSIDE
            if box_problem(fitted, w, h) is None:
                clipped.append(Problem(line, iid, f"{label}: {found[1]}: clipped to {_shown(fitted)}", src, OUTSIDE))
                box, found = fitted, None
            else:
                found = (OUTSIDE, f"{found[1]}, entirely: nothing left to clip")
        if found:
            problems.append(Problem(line, iid, f"{label}: {found[1]}", src, found[0]))
            continue
        rows.append((iid, label, *box, reader))
    infos = {}
    for iid in seen:
        w, h = sizes.get(iid, (None, None))
        infos[iid] = ImageInfo(iid, w, h, None, sources.get(iid))
    return Annotations.from_rows(infos, rows, problems=problems, name=name, clipped=clipped)


def _shown(box: list[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"
