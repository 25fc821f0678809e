"""A new user's first hour, in the README's order: `make demo`, then "Your own data" word for word.

The demo keeps its world in ``<RECSYS_DATA_DIR>/demo``, so the example files go into an empty
database: every player is inserted (none "updated" over the demo's ids) and the first pipeline run
is run 1 (issue 23: it said ``1,000 updated`` and trained on the demo's 20,000 players as version 2).
Both databases are embedded servers, started as a user's commands start them; the demo is tiny,
stops before its API, and both pipelines train fast, so this checks the order and the databases,
not the model's figures.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.db.engine import create_engine
from recsys.settings import Settings
from tests.factories import fast_pipeline

pytestmark = pytest.mark.db  # it starts its own embedded servers

ROOT = Path(__file__).resolve().parents[1]


def readme_own_data_commands() -> list[list[str]]:
    """The ``recsys ...`` lines of the README's first block under "Your own data", comments cut."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own data", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL).group(1)
    return [shlex.split(line.split("#")[0])[1:] for line in block.splitlines() if line.startswith("recsys ")]


def players(settings: Settings) -> int:
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM players")).scalar_one()
    finally:
        engine.dispose()


def test_the_readmes_own_data_steps_after_the_demo_get_what_the_readme_says(monkeypatch, capsys, own_data_dir):
    monkeypatch.chdir(ROOT)  # the README's paths (examples/...) are the checkout's
    fast = fast_pipeline(Settings.from_env({}), own_data_dir).environment()
    for variable, value in fast.items():
        if variable != "RECSYS_DATABASE_URL":
            monkeypatch.setenv(variable, value)
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)

    # The demo's world and model, without its API and live play (tests/test_demo.py checks its last lines).
    assert main(["demo", "--players", "300", "--slots", "40", "--days", "12", "--simulate-seconds", "0"]) == 0
    demo = capsys.readouterr().out
    assert f"the embedded PostgreSQL in {own_data_dir / 'demo'}/pg" in demo
    assert players(Settings.from_env().replace(data_dir=own_data_dir / "demo")) == 300

    commands = readme_own_data_commands()
    assert [c[:2] for c in commands] == [["db", "upgrade"], ["import", "players"], ["import", "slots"],
                                         ["import", "sessions"], ["pipeline", "run"]]
    for command in commands:
        assert main(command) == 0, command
    out = capsys.readouterr().out
    assert "1,000 players read: 1,000 inserted, 0 updated" in out
    assert "100 slots read: 100 inserted, 0 updated" in out
    assert re.search(r"^pipeline run 1 succeeded", out, flags=re.MULTILINE), out
    assert players(Settings.from_env()) == 1000


def test_every_variable_of_the_readmes_shell_blocks_is_assigned_before_it_is_used():
    """The forced-activation snippet used ``$ADMIN`` unassigned, before ``recsys serve`` was introduced."""
    text = (ROOT / "README.md").read_text()
    assigned: set[str] = set()
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            code = line.split("  #")[0]
            used = set(re.findall(r"\$([A-Z][A-Z0-9_]*)\b", code)) - {"PATH", "HOME", "PWD"}
            assert used <= assigned, f"{sorted(used - assigned)} used before it is assigned: {line!r}"
            assigned |= set(re.findall(r"^([A-Z][A-Z0-9_]*)=", code))
    serve = text.index("recsys serve                                        # http://127.0.0.1:8000")
    assert serve < text.index("/v1/models/1/activate?force=true")
