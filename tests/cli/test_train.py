"""``thoracic train``: the parser's defaults."""

from __future__ import annotations

import argparse

from thoracic.cli import train as train_cli


def test_train_parser_defaults_reproduce_the_shipped_settings(tmp_path):
    parser = argparse.ArgumentParser()
    train_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "lungs", "--data", str(tmp_path), "--out", "o"])  # --data must be a folder
    assert (args.epochs, args.size, args.base, args.batch, args.lr, args.hflip) == (60, 192, 16, 4, 1e-3, False)
