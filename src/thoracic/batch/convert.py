"""Batch conversion of radiographs to 8-bit PNGs through a preprocessing chain.

Uses all cores, resumes (files already converted with the same settings are skipped), never stops
on one bad file, and writes ``manifest.csv`` with one row per input.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from thoracic._fs import find_inputs
from thoracic.batch.runner import (
    BatchSummary,
    ImageBatchConfig,
    Manifest,
    ManifestRow,
    claim_settings,
    run_isolated,
    write_png,
)
from thoracic.errors import ThoracicError, internal_error_message
from thoracic.io.ids import check_unique_ids
from thoracic.io.radiograph import ReadConfig
from thoracic.preprocess.chain import Chain, Step

__all__ = [
    "ConvertConfig",
    "ConvertResult",
    "ConvertSummary",
    "MANIFEST_COLUMNS",
    "convert",
    "convert_chain",
]

MANIFEST_COLUMNS = (
    "source",
    "image_id",
    "status",
    "error",
    "width",
    "height",
    "photometric",
    "transfer_syntax",
    "window_center",
    "window_width",
    "out_file",
    "out_width",
    "out_height",
    "scale",
)


def convert_chain(size: int | None = None, normalize: str = "window", clahe: bool = False) -> Chain:
    """The chain ``thoracic convert`` runs for its flags: resize (Lanczos), then optional CLAHE."""
    steps: list[Step] = []
    if size is not None:
        steps.append(Step.of("resize_longest", size=int(size), interpolation="lanczos"))
    if clahe:
        steps.append(Step.of("clahe", clip_limit=2.0, tile_grid=8))
    name = "convert" + (f"-{size}" if size else "") + ("-clahe" if clahe else "")
    return Chain(name, tuple(steps), normalize, "thoracic convert")


@dataclass(frozen=True, kw_only=True)
class ConvertConfig(ImageBatchConfig):
    """Settings of one conversion run (written to ``convert.json`` next to the manifest); the
    chain defaults to :func:`convert_chain`'s, the file window at full size."""

    chain: Chain = field(default_factory=convert_chain)


@dataclass(frozen=True)
class ConvertResult(ManifestRow):
    """One manifest row."""

    source: str
    image_id: str
    status: str  # ok | flagged | failed
    error: str = ""
    width: int | None = None
    height: int | None = None
    photometric: str = ""
    transfer_syntax: str = ""
    window_center: float | None = None
    window_width: float | None = None
    out_file: str = ""
    out_width: int | None = None
    out_height: int | None = None
    scale: float | None = None


@dataclass
class ConvertSummary(BatchSummary):
    converted: int = 0
    flagged: int = 0
    skipped: int = 0
    manifest: str = ""


def _convert_one(source: str, image_id: str, out_dir: str, chain_dict: dict, read: ReadConfig, compression: int) -> ConvertResult:
    """Worker: read, preprocess, write one PNG. Never raises for bad input."""
    rg = None
    try:
        chain = Chain.from_dict(chain_dict)
        from thoracic.io.read import read as read_file

        rg = read_file(source, chain.read_options(read), image_id=image_id)
        prepared = chain.run(rg)
        img = prepared.to_uint8()
        out_file = f"{image_id}.png"
        write_png(Path(out_dir) / out_file, img, compression)
        h, w = img.shape[:2]
        return ConvertResult(
            source=source,
            image_id=image_id,
            status="flagged" if rg.flags else "ok",
            error=("accepted with --allow-non-chest: " + ", ".join(rg.flags)) if rg.flags else "",
            width=rg.original_width,
            height=rg.original_height,
            photometric=rg.photometric,
            transfer_syntax=rg.transfer_syntax,
            window_center=None if rg.window_center is None else round(rg.window_center, 4),
            window_width=None if rg.window_width is None else round(rg.window_width, 4),
            out_file=out_file,
            out_width=w,
            out_height=h,
            scale=round(w / rg.original_width, 6),
        )
    except ThoracicError as err:
        return ConvertResult(source=source, image_id=image_id, status="failed", error=f"{type(err).__name__}: {err}")
    except Exception as err:  # noqa: BLE001 - one bad file never stops the batch
        return ConvertResult(
            source=source, image_id=image_id, status="failed", error=internal_error_message(err)
        )


def _crashed(task: tuple) -> ConvertResult:
    return ConvertResult(
        source=task[0], image_id=task[1], status="failed", error="the worker process crashed while reading this file"
    )


def convert(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: ConvertConfig | None = None,
    *,
    progress: Callable[[ConvertResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ConvertSummary:
    """Convert files and folders to ``<image_id>.png`` in ``out_dir`` with ``manifest.csv``.

    Parameters
    ----------
    progress:
        Called with each result as it completes (the CLI drives its progress bar with it).
    on_start:
        Called once with ``(to_convert, skipped)`` before the work starts.

    Raises
    ------
    DuplicateImageIdError
        Two inputs share an image id (before anything is written).
    ConfigError
        ``out_dir`` holds a conversion made with other settings, or the inputs hold no file.
    """
    options = options or ConvertConfig()
    out = Path(out_dir)
    sources = find_inputs(inputs, exclude=out, empty_ok=False)
    ids = check_unique_ids(sources)  # id -> source
    out.mkdir(parents=True, exist_ok=True)
    claim_settings(out / "convert.json", options.settings(), "a conversion made with other settings")

    manifest = Manifest(out / "manifest.csv", MANIFEST_COLUMNS)
    keep, todo = manifest.resume(
        ((source, (source, image_id, str(out), options.chain.to_dict(), options.read, options.png_compression))
         for image_id, source in ids.items()),
        "source",
        lambda row: row.get("status") in ("ok", "flagged") and (out / row.get("out_file", "")).is_file(),
    )
    summary = ConvertSummary(total=len(ids), skipped=len(keep), manifest=str(manifest.path))
    if on_start:
        on_start(len(todo), len(keep))
    with manifest.start(keep) as rows:
        for result in run_isolated(_convert_one, todo, options.workers, _crashed):
            rows.write(result.row())
            if result.status == "failed":
                summary.failed += 1
            else:
                summary.converted += 1
                summary.flagged += result.status == "flagged"
            if progress:
                progress(result)
    return summary
