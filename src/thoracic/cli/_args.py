"""Argument checks of the ``thoracic`` commands: a wrong value is a one-line usage error (exit 2).

Every number and path option names one of these as its ``type=``, so ``--port 99999``,
``--workers -1``, ``--conf 1.5`` or ``--out`` naming a file where a folder is expected stop at
parsing with ``thoracic CMD: error: argument --port: ...``, before anything is loaded or written.
``tests/cli/test_args.py`` walks every subcommand of :func:`thoracic.cli.main.build_parser` and
feeds each option a value out of its range, so a new option must pick a check here.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, NoReturn, TypeVar

__all__ = [
    "COUNT",
    "COUNT_OR_OFF",
    "FOLDS",
    "FRACTION",
    "IN_DIR",
    "IN_FILE",
    "IN_PATH",
    "NON_NEGATIVE",
    "OUT_DIR",
    "OUT_FILE",
    "PEER_PORT",
    "PORT",
    "POSITIVE",
    "POSITIVE_FLOAT",
    "Number",
    "Parser",
    "PathArg",
    "config_from_args",
    "one_line",
]

_C = TypeVar("_C")


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), without the usage block.

    Its subparsers are of this class too (``add_subparsers`` makes them so).
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


class Number:
    """A number option: ``int`` or ``float`` (finite), at least ``lo`` (above it with ``lo_open``), at most ``hi``.

    >>> POSITIVE("3"), FRACTION("0.25")
    (3, 0.25)
    >>> PORT("99999")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: 99999 is not a port number (0-65535; 0: a free one)
    """

    def __init__(self, kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                 what: str = "") -> None:
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.what = what or self._describe()
        self.__name__ = "port" if "port" in self.what else kind.__name__  # argparse names the type by this

    def _describe(self) -> str:
        noun = "a whole number" if self.kind is int else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{noun} in {self.lo:g}..{self.hi:g}"
        if self.lo is not None:
            return f"{noun} {'>' if self.lo_open else '>='} {self.lo:g}"
        return noun

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.what}")
        low = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        if low or (self.hi is not None and value > self.hi):
            raise argparse.ArgumentTypeError(f"{text} is not {self.what}")
        return value

    def __repr__(self) -> str:
        return f"Number({self.what})"


#: A TCP port to listen on (0: a free one).
PORT = Number(int, 0, 65535, what="a port number (0-65535; 0: a free one)")
#: The TCP port of another host.
PEER_PORT = Number(int, 1, 65535, what="a port number (1-65535)")
#: A count where 0 means "none" or "the default" (workers, seeds, bootstrap resamples).
COUNT = Number(int, 0)
#: A count of at least one (sizes, epochs, threads).
POSITIVE = Number(int, 1)
#: A score, probability or IoU.
FRACTION = Number(float, 0, 1)
#: A size, time or rate above zero.
POSITIVE_FLOAT = Number(float, 0, lo_open=True)
#: A time or factor of zero or more.
NON_NEGATIVE = Number(float, 0)
#: A number of folds.
FOLDS = Number(int, 2)
#: A count, or -1 for "off" / "none" (``--save-period``, ``train lungs --fold``, ultralytics' AutoBatch).
COUNT_OR_OFF = Number(int, -1, what="a whole number >= 0, or -1")


class PathArg:
    """A path option, checked before any work: ``kind`` is what it must be.

    - ``out_dir``: an output folder: refused when it is an existing file (or inside one);
    - ``out_file``: an output file: refused when it is an existing folder (or its folder is a file);
    - ``in_file``: an input file: must exist, be a file and be readable;
    - ``in_dir``: an input folder: must exist and be a folder;
    - ``in_path``: an input file or folder: must exist.
    """

    KINDS = ("out_dir", "out_file", "in_file", "in_dir", "in_path")

    def __init__(self, kind: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(kind)
        self.kind = kind
        self.__name__ = kind

    def __call__(self, text: str) -> str:
        p = Path(text)
        if not text:
            raise argparse.ArgumentTypeError("an empty path")
        if self.kind == "out_dir":
            if p.exists() and not p.is_dir():
                raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
            self._parent_ok(p)
        elif self.kind == "out_file":
            if p.is_dir():
                raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
            self._parent_ok(p)
        elif not p.exists():
            raise argparse.ArgumentTypeError(f"{text} does not exist")
        elif self.kind == "in_file":
            if p.is_dir():
                raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
            if not os.access(p, os.R_OK):
                raise argparse.ArgumentTypeError(f"{text} cannot be read (permission denied)")
        elif self.kind == "in_dir" and not p.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is not a folder")
        return text

    @staticmethod
    def _parent_ok(p: Path) -> None:
        for parent in p.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder")
                return

    def __repr__(self) -> str:
        return f"PathArg({self.kind})"


OUT_DIR = PathArg("out_dir")
OUT_FILE = PathArg("out_file")
IN_FILE = PathArg("in_file")
IN_DIR = PathArg("in_dir")
IN_PATH = PathArg("in_path")


def config_from_args(cls: type[_C], args: argparse.Namespace, **given: Any) -> _C:
    """A dataclass config of parsed arguments: each field takes the argument of its name, ``given`` wins.

    Lists (``nargs``/``append`` options) become tuples; a field with neither an argument nor a
    ``given`` value keeps its default. So a new option reaches the config by its name alone.
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in given:
            kwargs[f.name] = given[f.name]
        elif hasattr(args, f.name):
            value = getattr(args, f.name)
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    unknown = set(given) - set(kwargs)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    return cls(**kwargs)


def one_line(err: BaseException) -> str:
    """An error as one line (for ``error: ...`` on stderr)."""
    return " ".join(str(err).split())



def add_backend_arguments(p: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--precision``: where the models run (see :func:`thoracic.models.runtime.onnx_backend`)."""
    p.add_argument("--backend", choices=["auto", "onnxruntime", "openvino"], default="auto",
                   help="inference back-end: auto (default: OpenVINO on the CPU when thoracic[fast] is installed, "
                        "else ONNX Runtime; ONNX Runtime on CUDA), onnxruntime or openvino")
    p.add_argument("--precision", choices=["auto", "f32", "bf16"], default="auto",
                   help="inference precision: auto (default: bf16 on OpenVINO for a model whose accuracy check passed, "
                        "on a bf16 CPU; else f32), f32 (ONNX Runtime's findings on either back-end), or bf16 "
                        "(OpenVINO on a bf16 CPU)")
