"""``thoracic --help`` and every ``thoracic X --help``: one plain sentence each, the same style throughout."""

from __future__ import annotations

import argparse
import re

import pytest

from thoracic.cli.main import build_parser, main

#: Words of the code, not of the user: they have no place in a help line.
JARGON = ("`", "sidecar", "ReadPlan", "Analyzer", "Predictor", "CIs", "TODO")


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """``(words, one-line help, parser)`` of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*prefix, name), helps.get(name), sub
                yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_listed():
    names = {" ".join(words) for words, _, _ in COMMANDS}
    assert {"predict", "demo", "serve", "dicom-node", "evaluate", "dataset check", "train lungs", "weights check"} <= names


@pytest.mark.parametrize("words,text,sub", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_each_list_line_and_first_line_is_one_plain_sentence(words, text, sub):
    # the line in the list: a phrase starting in lower case (as argparse's own), no final period
    assert text and text[0].islower() and not text.endswith("."), text
    assert not re.search(r"[.;] [A-Za-z]", text), f"more than one sentence: {text!r}"
    # the first paragraph of `thoracic X --help`: the same phrase as a sentence
    first = sub.description.split("\n\n")[0].replace("\n", " ")
    assert first == f"{text[0].upper()}{text[1:]}.", first
    for word in JARGON:
        assert word not in text, (word, text)


@pytest.mark.parametrize("command", sorted({words[0] for words, _, _ in COMMANDS}))
def test_help_opens_with_that_sentence(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    usage, first = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: thoracic {command}")
    description = next(sub.description for words, _, sub in COMMANDS if words == (command,))
    assert " ".join(first.split()) == " ".join(description.split("\n\n")[0].split())
    assert first[0].isupper() and first.rstrip().endswith(".")


def test_the_main_help_lists_every_command_with_its_phrase(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Localize and classify thoracic abnormalities on chest radiographs." in out
    for words, text, _ in COMMANDS:
        if len(words) == 1:
            assert f"{words[0]} {' '.join(text.split())}" in out, words
