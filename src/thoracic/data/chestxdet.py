"""ChestX-Det radiologists' boxes on NIH images: a second reader beside NIH's own boxes.

ChestX-Det (Deepwise AI Lab; annotations Apache-2.0, repository ``Deepwise-AILab/ChestX-Det-Dataset``)
re-annotated 3,578 NIH ChestX-ray14 images in 13 categories, three board-certified radiologists per
image. ``../shared/data/nih/chestxdet_boxes.csv`` holds its boxes on the NIH images of thoracic's
NIH set (``image, finding, x_min, y_min, x_max, y_max[, chestxdet_image, name_match]``, pixels of
the 1024x1024 NIH images; an image ChestX-Det found normal has one ``No finding`` row with empty
coordinates).

:func:`load_chestxdet` adds them to an NIH table (:func:`thoracic.data.load_nih`) as a second
reader: NIH's rows get the reader ``"nih"``, ChestX-Det's ``"chestxdet"``; images, patients (and so
the patient-grouped folds) and image-level labels are NIH's. Fuse the two per class with
:func:`thoracic.data.fuse_readers` (``thoracic dataset export`` and ``train cv`` do, with WBF,
whenever an image has two readers): a box both readers drew scores 1.0, a box one drew 0.5.

Categories map to VinDr names by :data:`CHESTXDET_TO_VINDR`. Two have no VinDr class
(:data:`CHESTXDET_WITHOUT_VINDR`: "Diffuse Nodule", "Emphysema"): their rows are left out (they are
not errors; an image with only such boxes is simply not annotated by ChestX-Det). Other unknown
categories, boxes of images not in the NIH table and bad boxes are ``problems`` with their lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from thoracic.data.annotations import Annotations, Problem
from thoracic.data.nih import NIH_SIZE
from thoracic.data.tables import PathLike, check_box, parse_float, read_csv
from thoracic.errors import ConfigError
from thoracic.io.ids import image_id
from thoracic.labels import NO_FINDING, NO_FINDING_BOX

__all__ = ["CHESTXDET_READER", "CHESTXDET_TO_VINDR", "CHESTXDET_WITHOUT_VINDR", "NIH_READER", "load_chestxdet"]

#: Reader names of the two sets of boxes.
NIH_READER = "nih"
CHESTXDET_READER = "chestxdet"

#: ChestX-Det categories to VinDr names. Fracture becomes "Other lesion" (VinDr has no fracture
#: class; its "Other lesion" gathers such findings).
CHESTXDET_TO_VINDR: Mapping[str, str] = MappingProxyType(
    {
        "Atelectasis": "Atelectasis",
        "Calcification": "Calcification",
        "Cardiomegaly": "Cardiomegaly",
        "Consolidation": "Consolidation",
        "Effusion": "Pleural effusion",
        "Fibrosis": "Pulmonary fibrosis",
        "Fracture": "Other lesion",
        "Mass": "Nodule/Mass",
        "Nodule": "Nodule/Mass",
        "Pleural Thickening": "Pleural thickening",
        "Pneumothorax": "Pneumothorax",
    }
)
#: ChestX-Det categories no VinDr class matches: their rows are left out.
CHESTXDET_WITHOUT_VINDR: tuple[str, ...] = ("Diffuse Nodule", "Emphysema")

_COLUMNS = ("image", "finding", "x_min", "y_min", "x_max", "y_max")


def load_chestxdet(boxes_csv: PathLike, nih: Annotations, *, name: str | None = None) -> Annotations:
    """NIH's table with ChestX-Det's boxes added as a second reader (see the module docstring).

    Parameters
    ----------
    boxes_csv:
        ``chestxdet_boxes.csv`` (``image, finding, x_min, y_min, x_max, y_max``; ``.gz`` accepted).
    nih:
        The NIH table of the same images (:func:`thoracic.data.load_nih`); its rows become reader
        ``"nih"`` (rows already named keep their reader).
    name:
        The table's name (default: NIH's, with ``+chestxdet``).

    Returns
    -------
    Annotations
        NIH's images and rows, and ChestX-Det's rows (reader ``"chestxdet"``); NIH's problems and
        the refused ChestX-Det rows in ``problems``.
    """
    header, lines = read_csv(boxes_csv, _COLUMNS, what="ChestX-Det boxes")
    ci, cf, *coords = (header.index(c) for c in _COLUMNS)
    src = str(boxes_csv)
    problems: list[Problem] = list(nih.problems)
    rows: list[tuple] = [
        (iid, lab, x0, y0, x1, y1, reader or NIH_READER, score) for iid, lab, x0, y0, x1, y1, reader, score in nih.rows()
    ]
    normal: dict[str, int] = {}
    boxed: set[str] = set()
    for line, f in lines:
        if len(f) <= max(ci, cf, *coords):
            problems.append(Problem(line, f[0] if f else "", f"expected {len(header)} fields, got {len(f)}", src))
            continue
        iid, finding = image_id(f[ci].strip()), f[cf].strip()
        if iid not in nih.images:
            problems.append(Problem(line, iid, "ChestX-Det box of an image that is not in the NIH table", src))
            continue
        if finding.lower() == NO_FINDING.lower():
            normal.setdefault(iid, line)
            continue
        if finding in CHESTXDET_WITHOUT_VINDR:
            continue
        if finding not in CHESTXDET_TO_VINDR:
            known = (*CHESTXDET_TO_VINDR, *CHESTXDET_WITHOUT_VINDR, NO_FINDING)
            problems.append(Problem(line, iid, str(ConfigError.unknown("ChestX-Det finding", finding, known)), src))
            continue
        box = [parse_float(f[c]) for c in coords]
        why = check_box(box, NIH_SIZE, NIH_SIZE)
        if why:
            problems.append(Problem(line, iid, f"{finding}: {why}", src))
            continue
        rows.append((iid, CHESTXDET_TO_VINDR[finding], *box, CHESTXDET_READER))
        boxed.add(iid)
    for iid, line in normal.items():
        if iid in boxed:
            problems.append(Problem(line, iid, "'No finding' row of an image ChestX-Det drew boxes on", src))
        else:
            rows.append((iid, NO_FINDING, *NO_FINDING_BOX, CHESTXDET_READER))
    return Annotations.from_rows(nih.images, rows, problems=problems,
                                 name=name if name is not None else f"{nih.name or 'nih'}+chestxdet")
