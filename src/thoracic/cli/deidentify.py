"""``thoracic deidentify INPUTS... --out DIR``: de-identified copies of DICOM files, optionally with results.

Each DICOM file is de-identified with the DICOM basic application level confidentiality profile
(:func:`thoracic.dicom.deidentify`: pixels unchanged, identifying attributes removed or replaced,
UIDs replaced by salted ``2.25`` UIDs) and written as ``DIR/<new SOP Instance UID>.dcm``. With
``--results`` the image is also analyzed and its SR, GSPS and SEG are written de-identified with
the same salt, so they refer to the de-identified image and share its new study
(:func:`thoracic.batch.deidentify.deidentify_files`).

The salt is the secret behind the pseudonyms: the same salt gives the same new UIDs and patient
pseudonyms on every run (so later exports join up); without one a random salt is used and the
mapping holds within this run only. ``DIR/deidentify.csv`` lists each output with its status; it
never names the input files (their names may carry patient data). Exit status 1 if any input failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from thoracic.detect.clinical import DEFAULT_MIN_SCORE
from thoracic.cli._args import FRACTION, IN_FILE, OUT_DIR, POSITIVE
from thoracic.errors import ConfigError, MissingDependencyError

__all__ = ["add_parser", "run"]

SALT_ENV = "THORACIC_DEID_SALT"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``deidentify`` to the ``thoracic`` subcommands."""
    p = subparsers.add_parser("deidentify", help="write de-identified copies of DICOM files (basic profile), optionally with SR, GSPS and SEG")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM files or folders (searched recursively)")
    p.add_argument("--out", type=OUT_DIR, required=True, help="output folder")
    p.add_argument("--salt-file", type=IN_FILE, default=None,
                   help=f"file whose first line is the secret salt (else ${SALT_ENV}, else a random one for this run)")
    p.add_argument("--keep-uids", action="store_true", help="keep the original UIDs (the profile's Retain UIDs option)")
    p.add_argument("--results", action="store_true", help="also analyze each image and write its de-identified SR, GSPS and SEG")
    p.add_argument("--min-score", type=FRACTION, default=None, help="the SR/GSPS carry every finding scoring at least this (default: each finding above "
                        f"the detector's operating point, or {DEFAULT_MIN_SCORE:g} for a model without them)")
    p.add_argument("--threads", type=POSITIVE, default=2, help="ONNX Runtime threads for --results (default 2)")
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
    from thoracic.batch.deidentify import DeidentifyConfig, deidentify_files
    from thoracic.cli._progress import run_batch

    if args.results and args.keep_uids:
        raise ConfigError("--results refers to the image by its new UIDs; use it without --keep-uids")
    if args.results and importlib.util.find_spec("highdicom") is None:  # before any file is written
        raise MissingDependencyError.for_feature("thoracic deidentify --results", "highdicom", "dicom")
    from thoracic._fs import find_inputs

    find_inputs(args.inputs, empty_ok=False)  # a missing input or an empty folder: one line, before any note
    salt, origin = _salt(args)
    if origin == "random":
        print(f"note: no --salt-file or ${SALT_ENV}: pseudonyms and new UIDs hold within this run only", file=sys.stderr)
    options = DeidentifyConfig(keep_uids=args.keep_uids, results=args.results, min_score=args.min_score,
                                threads=args.threads)
    # the bar prints each failure with its path (the user's own terminal); deidentify.csv never names the file
    summary = run_batch("deidentify", args, deidentify_files, args.inputs, args.out, options, salt=salt)
    print(f"{summary.total - summary.failed} of {summary.total} file(s) de-identified into {Path(args.out)} "
          f"(list: {Path(summary.manifest).name})")
    return 1 if summary.failed else 0
