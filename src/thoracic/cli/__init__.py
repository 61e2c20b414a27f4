"""The ``thoracic`` command: ``thoracic.cli.main.main(argv) -> int``."""
