"""``python -m thoracic.node ...``: the same as ``thoracic dicom-node ...``."""

from __future__ import annotations

import sys

from thoracic.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["dicom-node", *sys.argv[1:]]))
