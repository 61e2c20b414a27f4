"""Load the VinBigData (VinDr-CXR) Kaggle ``train.csv`` and its image-size table.

``train.csv`` has one row per reader statement: ``image_id, class_name, class_id, rad_id, x_min,
y_min, x_max, y_max`` in original DICOM pixels, three readers per image; "No finding" rows have
empty boxes and become the ``0 0 1 1`` "No finding" row of :class:`Annotations`. The image sizes
come from a meta table (``image_id, width, height, ...``, as read from the DICOM headers), which
also lets boxes be checked against the image; the DICOMs themselves are found in the Kaggle
layout ``train/<image_id>.dicom`` when ``images`` is given.
"""

from __future__ import annotations

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.tables import PathLike, check_box, find_images, parse_float, read_csv, read_image_sizes
from thoracic.errors import ConfigError
from thoracic.labels import CLASS_IDS, LABELS, NO_FINDING, NO_FINDING_BOX

__all__ = ["TRAIN_COLUMNS", "load_vinbigdata"]

TRAIN_COLUMNS = ("image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max")


def load_vinbigdata(
    train_csv: PathLike,
    meta: PathLike | None = None,
    *,
    images: PathLike | None = None,
    name: str = "vinbigdata",
) -> Annotations:
    """Load ``train.csv`` (optionally ``.gz``) into an :class:`Annotations`.

    Parameters
    ----------
    train_csv:
        The Kaggle competition's ``train.csv``.
    meta:
        A table with ``image_id, width, height`` (e.g. ``train_meta.csv.gz``); without it image
        sizes are unknown and boxes are only checked for being non-negative and non-empty.
    images:
        A folder with the images (``train/`` of the Kaggle download, ``<image_id>.dicom``;
        searched recursively, any format thoracic reads); sets each image's ``source``.

    Returns
    -------
    Annotations
        Every image of ``train_csv``; refused rows are in ``problems`` with their line numbers
        (unknown class names, class ids that do not match the name, findings without a box,
        negative, empty or out-of-image boxes, bad sizes in ``meta``).
    """
    sizes: dict[str, tuple[int, int]] = {}
    problems: list[Problem] = []
    if meta is not None:
        sizes, problems = read_image_sizes(meta)
    sources = find_images(images) if images is not None else {}
    header, lines = read_csv(train_csv, TRAIN_COLUMNS, what="VinBigData train")
    col = {c: header.index(c) for c in TRAIN_COLUMNS}
    src = str(train_csv)
    rows: list[tuple] = []
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
        box = [parse_float(f[col[c]]) for c in ("x_min", "y_min", "x_max", "y_max")]
        w, h = sizes.get(iid, (None, None))
        why = check_box(box, w, h)
        if why:
            problems.append(Problem(line, iid, f"{label}: {why}", src))
            continue
        rows.append((iid, label, *box, reader))
    infos = {}
    for iid in seen:
        w, h = sizes.get(iid, (None, None))
        infos[iid] = ImageInfo(iid, w, h, None, sources.get(iid))
    return Annotations.from_rows(infos, rows, problems=problems, name=name)
