"""Batch conversion of radiographs to 8-bit PNGs through a preprocessing chain.

Uses all cores, resumes (files already converted with the same settings are skipped), never stops
on one bad file, and writes ``manifest.csv`` with one row per input.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from thoracic._fs import find_inputs
from thoracic._version import __version__
from thoracic.batch.pool import run_tasks
from thoracic.errors import ConfigError, ThoracicError, internal_error_message
from thoracic.io.ids import check_unique_ids
from thoracic.io.radiograph import ReadOptions
from thoracic.preprocess.chain import Chain, Step

__all__ = [
    "ConvertOptions",
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


@dataclass(frozen=True)
class ConvertOptions:
    """Settings of one conversion run (written to ``convert.json`` next to the manifest)."""

    chain: Chain = field(default_factory=convert_chain)
    read: ReadOptions = field(default_factory=ReadOptions)
    workers: int = 0  # 0: one per core
    png_compression: int = 3

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 = one per core), got {self.workers}")
        if not 0 <= self.png_compression <= 9:
            raise ConfigError(f"PNG compression must be 0..9, got {self.png_compression}")

    def settings(self) -> dict[str, Any]:
        """What determines the output pixels (resuming requires the same)."""
        read = asdict(self.read)
        read.pop("target_size", None)
        return {"chain": self.chain.to_dict(), "read": read}


@dataclass(frozen=True)
class ConvertResult:
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

    def row(self) -> dict[str, Any]:
        return {k: ("" if v is None else v) for k, v in asdict(self).items()}


@dataclass
class ConvertSummary:
    total: int = 0
    converted: int = 0
    flagged: int = 0
    skipped: int = 0
    failed: int = 0
    manifest: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _convert_one(source: str, image_id: str, out_dir: str, chain_dict: dict, read: ReadOptions, compression: int) -> ConvertResult:
    """Worker: read, preprocess, write one PNG. Never raises for bad input."""
    rg = None
    try:
        chain = Chain.from_dict(chain_dict)
        from thoracic.io.read import read as read_file

        rg = read_file(source, chain.read_options(read), image_id=image_id)
        prepared = chain.run(rg)
        img = prepared.to_uint8()
        out_file = f"{image_id}.png"
        final = Path(out_dir) / out_file
        tmp = final.with_name(f".{out_file}.{os.getpid()}.tmp.png")
        if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_PNG_COMPRESSION, compression]):
            raise OSError(f"cannot write {final}")
        os.replace(tmp, final)
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


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {row["source"]: row for row in csv.DictReader(fh)}


def _crashed(task: tuple) -> ConvertResult:
    return ConvertResult(
        source=task[0], image_id=task[1], status="failed", error="the worker process crashed while reading this file"
    )


def convert(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: ConvertOptions | None = None,
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
        ``out_dir`` holds a conversion made with other settings.
    """
    options = options or ConvertOptions()
    out = Path(out_dir)
    sources = find_inputs(inputs, exclude=out)
    ids = check_unique_ids(sources)  # id -> source
    out.mkdir(parents=True, exist_ok=True)
    settings = options.settings()
    settings_file = out / "convert.json"
    if settings_file.exists():
        previous = json.loads(settings_file.read_text()).get("settings")
        if previous != json.loads(json.dumps(settings)):
            raise ConfigError(
                f"{out} holds a conversion made with other settings (see {settings_file}); "
                "use another --out folder, or delete it to start over"
            )
    settings_file.write_text(json.dumps({"thoracic_version": __version__, "settings": settings}, indent=2, sort_keys=True))

    manifest = out / "manifest.csv"
    previous_rows = _read_manifest(manifest)
    keep: list[dict[str, str]] = []
    todo: list[tuple] = []
    for image_id, source in ids.items():
        row = previous_rows.get(source)
        if row and row.get("status") in ("ok", "flagged") and (out / row.get("out_file", "")).is_file():
            keep.append(row)
        else:
            todo.append((source, image_id, str(out), options.chain.to_dict(), options.read, options.png_compression))
    summary = ConvertSummary(total=len(ids), skipped=len(keep), manifest=str(manifest))
    if on_start:
        on_start(len(todo), len(keep))

    tmp = manifest.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in MANIFEST_COLUMNS} for row in keep)
    os.replace(tmp, manifest)

    workers = options.workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    results = run_tasks(_convert_one, todo, workers, _crashed)
    with manifest.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        for result in results:
            writer.writerow(result.row())
            fh.flush()
            if result.status == "failed":
                summary.failed += 1
            else:
                summary.converted += 1
                summary.flagged += result.status == "flagged"
            if progress:
                progress(result)
    return summary
