"""Export an annotation table and its images as a training set: ultralytics YOLO or COCO JSON.

Every image is read and written through a named preprocessing chain
(:mod:`thoracic.preprocess.chain`), the same function prediction calls, and boxes are mapped with
the chain's transform, so the training images and labels are exactly what the model will see.
The chain is written next to the export as ``chain.json``.

Layout of ``out``::

    images/<image_id>.png       8-bit PNG through the chain (its text chunk ``thoracic-chain`` names it)
    labels/<image_id>.txt       YOLO: "class cx cy w h" normalized to the written image;
                                empty for "No finding" images (format "yolo")
    data.yaml                   ultralytics data set: path, train, val, nc, names (all 14)
    all.txt                     every labelled image (./images/<id>.png)
    folds.csv, train_<k>.txt, val_<k>.txt, data_<k>.yaml     with folds (data.yaml = fold 0)
    annotations.json            COCO (format "coco"; with folds also coco_train_<k>.json, coco_val_<k>.json)
    chain.json, export.json, manifest.csv

``data.yaml`` always names all 14 VinDr findings with their Kaggle ids, also for a data set that
covers fewer (NIH covers 7), so detectors trained on different data can be fused by name.
Without folds, ``train`` and ``val`` both list every image (give folds for a real validation).

Images with findings but without boxes (NIH report labels) are not negatives: by default they are
skipped; ``unboxed="include"`` writes them to ``images/`` and lists them in ``unboxed.txt``, but
never in the train/val lists (ultralytics would take an image without boxes as a negative); in
COCO they are listed with ``"boxes_annotated": false``. Images without a file are reported as
``missing`` in the manifest. Unreadable images are reported as ``failed`` and do not stop the
export; running it again resumes (written images are kept when the settings are the same).

When an image file has another size than the table says (a resized copy, e.g. the 1024-px PNGs
often used for VinBigData), boxes are scaled from the table's size to the file's size first; the
aspect ratio must agree within 1 %.

Boxes are never clipped silently: a box that extends outside its image (the table's size, or the
file's when the table has none) fails its image, unless ``clip=True``, which clips it to the image
and counts it in ``ExportSummary.clipped``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thoracic._version import __version__
from thoracic.batch.runner import (
    BatchSummary,
    ImageBatchConfig,
    Manifest,
    claim_settings,
    run_isolated,
    write_png,
    write_text,
)
from thoracic.data.annotations import Annotations
from thoracic.data.coco import coco_document
from thoracic.data.fusion import image_groups
from thoracic.data.tables import PathLike, find_images
from thoracic.errors import ConfigError, ThoracicError, internal_error_message
from thoracic.io.radiograph import ReadConfig
from thoracic.io.raster import CHAIN_TEXT_KEY, chain_text
from thoracic.labels import CLASS_IDS, FINDINGS
from thoracic.preprocess.chain import Chain, get_chain
from thoracic.transform import Affine

__all__ = [
    "EXPORT_FORMATS",
    "ExportConfig",
    "ExportSummary",
    "MANIFEST_COLUMNS",
    "export_dataset",
    "read_export_manifest",
    "yolo_names_yaml",
]

EXPORT_FORMATS = ("coco", "yolo")
UNBOXED = ("include", "skip")
MANIFEST_COLUMNS = (
    "image_id", "source", "status", "error", "kind", "width", "height",
    "out_file", "out_width", "out_height", "sx", "sy", "tx", "ty",
)


@dataclass(frozen=True, kw_only=True)
class ExportConfig(ImageBatchConfig):
    """Settings of one export (written to ``export.json``).

    Attributes
    ----------
    format:
        ``"yolo"`` or ``"coco"``.
    chain:
        The preprocessing chain (a :class:`Chain`, a shipped name or a spec).
    unboxed:
        ``"skip"`` (default) or ``"include"`` images that have findings but no boxes.
    clip:
        Clip boxes that extend outside their image to it (counted in ``ExportSummary.clipped``);
        by default such a box fails its image.

    and the ``read``, ``workers`` and ``png_compression`` of every :class:`ImageBatchConfig`.
    """

    format: str = "yolo"
    chain: Chain = field(default_factory=lambda: get_chain("yolo-512-clahe"))
    unboxed: str = "skip"
    clip: bool = False

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError.unknown("export format", self.format, EXPORT_FORMATS)
        if self.unboxed not in UNBOXED:
            raise ConfigError.unknown("unboxed policy", self.unboxed, UNBOXED)
        object.__setattr__(self, "chain", get_chain(self.chain))
        super().__post_init__()


@dataclass
class ExportSummary(BatchSummary):
    """Counts of one export run (``failed``: unreadable images and images with boxes outside them;
    ``missing`` ones do not count; ``clipped``: boxes clipped into their image with ``clip=True``)."""

    written: int = 0
    resumed: int = 0
    missing: int = 0
    unboxed_skipped: int = 0
    labelled: int = 0
    boxes: int = 0
    clipped: int = 0
    out: str = ""
    errors: list[str] = field(default_factory=list)


def yolo_names_yaml() -> str:
    """The ``nc``/``names`` block of every data.yaml: all 14 findings by Kaggle id.

    >>> print(yolo_names_yaml().splitlines()[:3])
    ['nc: 14', 'names:', '  0: "Aortic enlargement"']
    """
    lines = [f"nc: {len(FINDINGS)}", "names:"]
    lines += [f"  {i}: {json.dumps(name)}" for i, name in enumerate(FINDINGS)]
    return "\n".join(lines) + "\n"


def _data_yaml(out: Path, train: str, val: str, note: str) -> str:
    return (
        f"# {note}\n# written by thoracic {__version__}; preprocessing chain: chain.json\n"
        f"path: {json.dumps(str(out.resolve()))}\ntrain: {json.dumps(train)}\nval: {json.dumps(val)}\n" + yolo_names_yaml()
    )


# --- image writing (worker processes) -----------------------------------------------------------
def _write_one(
    source: str, iid: str, out_dir: str, chain_dict: dict, read: ReadConfig, compression: int,
    size: tuple[int, int] | None, kind: str,
) -> dict[str, Any]:
    """Worker: read through the chain, write the PNG, return a manifest row. Never raises."""
    row: dict[str, Any] = {"image_id": iid, "source": source, "kind": kind}
    try:
        chain = Chain.from_dict(chain_dict)
        prepared = chain.load(source, read, image_id=iid)
        rg = prepared.radiograph
        W, H = rg.original_width, rg.original_height
        pre = Affine.identity()
        if size is not None and (size[0], size[1]) != (W, H):
            if abs((W / size[0]) / (H / size[1]) - 1) > 0.01:
                raise ConfigError(f"the file is {W}x{H} but the table says {size[0]}x{size[1]} (another aspect ratio)")
            pre = Affine(W / size[0], H / size[1])
        img = prepared.to_uint8()
        out_file = f"images/{iid}.png"
        write_png(Path(out_dir) / out_file, img, compression, {CHAIN_TEXT_KEY: chain_text(chain.name, chain.spec())})
        t = pre.then(prepared.transform)
        h, w = img.shape[:2]
        row.update(status="ok", error="", width=W, height=H, out_file=out_file, out_width=w, out_height=h,
                   sx=repr(t.sx), sy=repr(t.sy), tx=repr(t.tx), ty=repr(t.ty))
    except ThoracicError as err:
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - one bad file never stops the export
        row.update(status="failed", error=internal_error_message(err))
    return row


def _crashed(task: tuple) -> dict[str, Any]:
    return {"image_id": task[1], "source": task[0], "kind": task[7], "status": "failed",
            "error": "a worker process crashed while this file was being read"}


def read_export_manifest(path: PathLike) -> dict[str, dict[str, str]]:
    """``image_id -> manifest row`` of an export (empty when there is none)."""
    return Manifest(path, MANIFEST_COLUMNS).read("image_id")


def _transform(row: Mapping[str, str]) -> Affine:
    return Affine(float(row["sx"]), float(row["sy"]), float(row["tx"]), float(row["ty"]))


# --- the export -----------------------------------------------------------------------------------
def export_dataset(
    ann: Annotations,
    out: PathLike,
    options: ExportConfig | None = None,
    *,
    images: PathLike | None = None,
    folds: Mapping[str, int] | None = None,
    progress: Callable[[Mapping[str, Any]], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ExportSummary:
    """Write ``ann`` and its images to ``out`` (see the module docstring for the layout).

    Parameters
    ----------
    images:
        Folder searched (recursively) for ``<image_id>.<ext>``; images not found there use their
        ``ImageInfo.source``.
    folds:
        ``image_id -> fold`` (from :func:`thoracic.data.kfold_split`): writes per-fold lists.
    progress, on_start:
        Called with each manifest row as an image completes, and once with ``(to_write, resumed)``.

    Raises
    ------
    ConfigError
        ``out`` holds an export made with another chain or other reading options.
    DuplicateImageIdError
        Two files in ``images`` share an image id.
    """
    options = options or ExportConfig()
    out_dir = Path(out)
    found = find_images(images) if images is not None else {}
    groups = image_groups(ann)
    finding = ann.is_finding

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    settings_file = out_dir / "export.json"
    meta = claim_settings(settings_file, options.settings(), "an export made with another chain or reading options")
    write_text(out_dir / "chain.json", options.chain.to_json() + "\n")

    manifest = Manifest(out_dir / "manifest.csv", MANIFEST_COLUMNS)
    previous_rows = manifest.read("image_id")
    summary = ExportSummary(total=len(ann.images), out=str(out_dir))
    rows: dict[str, dict[str, Any]] = {}
    todo: list[tuple] = []
    for iid in sorted(ann.images):
        info = ann.images[iid]
        kind = "labelled" if iid in groups else "unboxed"
        if kind == "unboxed" and options.unboxed == "skip":
            summary.unboxed_skipped += 1
            continue
        source = found.get(iid) or info.source
        if not source or not Path(source).is_file():
            rows[iid] = {"image_id": iid, "source": source or "", "status": "missing", "kind": kind,
                         "error": "no image file found for this id"}
            continue
        prev = previous_rows.get(iid)
        if prev and prev.get("status") == "ok" and prev.get("source") == source and (out_dir / prev["out_file"]).is_file():
            rows[iid] = {**prev, "kind": kind}
            summary.resumed += 1
            continue
        size = (info.width, info.height) if info.width and info.height else None
        todo.append((source, iid, str(out_dir), options.chain.to_dict(), options.read, options.png_compression, size, kind))
    if on_start:
        on_start(len(todo), summary.resumed)
    for row in run_isolated(_write_one, todo, options.workers, _crashed):
        rows[row["image_id"]] = row
        if progress:
            progress(row)

    ann, summary.clipped = _fit_boxes(ann, rows, groups, finding, clip=options.clip)
    manifest.rewrite(rows[iid] for iid in sorted(rows))  # sorted, complete

    written: dict[str, tuple[str, int, int, Affine]] = {}
    unboxed: dict[str, tuple[str, int, int, Affine]] = {}
    for iid, row in rows.items():
        status = row.get("status")
        if status == "missing":
            summary.missing += 1
            summary.errors.append(f"{iid}: {row.get('error')}")
            continue
        if status != "ok":
            summary.failed += 1
            summary.errors.append(f"{iid}: {row.get('error')}")
            continue
        entry = (str(row["out_file"]), int(row["out_width"]), int(row["out_height"]), _transform(row))
        (written if row["kind"] == "labelled" else unboxed)[iid] = entry
    summary.written = len(written) + len(unboxed) - summary.resumed

    # labels ----------------------------------------------------------------------------------
    summary.labelled = len(written)
    if options.format == "yolo":
        summary.boxes = _write_yolo(ann, out_dir, written, groups, finding)
    else:
        summary.boxes = _write_coco(ann, out_dir, written, unboxed, folds)
    _write_lists(out_dir, written, unboxed, folds, ann)
    meta["summary"] = {k: v for k, v in asdict(summary).items() if k != "errors"}
    meta["format"] = options.format
    meta["unboxed"] = options.unboxed
    meta["table"] = ann.name
    write_text(settings_file, json.dumps(meta, indent=2, sort_keys=True))
    return summary


def _fit_boxes(
    ann: Annotations, rows: dict[str, dict[str, Any]], groups: Mapping[str, np.ndarray], finding: np.ndarray, *, clip: bool,
) -> tuple[Annotations, int]:
    """Boxes outside their image: clipped (``clip``) or their image's row marked failed; the table and the count clipped.

    The image's size is the table's, or the file's when the table has none (in the table's pixels
    either way).
    """
    boxes = ann.boxes
    clipped = 0
    for iid, row in rows.items():
        idx = groups.get(iid)
        if row.get("status") != "ok" or idx is None:
            continue
        idx = idx[finding[idx]]
        if not len(idx):
            continue
        info = ann.images[iid]
        w, h = (info.width, info.height) if info.width and info.height else (int(row["width"]), int(row["height"]))
        b = boxes[idx]
        out = (b < 0).any(axis=1) | (b[:, 2] > w) | (b[:, 3] > h)
        if not out.any():
            continue
        if not clip:
            first = ", ".join(f"{v:g}" for v in b[out][0])
            row.update(status="failed", error=(
                f"{int(out.sum())} box(es) extend outside the {w}x{h} image, e.g. ({first}); "
                "fix the table, or clip them (--clip)"))
            continue
        if boxes is ann.boxes:
            boxes = ann.boxes.copy()
        boxes[idx] = np.clip(b, 0, [w, h, w, h])
        clipped += int(out.sum())
    if boxes is ann.boxes:
        return ann, 0
    return Annotations(ann.images, ann.image_id, ann.label, boxes, ann.reader, ann.score, ann.problems, ann.name,
                       ann.clipped), clipped


def _write_yolo(
    ann: Annotations, out_dir: Path, written: Mapping[str, tuple[str, int, int, Affine]],
    groups: Mapping[str, np.ndarray], finding: np.ndarray,
) -> int:
    labels_dir = out_dir / "labels"
    labels_dir.mkdir(exist_ok=True)
    n = 0
    for iid, (_, w, h, t) in sorted(written.items()):
        idx = groups.get(iid, np.zeros(0, dtype=int))
        idx = idx[finding[idx]]
        lines = []
        if len(idx):
            b = t.apply_boxes(ann.boxes[idx])
            b = np.clip(b / [w, h, w, h], 0.0, 1.0)  # only float error: boxes were checked in-image
            for i, (x0, y0, x1, y1) in zip(idx, b, strict=True):
                lines.append(f"{CLASS_IDS[ann.label[i]]} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
        n += len(lines)
        (labels_dir / f"{iid}.txt").write_text("".join(line + "\n" for line in lines))
    return n


def _write_coco(
    ann: Annotations, out_dir: Path, written: Mapping[str, tuple[str, int, int, Affine]],
    unboxed: Mapping[str, tuple[str, int, int, Affine]], folds: Mapping[str, int] | None,
) -> int:
    doc = coco_document(ann, written, unboxed=unboxed)
    (out_dir / "annotations.json").write_text(json.dumps(doc))
    if folds:
        for k in sorted(set(folds.values())):
            for part, keep in (("train", lambda f, k=k: f != k), ("val", lambda f, k=k: f == k)):
                sel = {i: v for i, v in written.items() if i in folds and keep(folds[i])}
                (out_dir / f"coco_{part}_{k}.json").write_text(json.dumps(coco_document(ann, sel)))
    return len(doc["annotations"])


def _write_lists(
    out_dir: Path, written: Mapping[str, tuple[str, int, int, Affine]],
    unboxed: Mapping[str, tuple[str, int, int, Affine]], folds: Mapping[str, int] | None, ann: Annotations,
) -> None:
    def lst(name: str, ids) -> str:
        (out_dir / name).write_text("".join(f"./{written[i][0]}\n" for i in sorted(ids)))
        return name

    lst("all.txt", written)
    (out_dir / "unboxed.txt").write_text("".join(f"./{unboxed[i][0]}\n" for i in sorted(unboxed)))
    if not folds:
        (out_dir / "data.yaml").write_text(_data_yaml(out_dir, "all.txt", "all.txt", "no folds: train = val = every image"))
        return
    from thoracic.data.splits import write_folds

    write_folds({i: f for i, f in folds.items() if i in ann.images}, ann, out_dir / "folds.csv")
    ks = sorted(set(folds.values()))
    for k in ks:
        tr = lst(f"train_{k}.txt", [i for i in written if i in folds and folds[i] != k])
        va = lst(f"val_{k}.txt", [i for i in written if folds.get(i) == k])
        text = _data_yaml(out_dir, tr, va, f"fold {k} of {len(ks)}: validate on fold {k}, train on the others")
        (out_dir / f"data_{k}.yaml").write_text(text)
        if k == ks[0]:
            (out_dir / "data.yaml").write_text(text)
