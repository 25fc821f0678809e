"""The `recsys` command as a newcomer meets it: the help, reaching the database, the example files."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

from recsys.cli import build_parser, main
from recsys.db import versions
from recsys.db.apikeys import find_key
from recsys.pipeline import run_pipeline
from tests.factories import fast_pipeline

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_the_help_is_written_for_a_user_and_its_first_steps_exist(capsys):
    text = build_parser().format_help()
    assert "register(subparsers)" not in text and "``" not in text
    assert "first steps:" in text and "embedded PostgreSQL" in text
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    steps = re.findall(r"^  recsys (\w+)", text, flags=re.MULTILINE)
    assert steps and set(steps) <= commands
    for path in re.findall(r"examples/\S+", text):
        assert (ROOT / path).is_file(), path


def test_db_url_prints_the_configured_url(monkeypatch, capsys, database_url, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert main(["db", "url"]) == 0
    assert capsys.readouterr().out == database_url + "\n"


def test_db_shell_runs_psql_on_the_database(monkeypatch, capfd, database_url, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", database_url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    assert main(["db", "shell", "-c", "SELECT count(*) AS tables FROM pg_tables WHERE tablename = 'slots'"]) == 0
    out = capfd.readouterr().out
    assert re.search(r"tables\s*\n-+\s*\n\s*1\s*\n", out), out


def test_the_example_files_are_what_their_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_examples", EXAMPLES / "make_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.write_examples(tmp_path)
    assert sorted(p.name for p in written.values()) == ["players.csv", "sessions.csv.gz", "slots.csv"]
    for path in written.values():
        assert path.read_bytes() == (EXAMPLES / path.name).read_bytes(), path.name


def test_the_readme_own_data_path_imports_the_examples_and_trains(monkeypatch, capsys, db, settings, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path))
    for kind, name in (("players", "players.csv"), ("slots", "slots.csv"), ("sessions", "sessions.csv.gz")):
        assert main(["import", kind, str(EXAMPLES / name)]) == 0
    out = capsys.readouterr().out
    assert "1,000 players read: 1,000 inserted" in out
    assert "100 slots read: 100 inserted" in out
    assert "27,311 sessions read: 27,311 inserted" in out
    outcome = run_pipeline(db, fast_pipeline(settings, tmp_path))
    assert outcome.status == "succeeded"
    version = versions.active_version(db)
    assert version.n_players == 1000 and version.n_slots == 98  # 2 slots nobody played in the window
    assert outcome.report_path.is_file()


def test_the_readmes_key_line_captures_exactly_one_valid_key(db, settings, tmp_path):
    (line,) = [ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("KEY=$(recsys apikey")]
    command = line.split("#")[0].strip()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "RECSYS_DATABASE_URL": settings.database.url, "RECSYS_DATA_DIR": str(tmp_path)}
    done = subprocess.run(["bash", "-c", f'{command}; printf "%s" "$KEY"'], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"rsk_\w{8}_[\w-]+", done.stdout), done.stdout
    assert find_key(db, done.stdout).allows("read")
