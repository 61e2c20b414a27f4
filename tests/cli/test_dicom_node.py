"""``thoracic dicom-node`` options (``thoracic.cli.dicom_node``)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from thoracic.cli import dicom_node
from thoracic.errors import ConfigError
from thoracic.node import CStoreDestination, JobQueue, StowRsDestination, job_key


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="thoracic")
    sub = parser.add_subparsers(dest="command")
    dicom_node.add_parser(sub)
    return parser.parse_args(["dicom-node", *argv])


def test_options_make_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("THORACIC_STOWRS_TOKEN", raising=False)
    args = parse("--spool", str(tmp_path), "--ae-title", "AI", "--port", "4104", "--allow-ae", "CR1",
                 "--allow-ae", "DX2", "--queue-size", "7", "--dest-ae", "PACS", "--dest-host", "pacs.local",
                 "--dest-port", "104", "--stowrs", "https://pacs.local/dicom-web", "--stowrs-token", "t0k")
    assert args.func is dicom_node.run
    config = dicom_node.build_config(args)
    assert (config.ae_title, config.port, config.allow_ae, config.queue_size) == ("AI", 4104, ("CR1", "DX2"), 7)
    assert config.destinations == (CStoreDestination("PACS", "pacs.local", 104),
                                   StowRsDestination("https://pacs.local/dicom-web", token="t0k"))


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("THORACIC_STOWRS_TOKEN", "from-env")
    config = dicom_node.build_config(parse("--spool", str(tmp_path), "--stowrs", "http://pacs/dw"))
    assert config.destinations[0].token == "from-env"
    monkeypatch.delenv("THORACIC_STOWRS_TOKEN")
    monkeypatch.setenv("THORACIC_STOWRS_PASSWORD", "pw")
    config = dicom_node.build_config(parse("--spool", str(tmp_path), "--stowrs", "http://pacs/dw", "--stowrs-user", "ai"))
    assert (config.destinations[0].username, config.destinations[0].password) == ("ai", "pw")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ((), "no destination"),
        (("--dest-ae", "PACS", "--dest-host", "pacs"), "needs all of --dest-ae"),
        (("--stowrs-token", "x"), "need --stowrs"),
        (("--stowrs", "http://pacs/dw", "--stowrs-user", "ai"), "THORACIC_STOWRS_PASSWORD"),
        (("--stowrs", "http://pacs/dw", "--allow-ae", "WAY-TOO-LONG-AE-TITLE"), "not a valid AE title"),
    ],
)
def test_bad_options(tmp_path, monkeypatch, argv, match):
    monkeypatch.delenv("THORACIC_STOWRS_PASSWORD", raising=False)
    monkeypatch.delenv("THORACIC_STOWRS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=match):
        dicom_node.build_config(parse("--spool", str(tmp_path), *argv))


def test_status_prints_the_queue_while_the_node_holds_it(tmp_path):
    status = [sys.executable, "-m", "thoracic.node", "--spool", str(tmp_path), "--status"]
    missing = subprocess.run(status, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no queue here" in missing.stderr
    with JobQueue(tmp_path, 5) as q:  # held open, as by a running node
        q.add(job_key("1.2.3", ["m"]), b"x", sop_instance_uid="1.2.3", sop_class_uid="1.2", calling_ae="CR")
        out = subprocess.run(status, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:6] == ["received\t1", "analyzing\t0", "sending\t0", "done\t0", "failed\t0", "node\trunning"]
    assert lines[6].startswith("oldest pending\t") and len(lines) == 7  # nothing retrying or failed
    stopped = subprocess.run(status, capture_output=True, text=True, timeout=60, check=False)
    assert stopped.returncode == 0 and "node\tnot running" in stopped.stdout.splitlines()


def test_a_config_error_exits_2_with_a_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "error: no destination for the results" in out.stderr


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(tmp_path), "--host", "127.0.0.1",
                              "--port", str(port), "--stowrs", "http://127.0.0.1:9/dw"],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"error: cannot listen on 127.0.0.1:{port} (Address already in use)" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_second_node_on_the_same_spool_is_refused(tmp_path):
    with JobQueue(tmp_path, 5):  # held, as by a running node
        out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(tmp_path), "--host", "127.0.0.1",
                              "--port", "0", "--stowrs", "http://127.0.0.1:9/dw"],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "the spool is in use by another process" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("given", ["debug", "DEBUG", "Debug"])
def test_the_log_level_takes_either_case(tmp_path, given):
    assert parse("--spool", str(tmp_path), "--log-level", given).log_level == "DEBUG"


def test_an_unknown_log_level_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("--spool", str(tmp_path), "--log-level", "verbose")
    assert exit_.value.code == 2 and "--log-level" in capsys.readouterr().err


def test_a_preset_and_detector_files_together_are_refused_before_the_node_listens(tmp_path):
    assert parse("--spool", str(tmp_path), "--preset", "fast").preset == "fast"
    out = subprocess.run([sys.executable, "-m", "thoracic.node", "--spool", str(tmp_path), "--host", "127.0.0.1",
                          "--port", "0", "--stowrs", "http://127.0.0.1:9/dw", "--preset", "fast",
                          "--detector", "a.onnx"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    assert "give a preset or detector and classifier files, not both" in out.stderr and "Traceback" not in out.stderr
