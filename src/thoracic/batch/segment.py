"""Batch lung segmentation of files and folders: mask PNGs, optional overlays and ``masks.csv``.

Resumes (inputs already segmented with the same settings and model are skipped), never stops on
one bad file, and writes one ``masks.csv`` row per input: ``ok``, ``refused`` (not a frontal
chest radiograph, as ``predict`` says it) or ``failed``. Runs in one process: the ONNX session
already uses the cores.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from thoracic._fs import find_inputs
from thoracic.anatomy.overlay import overlay
from thoracic.anatomy.roi import RoiConfig
from thoracic.anatomy.segmenter import LungSegmenter
from thoracic.batch.runner import BatchSummary, Manifest, ManifestRow, claim_settings, read_settings, write_png
from thoracic.errors import ConfigError, NotChestRadiographError, ThoracicError, internal_error_message
from thoracic.io.ids import check_unique_ids
from thoracic.io.radiograph import ReadConfig
from thoracic.preprocess.intensity import to_uint8

__all__ = ["MASK_COLUMNS", "SegmentConfig", "SegmentResult", "SegmentSummary", "segment_files"]

#: The columns of ``masks.csv``, in order.
MASK_COLUMNS = (
    "image_id",
    "status",
    "error",
    "width",
    "height",
    "lung_fraction",
    "roi_x_min",
    "roi_y_min",
    "roi_x_max",
    "roi_y_max",
    "fallback",
    "flags",
)


@dataclass(frozen=True)
class SegmentConfig:
    """Settings of one segmentation run (written to ``segment.json`` next to ``masks.csv``)."""

    roi: RoiConfig = field(default_factory=RoiConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    overlays: bool = False
    crop_size: int | None = None  # also write crops/<image_id>.png: the lung square at this size
    model: str | None = None  # None: the shipped model
    threads: int = 2

    def __post_init__(self) -> None:
        if self.crop_size is not None and self.crop_size < 1:
            raise ConfigError(f"crop size must be at least 1 pixel, got {self.crop_size}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")

    def settings(self, model_file: str) -> dict[str, Any]:
        digest = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()
        return {"roi": asdict(self.roi), "read": read_settings(self.read), "overlays": self.overlays,
                "crop_size": self.crop_size, "model_sha256": digest}


@dataclass(frozen=True)
class SegmentResult(ManifestRow):
    """One ``masks.csv`` row. ``fallback`` is empty, or why the ROI is the full image."""

    image_id: str
    status: str  # ok | refused (not a frontal chest radiograph) | failed
    error: str = ""
    width: int | None = None
    height: int | None = None
    lung_fraction: float | None = None
    roi_x_min: int | None = None
    roi_y_min: int | None = None
    roi_x_max: int | None = None
    roi_y_max: int | None = None
    fallback: str = ""
    flags: str = ""  # what --allow-non-chest let through (``content:pattern=...``), ``;``-separated


@dataclass
class SegmentSummary(BatchSummary):
    segmented: int = 0
    refused: int = 0  # not a frontal chest radiograph (also counted in ``failed``)
    fallbacks: int = 0
    skipped: int = 0
    table: str = ""


def _segment_one(seg: LungSegmenter, source: str, image_id: str, out: Path, options: SegmentConfig) -> SegmentResult:
    from thoracic.io.read import read

    try:
        rg = read(source, seg.contract.chain.read_options(options.read), image_id=image_id)
        lungs = seg.segment(rg, options.roi)
        write_png(out / "masks" / f"{image_id}.png", lungs.mask)
        if options.overlays:
            rgb = overlay(rg, lungs)
            write_png(out / "overlays" / f"{image_id}.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if options.crop_size:
            crop = seg.crop(rg, options.crop_size, lungs=lungs).radiograph.pixels
            write_png(out / "crops" / f"{image_id}.png", to_uint8(crop))
        x0, y0, x1, y1 = lungs.roi.box
        return SegmentResult(
            image_id=image_id,
            status="ok",
            width=rg.original_width,
            height=rg.original_height,
            lung_fraction=round(lungs.lung_fraction, 5),
            roi_x_min=x0,
            roi_y_min=y0,
            roi_x_max=x1,
            roi_y_max=y1,
            fallback=lungs.roi.fallback_reason,
            flags=";".join(rg.flags),
        )
    except NotChestRadiographError as err:
        return SegmentResult(image_id=image_id, status="refused", error=f"{type(err).__name__}: {err}")
    except ThoracicError as err:
        return SegmentResult(image_id=image_id, status="failed", error=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
        return SegmentResult(image_id=image_id, status="failed", error=internal_error_message(err))


def segment_files(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: SegmentConfig | None = None,
    *,
    segmenter: LungSegmenter | None = None,
    progress: Callable[[SegmentResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> SegmentSummary:
    """Segment the lungs of files and folders into ``out_dir``.

    Writes ``masks/<image_id>.png`` (0/255, original size), ``overlays/<image_id>.png`` and
    ``crops/<image_id>.png`` (the lung square, 8-bit, ``crop_size`` square) when asked, ``masks.csv`` (:data:`MASK_COLUMNS`) and ``segment.json`` (the settings).

    Raises
    ------
    DuplicateImageIdError
        Two inputs share an image id (before anything is written).
    ConfigError
        ``out_dir`` holds masks made with other settings or another model, or the inputs hold no file.
    """
    options = options or SegmentConfig()
    seg = segmenter or LungSegmenter.load(options.model, threads=options.threads)
    out = Path(out_dir)
    sources = find_inputs(inputs, exclude=out, empty_ok=False)
    ids = check_unique_ids(sources)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if options.overlays:
        (out / "overlays").mkdir(exist_ok=True)
    if options.crop_size:
        (out / "crops").mkdir(exist_ok=True)
    claim_settings(out / "segment.json", options.settings(seg.path), "masks made with other settings or another model",
                   {"contract": seg.contract.to_dict()})
    table = Manifest(out / "masks.csv", MASK_COLUMNS)

    def done(row: dict[str, str]) -> bool:
        image_id = row["image_id"]
        return (row.get("status") == "ok" and (out / "masks" / f"{image_id}.png").is_file()
                and (not options.overlays or (out / "overlays" / f"{image_id}.png").is_file())
                and (not options.crop_size or (out / "crops" / f"{image_id}.png").is_file()))

    keep, todo = table.resume(((image_id, (source, image_id)) for image_id, source in ids.items()), "image_id", done)
    summary = SegmentSummary(total=len(ids), skipped=len(keep), table=str(table.path))
    if on_start:
        on_start(len(todo), len(keep))
    with table.start(keep) as rows:
        for source, image_id in todo:
            result = _segment_one(seg, source, image_id, out, options)
            rows.write(result.row())
            if result.status != "ok":  # refused or failed: both count as failed (the exit status)
                summary.failed += 1
                summary.refused += result.status == "refused"
            else:
                summary.segmented += 1
                summary.fallbacks += bool(result.fallback)
            if progress:
                progress(result)
    return summary
