"""No traceback from a wrong argument: every subcommand, fed bad values, stops with exit 2 and one line.

The subcommands and their options are read from :func:`thoracic.cli.main.build_parser`, so a new
subcommand or option is covered without touching this file (and must give its numbers and paths
one of the checks of :mod:`thoracic.cli._args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

import pytest
from helpers import ROOT, write

from thoracic.cli._args import PEER_PORT, PORT, Number, PathArg, config_from_args
from thoracic.cli.main import build_parser, main

#: Options that name a file or folder (by their dest); each must have a PathArg type or be listed in UNCHECKED_PATHS.
PATH_DESTS = {"out", "spool", "data", "pred", "truth", "sizes", "metrics", "manifest", "image_list", "salt_file",
              "token_file", "images", "images_csv", "overlays", "export_onnx", "vinbigdata", "meta", "coco", "csv",
              "counts", "folds_csv", "checkpoint", "label_map", "tokens_file", "audit_log"}
#: Path options left to the command, with why: they name models or weights that may also be a known
#: name, or take several kinds of thing (``--folds`` of evaluate/predict is a file, of others a count).
UNCHECKED_PATHS: dict[tuple[str, str], str] = {}


def leaves(parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()):
    """``(command words, parser)`` of every runnable subcommand."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaves(child, (*path, name))


LEAVES = list(leaves())
IDS = [" ".join(words) for words, _ in LEAVES]


def options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.fixture
def places(tmp_path):
    """An existing file, an existing folder, an empty folder, a missing path."""
    folder = tmp_path / "folder"
    folder.mkdir()
    write(folder / "x.txt", "x\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"file": str(write(tmp_path / "file.csv", "a,b\n1,2\n")), "folder": str(folder), "empty": str(empty),
            "missing": str(tmp_path / "missing" / "nothing.csv"), "tmp": tmp_path}


def good_value(action: argparse.Action, places) -> str:
    t = action.type
    if isinstance(t, PathArg):
        return {"out_dir": str(places["tmp"] / "new-out"), "out_file": str(places["tmp"] / "new.csv"),
                "in_file": places["file"], "in_dir": places["folder"], "in_path": places["file"]}[t.kind]
    if isinstance(t, Number):
        return str(t.lo if t.lo is not None and not t.lo_open else 1)
    if action.choices:
        return str(next(iter(action.choices)))
    return places["file"]


def base_argv(words: tuple[str, ...], parser: argparse.ArgumentParser, places, *, skip: argparse.Action) -> list[str]:
    """The command with a parseable value for each required argument (but ``skip``)."""
    argv = list(words)
    for a in parser._actions:
        if a is skip or not a.required or isinstance(a, argparse._HelpAction):
            continue
        n = a.nargs if isinstance(a.nargs, int) else 1
        values = [good_value(a, places)] * n
        argv += [a.option_strings[0], *values] if a.option_strings else values
    return argv


def assert_usage_error(argv: list[str], capsys, *, names: str | None = None) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (argv, err)
    if names is not None:
        assert names in lines[0], (argv, err)
    return lines[0]


@pytest.mark.parametrize(("words", "parser"), LEAVES, ids=IDS)
def test_every_number_and_path_option_is_checked(words, parser):
    for a in options(parser):
        if a.type in (int, float):
            pytest.fail(f"thoracic {' '.join(words)} {a.option_strings[0]}: give it a checked type from thoracic.cli._args")
        unchecked = a.dest in PATH_DESTS and a.type is None and (" ".join(words), a.dest) not in UNCHECKED_PATHS
        if unchecked and a.nargs in (None, "?", 1, 2, "+"):
            pytest.fail(f"thoracic {' '.join(words)} {a.option_strings[0]}: a path with no PathArg check")
    for a in parser._actions:
        if not a.option_strings and a.type in (int, float):
            pytest.fail(f"thoracic {' '.join(words)} {a.dest}: give it a checked type")


@pytest.mark.parametrize(("words", "parser"), LEAVES, ids=IDS)
def test_numbers_out_of_range_are_usage_errors(words, parser, places, capsys):
    checked = 0
    for a in options(parser):
        if not isinstance(a.type, Number):
            continue
        bad = ["nan", "x"]
        if a.type.lo is not None:
            bad.append(str(a.type.lo - 1 if a.type.kind is int else a.type.lo - 0.5))
            bad.append("-7")  # a negative size, count or threshold
        if a.type.hi is not None:
            bad.append(str(a.type.hi + 1 if a.type.kind is int else a.type.hi + 0.5))
        if a.type in (PORT, PEER_PORT):
            bad.append("99999")
        for value in bad:
            argv = [*base_argv(words, parser, places, skip=a), f"{a.option_strings[-1]}={value}"]
            assert_usage_error(argv, capsys, names=a.option_strings[0])
            checked += 1
    if not checked:
        pytest.skip(f"thoracic {' '.join(words)} has no number options")


@pytest.mark.parametrize(("words", "parser"), LEAVES, ids=IDS)
def test_wrong_paths_are_usage_errors(words, parser, places, capsys):
    wrong = {"out_dir": ["file", f"{places['file']}/inside"], "out_file": ["folder"],
             "in_file": ["missing", "folder"], "in_dir": ["missing", "file"], "in_path": ["missing"]}
    checked = 0
    for a in parser._actions:
        if not isinstance(a.type, PathArg):
            continue
        for what in wrong[a.type.kind]:
            value = places.get(what, what)
            n = a.nargs if isinstance(a.nargs, int) else 1
            argv = base_argv(words, parser, places, skip=a)
            argv += [a.option_strings[0], *[value] * n] if a.option_strings else [value] * n
            line = assert_usage_error(argv, capsys)
            assert "argument" in line and ("is a" in line or "does not exist" in line or "is not a" in line), line
            checked += 1
    if not checked:
        pytest.skip(f"thoracic {' '.join(words)} has no path options")


BATCH = [w for w, p in LEAVES if any(not a.option_strings and a.nargs in ("+", "*") and a.dest == "inputs"
                                     for a in p._actions)]


@pytest.mark.parametrize("words", BATCH, ids=[" ".join(w) for w in BATCH])
def test_batch_commands_refuse_missing_and_empty_inputs(words, places, capsys):
    out = places["tmp"] / ("out.csv" if words == ("predict",) else "out")
    for what in ("missing", "empty"):
        line = assert_usage_error([*words, places[what], "--out", str(out)], capsys)
        assert places[what] in line, line
    assert not out.exists()


def test_a_file_that_cannot_be_read_as_a_table(places, capsys):
    garbage = places["tmp"] / "garbage.csv"
    garbage.write_bytes(b"\x00\xff\xfe binary \x00" * 50)
    line = assert_usage_error(["evaluate", "--pred", str(garbage), "--truth", str(garbage),
                               "--out", str(places["tmp"] / "ev")], capsys)
    assert "garbage.csv" in line
    if os.geteuid() != 0:  # root reads anything
        locked = write(places["tmp"] / "locked.csv", "image_id\n")
        locked.chmod(0)
        assert "permission denied" in assert_usage_error(
            ["evaluate", "--pred", str(locked), "--truth", str(locked), "--out", str(places["tmp"] / "e2")], capsys)


def test_help_and_version_still_exit_0(capsys):
    assert main(["--version"]) == 0
    assert main(["convert", "--help"]) == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "99999"],
    ["convert", "{file}", "--out", "{file}"],
])
def test_wrong_arguments_in_a_subprocess(argv, places):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = [a.format(**places) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "thoracic", *argv], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"thoracic {argv[0]}: error: argument "), proc.stderr


def test_config_from_args_takes_fields_by_name() -> None:
    @dataclasses.dataclass(frozen=True)
    class Config:
        port: int = 1
        names: tuple[str, ...] = ()
        token: str | None = None
        kept: float = 2.5

    args = argparse.Namespace(port=104, names=["a", "b"], token="from-args", unrelated=True)
    cfg = config_from_args(Config, args, token="given")
    assert cfg == Config(port=104, names=("a", "b"), token="given", kept=2.5)
    with pytest.raises(TypeError, match="no field"):
        config_from_args(Config, args, spelled_wrong=1)
