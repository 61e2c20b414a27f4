"""Load NIH ChestX-ray14 labels and boxes, in two layouts.

- thoracic's layout (``../shared/data/nih``): ``images.csv`` (``image, patient_id, follow_up, age,
  sex, view, finding_labels, ...``) and ``boxes.csv`` (``image, finding, x_min, y_min, x_max,
  y_max``);
- NIH's own download: ``Data_Entry_2017.csv`` (``Image Index, Finding Labels, Follow-up #,
  Patient ID, ...``) and ``BBox_List_2017.csv`` (``Image Index, Finding Label, Bbox [x, y, w, h]``:
  note width and height, not corners).

:func:`load_nih` recognizes either from the headers. Boxes are in pixels of NIH's 1024x1024
images; their findings are mapped to VinDr names (:data:`~thoracic.labels.NIH_TO_VINDR`). Images
labelled "No Finding" are negatives and get one "No finding" row. Images whose labels name a
finding but that have no box are NOT negatives: they stay in ``images`` with their NIH labels in
``ImageInfo.labels`` and no rows (export skips them unless asked to include them unlabelled).
"""

from __future__ import annotations

from pathlib import Path

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.tables import (
    PathLike,
    check_box,
    find_images,
    parse_float,
    read_csv,
    read_header,
)
from thoracic.errors import ConfigError
from thoracic.io.ids import image_id
from thoracic.labels import NIH_TO_VINDR, NO_FINDING, NO_FINDING_BOX

__all__ = ["NIH_NO_FINDING", "NIH_SIZE", "load_nih"]

#: NIH ChestX-ray14 images are 1024x1024 pixels; boxes are in that grid.
NIH_SIZE = 1024
#: NIH's image-level label for negatives.
NIH_NO_FINDING = "No Finding"

_OURS = (("image", "finding_labels", "patient_id"), ("image", "finding", "x_min", "y_min", "x_max", "y_max"))
_NIH = (("Image Index", "Finding Labels", "Patient ID"), ("Image Index", "Finding Label"))


def _layout(images_csv: PathLike) -> str:
    header = read_header(images_csv)
    if all(c in header for c in _OURS[0]):
        return "thoracic"
    if all(c in header for c in _NIH[0]):
        return "nih"
    raise ConfigError(
        f"neither thoracic's images.csv ({', '.join(_OURS[0])}) nor NIH's Data_Entry_2017.csv "
        f"({', '.join(_NIH[0])}); found columns {header}",
        path=str(images_csv),
    )


def load_nih(
    images_csv: PathLike,
    boxes_csv: PathLike,
    *,
    images: PathLike | None = None,
    name: str = "nih",
) -> Annotations:
    """Load NIH labels and boxes (either layout, recognized from the headers).

    Parameters
    ----------
    images_csv:
        ``images.csv`` or ``Data_Entry_2017.csv`` (``.gz`` accepted): every image, its patient and
        its image-level labels.
    boxes_csv:
        ``boxes.csv`` or ``BBox_List_2017.csv``.
    images:
        The image folder; sets each image's ``source``. Default: an ``images/`` folder next to
        ``images_csv`` when there is one.

    Returns
    -------
    Annotations
        Refused rows (unknown findings, boxes of images not in ``images_csv``, boxes on images
        labelled "No Finding", negative, empty or out-of-image boxes) are in ``problems``.
    """
    layout = _layout(images_csv)
    if images is None and (Path(images_csv).parent / "images").is_dir():
        images = Path(images_csv).parent / "images"
    sources = find_images(images) if images is not None else {}
    cols_img, cols_box = _OURS if layout == "thoracic" else _NIH
    problems: list[Problem] = []

    header, lines = read_csv(images_csv, cols_img, what="NIH images")
    ci, cl, cp = (header.index(c) for c in cols_img)  # image, labels, patient
    src = str(images_csv)
    infos: dict[str, ImageInfo] = {}
    for line, f in lines:
        if len(f) <= max(ci, cl, cp):
            problems.append(Problem(line, f[0] if f else "", f"expected {len(header)} fields, got {len(f)}", src))
            continue
        iid = image_id(f[ci].strip())
        if iid in infos:
            problems.append(Problem(line, iid, "image listed twice", src))
            continue
        labels = tuple(x.strip() for x in f[cl].split("|") if x.strip())
        infos[iid] = ImageInfo(iid, NIH_SIZE, NIH_SIZE, f[cp].strip() or None, sources.get(iid), labels)

    header, lines = read_csv(boxes_csv, cols_box, what="NIH boxes")
    src = str(boxes_csv)
    ci, cf = header.index(cols_box[0]), header.index(cols_box[1])
    if layout == "thoracic":
        coords = [header.index(c) for c in cols_box[2:]]
    else:  # "Bbox [x", "y", "w", "h]": the four fields after the finding label
        coords = [cf + 1, cf + 2, cf + 3, cf + 4]
    rows: list[tuple] = []
    boxed: set[str] = set()
    for line, f in lines:
        if len(f) <= max(ci, cf, *coords):
            problems.append(Problem(line, f[0] if f else "", f"expected at least {max(coords) + 1} fields, got {len(f)}", src))
            continue
        iid = image_id(f[ci].strip())
        finding = f[cf].strip()
        if iid not in infos:
            problems.append(Problem(line, iid, f"box of an image that is not in {Path(images_csv).name}", src))
            continue
        if finding not in NIH_TO_VINDR:
            problems.append(Problem(line, iid, str(ConfigError.unknown("NIH finding", finding, NIH_TO_VINDR)), src))
            continue
        if NIH_NO_FINDING in infos[iid].labels:
            problems.append(Problem(line, iid, f"{finding} box on an image labelled {NIH_NO_FINDING!r}", src))
            continue
        v = [parse_float(f[c]) for c in coords]
        box = v if layout == "thoracic" else [
            v[0], v[1], None if None in v[:3] else v[0] + v[2], None if None in (v[1], v[3]) else v[1] + v[3]  # type: ignore[operator]
        ]
        why = check_box(box, NIH_SIZE, NIH_SIZE)
        if why:
            problems.append(Problem(line, iid, f"{finding}: {why}", src))
            continue
        rows.append((iid, NIH_TO_VINDR[finding], *box))
        boxed.add(iid)
    for iid, info in infos.items():
        if NIH_NO_FINDING in info.labels and iid not in boxed:
            rows.append((iid, NO_FINDING, *NO_FINDING_BOX))
    return Annotations.from_rows(infos, rows, problems=problems, name=name)
