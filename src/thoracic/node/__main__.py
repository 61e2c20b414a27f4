"""``python -m thoracic.node ...``: the same as ``thoracic dicom-node ...``."""

from __future__ import annotations

import argparse
import sys

from ..cli.dicom_node import HELP, add_arguments, run
from ..errors import ThoracicError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thoracic.node", description=HELP)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ThoracicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
