"""The README stays true: its configuration table is the settings module's, every command exists."""

from pathlib import Path

from recsys.cli import build_parser
from recsys.settings import markdown_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_the_configuration_table_matches_the_settings():
    assert markdown_table() in README, "regenerate it with: python -m recsys.settings"


def test_every_documented_command_exists():
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    documented = {line.split("`recsys ")[1].split()[0].rstrip("`") for line in README.splitlines()
                  if line.startswith("| `recsys ")}
    assert documented <= commands, documented - commands
    assert commands <= documented, commands - documented
