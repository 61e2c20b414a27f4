"""De-identified copies of DICOM files, optionally with their de-identified SR, GSPS and SEG.

Each file is de-identified with the DICOM basic application level confidentiality profile
(:func:`thoracic.dicom.deidentify_file`) into ``out/<new SOP Instance UID>.dcm``; with
``results`` the image is also analyzed and its results are written de-identified with the same
salt, so they refer to the de-identified image and share its new study. ``out/deidentify.csv``
(:data:`MANIFEST_COLUMNS`) lists each output with its status, row by row; it never names the
input files (their names may carry patient data). ``out/deidentify.json`` holds the settings: a
folder de-identified with others is refused, so it never mixes kept and replaced UIDs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thoracic._fs import find_inputs
from thoracic.batch.runner import BatchSummary, Manifest, claim_settings
from thoracic.errors import ThoracicError

__all__ = ["DeidentifyConfig", "DeidentifyResult", "DeidentifySummary", "MANIFEST_COLUMNS", "deidentify_files"]

#: The columns of ``deidentify.csv``, in order: the input's number in the run, never its name.
MANIFEST_COLUMNS = ("n", "status", "error", "image", "sr", "gsps", "seg")


@dataclass(frozen=True)
class DeidentifyConfig:
    """Settings of one de-identification run.

    Attributes
    ----------
    keep_uids:
        Keep the original UIDs (the profile's Retain UIDs option).
    results:
        Also analyze each image and write its de-identified SR, GSPS and SEG.
    min_score:
        The SR/GSPS carry every finding scoring at least this (None: the detector's operating
        points, :mod:`thoracic.detect.clinical`).
    threads:
        ONNX Runtime threads of the analyzer (``results``).
    """

    keep_uids: bool = False
    results: bool = False
    min_score: float | None = None
    threads: int = 2


@dataclass(frozen=True)
class DeidentifyResult:
    """The outcome for the ``n``-th input: the written file names (``image``, ``sr``, ``gsps``,
    ``seg``), or the error. The manifest row (:meth:`row`) gives the error without its path."""

    n: int
    files: dict[str, str] = field(default_factory=dict)
    error: ThoracicError | None = None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "failed"

    def row(self) -> dict[str, Any]:
        error = "" if self.error is None else self.error.message  # without the path: it may name the patient
        return {"n": self.n, "status": self.status, "error": error, **self.files}


@dataclass
class DeidentifySummary(BatchSummary):
    manifest: str = ""


def deidentify_files(
    inputs: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: DeidentifyConfig | None = None,
    *,
    salt: str,
    progress: Callable[[DeidentifyResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> DeidentifySummary:
    """De-identify the DICOM files of files and folders into ``out_dir``, with ``deidentify.csv``.

    Parameters
    ----------
    salt:
        The secret behind the pseudonyms and new UIDs: the same salt gives the same ones on every run.
    progress, on_start:
        Called with each result as it completes, and once with ``(to_do, 0)`` before the work starts.

    Raises
    ------
    ThoracicError
        An input does not exist, the inputs hold no file, or the analyzer (``results``) cannot be loaded.
    ConfigError
        ``out_dir`` holds files de-identified with other settings (``deidentify.json``: keep_uids,
        results, min_score; the salt is a secret and is not written anywhere).
    """
    from thoracic.dicom import DEFAULT_MIN_SCORE, deidentify_file

    options = options or DeidentifyConfig()
    files = find_inputs(inputs, empty_ok=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"keep_uids": options.keep_uids, "results": options.results,
                "min_score": DEFAULT_MIN_SCORE if options.min_score is None else options.min_score}
    claim_settings(out / "deidentify.json", settings, "files de-identified with other settings")
    analyzer = None
    if options.results:
        from thoracic.inference.analyzer import Analyzer

        analyzer = Analyzer.load(threads=options.threads)
    summary = DeidentifySummary(total=len(files), manifest=str(out / "deidentify.csv"))
    if on_start:
        on_start(len(files), 0)
    with Manifest(summary.manifest, MANIFEST_COLUMNS).start() as rows:
        for n, path in enumerate(files, 1):
            written: dict[str, str] = {}  # kept when a later step fails
            error: ThoracicError | None = None
            try:
                written["image"] = deidentify_file(path, out, keep_uids=options.keep_uids, salt=salt).name
                if analyzer is not None:
                    written.update(_results(analyzer, path, out, options, salt))
            except ThoracicError as err:
                summary.failed += 1
                error = err
            result = DeidentifyResult(n, written, error)
            rows.write(result.row())
            if progress:
                progress(result)
    return summary


def _results(analyzer: Any, path: str, out: Path, options: DeidentifyConfig, salt: str) -> dict[str, str]:
    from thoracic.dicom import build_results

    analysis = analyzer.analyze(path)
    results = build_results(
        analysis,
        min_score=options.min_score,
        deidentify=True,
        salt=salt,
    )  # the header comes with the analysis: no second read of the file
    return {kind: p.name for kind, p in results.save(out).items()}
