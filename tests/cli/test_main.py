"""The ``thoracic`` entry point: a reader that closes early, batch commands over no inputs."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT

from thoracic.cli.main import BROKEN_PIPE_STATUS, main


def test_a_reader_closing_early_ends_the_command_quietly():
    # as `thoracic chains | head -0`: the reader is gone before the command writes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "thoracic", "chains"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == BROKEN_PIPE_STATUS
    assert "Traceback" not in err and "BrokenPipeError" not in err and err == ""


def test_convert_and_segment_over_no_inputs_are_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["convert"], ["segment"], ["deidentify"]):
        out = tmp_path / f"out-{command[0]}"
        assert main([*command, str(empty), "--out", str(out), "-q"]) == 2, command
        assert f"no input files found in {empty}" in capsys.readouterr().err
        assert not out.exists()
