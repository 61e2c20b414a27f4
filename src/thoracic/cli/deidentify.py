"""``thoracic deidentify INPUTS... --out DIR``: de-identified copies of DICOM files, optionally with results.

Each DICOM file is de-identified with the DICOM basic application level confidentiality profile
(:func:`thoracic.dicom.deidentify`: pixels unchanged, identifying attributes removed or replaced,
UIDs replaced by salted ``2.25`` UIDs) and written as ``DIR/<new SOP Instance UID>.dcm``. With
``--results`` the image is also analyzed and its SR, GSPS and SEG are written de-identified with
the same salt, so they refer to the de-identified image and share its new study.

The salt is the secret behind the pseudonyms: the same salt gives the same new UIDs and patient
pseudonyms on every run (so later exports join up); without one a random salt is used and the
mapping holds within this run only. ``DIR/deidentify.csv`` lists each output with its status; it
never names the input files (their names may carry patient data). Exit status 1 if any input failed.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from thoracic.errors import ConfigError, MissingDependencyError, ThoracicError

__all__ = ["MANIFEST_COLUMNS", "add_parser", "run"]

MANIFEST_COLUMNS = ("n", "status", "error", "image", "sr", "gsps", "seg")
SALT_ENV = "THORACIC_DEID_SALT"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``deidentify`` to the ``thoracic`` subcommands."""
    p = subparsers.add_parser("deidentify", help="de-identified copies of DICOM files (basic profile), optionally with SR/GSPS/SEG")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--salt-file", default=None,
                   help=f"file whose first line is the secret salt (else ${SALT_ENV}, else a random one for this run)")
    p.add_argument("--keep-uids", action="store_true", help="keep the original UIDs (the profile's Retain UIDs option)")
    p.add_argument("--results", action="store_true", help="also analyze each image and write its de-identified SR, GSPS and SEG")
    p.add_argument("--min-score", type=float, default=None, help="findings in the SR/GSPS scoring at least this (default: thoracic.dicom's)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for --results (default 2)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def _salt(args: argparse.Namespace) -> tuple[str, str]:
    if args.salt_file:
        try:
            lines = Path(args.salt_file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise ConfigError(f"cannot read the salt file {args.salt_file}: {err.strerror}") from err
        salt = lines[0].strip() if lines else ""
        if not salt:
            raise ConfigError(f"the salt file {args.salt_file} is empty")
        return salt, "file"
    env = os.environ.get(SALT_ENV, "").strip()
    if env:
        return env, "environment"
    return secrets.token_hex(32), "random"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from thoracic._fs import find_inputs
    from thoracic.dicom import deidentify_file

    if args.results and args.keep_uids:
        raise ConfigError("--results refers to the image by its new UIDs; use it without --keep-uids")
    if args.results and importlib.util.find_spec("highdicom") is None:  # before any file is written
        raise MissingDependencyError.for_feature("thoracic deidentify --results", "highdicom", "dicom")
    salt, origin = _salt(args)
    if origin == "random":
        print(f"note: no --salt-file or ${SALT_ENV}: pseudonyms and new UIDs hold within this run only", file=sys.stderr)
    files = find_inputs(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    analyzer = None
    if args.results:
        from thoracic.inference.analyzer import Analyzer

        analyzer = Analyzer.load(threads=args.threads)
    failed = 0
    manifest = out / "deidentify.csv"
    with manifest.open("w", newline="") as fh, tqdm(files, unit="img", desc="deidentify", disable=args.quiet or None) as bar:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS))
        writer.writeheader()
        for n, path in enumerate(bar, 1):
            row = {"n": n, "status": "ok", "error": "", "image": "", "sr": "", "gsps": "", "seg": ""}
            try:
                image = deidentify_file(path, out, keep_uids=args.keep_uids, salt=salt)
                row["image"] = image.name
                if analyzer is not None:
                    row.update(_results(analyzer, path, out, args, salt))
            except ThoracicError as err:
                failed += 1
                row.update(status="failed", error=err.message)  # without the path: it may name the patient
                bar.write(f"failed: {err}")  # the user's own terminal: the path is theirs
            writer.writerow(row)
            fh.flush()
    print(f"{len(files) - failed} of {len(files)} file(s) de-identified into {out} (list: {manifest.name})")
    return 1 if failed else 0


def _results(analyzer: Any, path: str, out: Path, args: argparse.Namespace, salt: str) -> dict[str, str]:
    from thoracic.dicom import DEFAULT_MIN_SCORE, build_results

    analysis = analyzer.analyze(path)
    results = build_results(
        analysis,
        min_score=DEFAULT_MIN_SCORE if args.min_score is None else args.min_score,
        deidentify=True,
        salt=salt,
    )  # the header comes with the analysis: no second read of the file
    return {kind: p.name for kind, p in results.save(out).items()}
