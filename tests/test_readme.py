"""The README stays true: its configuration table is the settings module's, every command exists."""

import re
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


ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()


def test_no_link_leaves_the_repository_and_every_named_file_exists():
    assert "../" not in README
    assert not re.findall(r"\]\((?!#)[^)]*\)", README), "markdown links: name the file instead"
    for url in re.findall(r"https?://[^\s\"')]+", README):
        assert url.startswith(("http://127.0.0.1", "http://localhost")), url
    folders = "docs|bench|examples|deploy|recsys|api|tests"
    named = set(re.findall(rf"\b((?:{folders})/[\w./-]+\.(?:md|py|csv|gz|sh))", README))
    assert {"examples/players.csv", "examples/sessions.csv.gz", "docs/benchmarks.md"} <= named
    for path in named:
        assert (ROOT / path).is_file(), path


def test_every_benchmark_figure_names_the_script_that_prints_it():
    sections = re.findall(r"^## (.+)$", BENCHMARKS, flags=re.MULTILINE)
    assert len(sections) >= 9
    for title in sections:
        (source,) = re.findall(r"\(`([^`]+)`\)$", title)
        if source.startswith("bench/"):
            assert (ROOT / source).is_file(), source
        else:
            assert source.split()[:2] == ["recsys", "evaluate"], title
    summary = README[README.index("## Benchmarks"):README.index("## Deployment")]
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    rows = [r for r in rows if not r.startswith("| ---")]
    assert len(rows) >= 8
    for row in rows:
        script = row.rstrip(" |").rsplit("|", 1)[1].strip().strip("`")
        assert script.startswith("recsys evaluate") or (ROOT / script).is_file(), row
