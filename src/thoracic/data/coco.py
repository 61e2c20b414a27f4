"""COCO JSON: load a COCO detection file, and build one from an annotation table.

Categories: all 14 VinDr findings, always, with ``id = Kaggle class_id + 1`` (1-14: COCO ids start
at 1 and many detection libraries reserve 0 for the background) and the Kaggle id kept as
``kaggle_id``. "No finding" is not a category: a normal image is an image without annotations.
An image marked ``"boxes_annotated": false`` (thoracic writes this for images that have findings
but no boxes, when asked to include them) has unknown boxes, not none.

Boxes are COCO ``[x, y, width, height]`` in pixels of the image as written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from thoracic.data.annotations import Annotations, ImageInfo, Problem
from thoracic.data.tables import PathLike, check_box, open_text
from thoracic.errors import ConfigError, ReadError
from thoracic.io.ids import image_id as file_image_id
from thoracic.labels import CLASS_IDS, FINDINGS, LABELS, NIH_TO_VINDR, NO_FINDING, NO_FINDING_BOX
from thoracic.transform import Affine

__all__ = ["coco_categories", "coco_document", "load_coco"]


def coco_categories() -> list[dict[str, Any]]:
    """The 14 COCO categories (``id = class_id + 1``).

    >>> coco_categories()[0]
    {'id': 1, 'name': 'Aortic enlargement', 'kaggle_id': 0, 'supercategory': 'finding'}
    """
    return [{"id": i + 1, "name": n, "kaggle_id": i, "supercategory": "finding"} for i, n in enumerate(FINDINGS)]


def load_coco(path: PathLike, *, name: str = "") -> Annotations:
    """Load a COCO detection JSON file.

    Image ids come from ``file_name`` (:func:`thoracic.io.image_id`). Category names must be
    VinDr labels (or NIH box findings, which are mapped). Refused annotations are reported in
    ``problems`` with ``line`` = the annotation's 1-based position in the ``annotations`` list.
    """
    try:
        with open_text(path) as fh:
            doc = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReadError(f"not a JSON file: {err}", path=str(path)) from err
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(doc.get("annotations"), list):
        raise ConfigError("not a COCO detection file: needs 'images' and 'annotations' lists", path=str(path))
    src = str(path)
    problems: list[Problem] = []
    cats: dict[Any, str] = {}
    for c in doc.get("categories", []):
        cats[c.get("id")] = str(c.get("name", ""))
    infos: dict[str, ImageInfo] = {}
    by_coco_id: dict[Any, str] = {}
    unboxed: set[str] = set()
    for k, im in enumerate(doc["images"], start=1):
        fname = str(im.get("file_name", ""))
        iid = str(im.get("image_id_str") or (file_image_id(fname) if fname else im.get("id")))
        w, h = im.get("width"), im.get("height")
        if w is not None and h is not None and not (isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0):
            problems.append(Problem(k, iid, f"image #{k}: image size must be positive, got {w} x {h}", src))
            w = h = None
        if iid in infos:
            problems.append(Problem(k, iid, f"image #{k}: image listed twice", src))
            continue
        infos[iid] = ImageInfo(iid, None if w is None else int(w), None if h is None else int(h), im.get("patient_id"), fname or None)
        by_coco_id[im.get("id")] = iid
        if im.get("boxes_annotated") is False:
            unboxed.add(iid)
    rows: list[tuple] = []
    for k, a in enumerate(doc["annotations"], start=1):
        found = by_coco_id.get(a.get("image_id"))
        if found is None:
            problems.append(Problem(k, str(a.get("image_id")), f"annotation #{k}: unknown image id", src))
            continue
        iid = found
        cname = cats.get(a.get("category_id"), "")
        label = NIH_TO_VINDR.get(cname, cname)
        if label not in CLASS_IDS or label == NO_FINDING:
            problems.append(Problem(k, iid, f"annotation #{k}: " + str(ConfigError.unknown("label", cname or str(a.get("category_id")), LABELS)), src))
            continue
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox)):
            problems.append(Problem(k, iid, f"annotation #{k}: bbox must be [x, y, width, height], got {bbox!r}", src))
            continue
        x, y, bw, bh = (float(v) for v in bbox)
        box = [x, y, x + bw, y + bh]
        info = infos[iid]
        why = check_box(box, info.width, info.height)
        if why:
            problems.append(Problem(k, iid, f"annotation #{k}: {label}: {why}", src))
            continue
        score = a.get("score")
        rows.append((iid, label, *box, str(a.get("reader", "")), math.nan if score is None else float(score)))
    with_rows = {r[0] for r in rows}
    for iid in infos:
        if iid not in with_rows and iid not in unboxed:
            rows.append((iid, NO_FINDING, *NO_FINDING_BOX))
    return Annotations.from_rows(infos, rows, problems=problems, name=name or str(doc.get("info", {}).get("description", "")))


def coco_document(
    ann: Annotations,
    written: Mapping[str, tuple[str, int, int, Affine]],
    *,
    unboxed: Mapping[str, tuple[str, int, int, Affine]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    """A COCO dict for the images in ``written``: ``image_id -> (file_name, width, height, transform)``.

    Each box is mapped with the image's transform (original -> written pixels). ``unboxed``
    images are listed with ``"boxes_annotated": false`` and no annotations.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    order = np.argsort(ann.image_id.astype(str), kind="stable")
    rows_of: dict[str, list[int]] = {}
    for i in order:
        rows_of.setdefault(str(ann.image_id[i]), []).append(int(i))
    all_imgs = [(k, v, True) for k, v in written.items()] + [(k, v, False) for k, v in (unboxed or {}).items()]
    for n, (iid, (fname, w, h, t), boxed) in enumerate(sorted(all_imgs, key=lambda x: x[0]), start=1):
        info = ann.images.get(iid)
        entry: dict[str, Any] = {"id": n, "file_name": fname, "width": int(w), "height": int(h), "image_id_str": iid}
        if info is not None and info.patient_id is not None:
            entry["patient_id"] = info.patient_id
        if not boxed:
            entry["boxes_annotated"] = False
        images.append(entry)
        if not boxed:
            continue
        idx = [i for i in rows_of.get(iid, []) if ann.label[i] != NO_FINDING]
        if not idx:
            continue
        boxes = t.apply_boxes(ann.boxes[idx])
        for i, b in zip(idx, boxes, strict=True):
            a: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": n,
                "category_id": CLASS_IDS[ann.label[i]] + 1,
                "bbox": [round(float(b[0]), 3), round(float(b[1]), 3), round(float(b[2] - b[0]), 3), round(float(b[3] - b[1]), 3)],
                "area": round(float((b[2] - b[0]) * (b[3] - b[1])), 3),
                "iscrowd": 0,
            }
            if ann.reader[i]:
                a["reader"] = str(ann.reader[i])
            if not math.isnan(ann.score[i]):
                a["score"] = float(ann.score[i])
            annotations.append(a)
    return {
        "info": {"description": description or ann.name, "version": "1.0"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
