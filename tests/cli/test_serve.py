"""``thoracic serve`` options: the parser, where the token comes from, a taken port."""

from __future__ import annotations

import argparse
import socket

import pytest

from thoracic.cli import serve
from thoracic.cli.main import main
from thoracic.errors import ConfigError


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    serve.add_parser(sub)
    return parser.parse_args(["serve", *argv])


def test_defaults_listen_on_loopback_only():
    args = _parse()
    assert (args.host, args.port, args.concurrency, args.queue, args.max_upload_mb) == ("127.0.0.1", 8000, 1, 8, 32.0)
    assert args.func is serve.run
    assert _parse("--workers", "3").concurrency == _parse("--concurrency", "3").concurrency == 3


def test_the_token_comes_from_the_file_then_the_environment_then_the_flag(tmp_path):
    f = tmp_path / "token"
    f.write_text("from-file\nsecond line ignored\n")
    env = {serve.TOKEN_ENV: "from-env"}
    assert serve.resolve_token(_parse("--token-file", str(f), "--token", "x"), env) == ("from-file", "file")
    assert serve.resolve_token(_parse("--token", "from-flag"), env) == ("from-env", "env")
    assert serve.resolve_token(_parse("--token", "from-flag"), {}) == ("from-flag", "flag")
    token, source = serve.resolve_token(_parse(), {})
    assert source == "generated" and len(token) >= 30
    assert serve.resolve_token(_parse(), {})[0] != token
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        serve.resolve_token(_parse("--token-file", str(tmp_path / "empty")), {})
    with pytest.raises(SystemExit):  # a missing token file stops at parsing (tests/cli/test_args.py)
        _parse("--token-file", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read"):  # one gone between parsing and reading
        serve.resolve_token(argparse.Namespace(token_file=str(tmp_path / "missing"), token=None), {})


def test_a_taken_port_is_a_clear_error_before_the_models_load(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--token", "t"]) == 2
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.mark.parametrize("given", ["debug", "DEBUG", "Debug"])
def test_the_log_level_takes_either_case(given):
    assert _parse("--log-level", given).log_level == "debug"
    assert _parse().log_level == "info"


def test_an_unknown_log_level_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        _parse("--log-level", "verbose")
    assert exit_.value.code == 2 and "--log-level" in capsys.readouterr().err
