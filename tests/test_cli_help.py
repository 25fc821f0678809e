"""Every command has a description line, and every option its help text with its default (issue 23)."""

from __future__ import annotations

import argparse

import pytest

from recsys.cli import build_parser, main


def _commands(parser: argparse.ArgumentParser, prefix: str = "recsys"):
    """``(name, parser, help)`` of every command and sub-command under ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub, helps.get(name)
                yield from _commands(sub, f"{prefix} {name}")


COMMANDS = list(_commands(build_parser()))


def test_every_command_is_listed():
    names = {name for name, _, _ in COMMANDS}
    assert {"recsys demo", "recsys serve", "recsys train", "recsys consolidate", "recsys simulate",
            "recsys analyst create"} <= names


@pytest.mark.parametrize(("name", "parser", "summary"), COMMANDS, ids=[name for name, _, _ in COMMANDS])
def test_each_command_has_a_line_and_each_option_its_help_and_default(name, parser, summary):
    assert summary, f"{name} has no line in its parent's --help"
    assert parser.description, f"{name} --help has no description line"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        option = "/".join(action.option_strings) or action.dest
        assert action.help, f"{name} {option} has no help text"
        if action.option_strings and not (action.default is None or action.default is False
                                          or action.default is argparse.SUPPRESS):
            shown = action.help % {"default": action.default, "prog": parser.prog} if "%(" in action.help \
                else action.help
            assert "default" in shown and str(action.default).split(".")[0] in shown.replace(",", ""), \
                f"{name} {option}: the help does not give its default {action.default!r}: {shown!r}"


def test_the_demos_help_describes_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    out = " ".join(out.split())
    for words in ("players of the synthetic casino (default: 20000)", "(no API, no live play) (default: 45.0)"):
        assert words in out, out
