"""Imports into a real PostgreSQL: recsys.db.imports and ``recsys import`` (recsys.cli.importing)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from recsys.cli import main
from recsys.db.imports import import_frame
from recsys.errors import InputError
from recsys.importing import load_file, validate_records

PLAYERS_CSV = """\
player_id,market,registered_at,self_excluded_until,cooling_off_until,marketing_consent,risk_flag
p1,GB,2023-01-01T00:00:00Z,,,true,false
p2,SE,2023-02-01T12:00:00+01:00,2024-12-31T00:00:00Z,,false,true
p3,,,,,1,0
"""
SLOTS_CSV = """\
slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet,release_date,active,markets
g1,Book of Ra,Novomatic,egyptian,high,96.10,0.10,100,2021-03-04,true,GB|SE
g2,Fruit Party,Pragmatic,fruit,low,94,0.2,20,,false,
"""
SESSIONS_CSV = """\
session_id,player_id,slot_id,started_at,ended_at,spins,total_bet,total_win,bonus
s1,p1,g1,2024-05-01T18:00:00Z,2024-05-01T19:30:00Z,120,60.5,48.25,false
s2,p2,g2,2024-05-02T08:00:00+02:00,,3,0.6,0,true
s3,p1,g2,2024-05-03T10:00:00Z,2024-05-03T10:00:30Z,5,1,2,0
"""


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


EXPECTED_PLAYERS = [
    ("p1", "GB", utc("2023-01-01T00:00:00+00:00"), None, None, True, False),
    ("p2", "SE", utc("2023-02-01T11:00:00+00:00"), utc("2024-12-31T00:00:00+00:00"), None, False, True),
    ("p3", None, None, None, None, True, False),
]
EXPECTED_SLOTS = [
    ("g1", "Book of Ra", "Novomatic", "egyptian", "high", Decimal("96.10"), Decimal("0.10"), Decimal("100.00"),
     date(2021, 3, 4), True, ["GB", "SE"]),
    ("g2", "Fruit Party", "Pragmatic", "fruit", "low", Decimal("94.00"), Decimal("0.20"), Decimal("20.00"),
     None, False, None),
]
EXPECTED_SESSIONS = [
    ("s1", "p1", "g1", utc("2024-05-01T18:00:00+00:00"), utc("2024-05-01T19:30:00+00:00"),
     utc("2024-05-01T19:30:00+00:00"), 5400.0, 120, Decimal("60.50"), Decimal("48.25"), False),
    ("s2", "p2", "g2", utc("2024-05-02T06:00:00+00:00"), None, utc("2024-05-02T06:00:00+00:00"), 0.0, 3,
     Decimal("0.60"), Decimal("0.00"), True),
    ("s3", "p1", "g2", utc("2024-05-03T10:00:00+00:00"), utc("2024-05-03T10:00:30+00:00"),
     utc("2024-05-03T10:00:30+00:00"), 30.0, 5, Decimal("1.00"), Decimal("2.00"), False),
]


def players_rows(engine) -> list[tuple]:
    return _rows(
        engine,
        "SELECT player_id, market, registered_at, self_excluded_until, cooling_off_until, marketing_consent, risk_flag"
        " FROM players ORDER BY player_id",
    )


def slots_rows(engine) -> list[tuple]:
    return _rows(
        engine,
        "SELECT slot_id, name, provider, theme, volatility, rtp, min_bet, max_bet, release_date, active, markets"
        " FROM slots ORDER BY slot_id",
    )


def sessions_rows(engine) -> list[tuple]:
    """Sessions with the casino's ids read back through the internal keys."""
    return _rows(
        engine,
        """
        SELECT s.session_id, p.player_id, sl.slot_id, s.started_at, s.ended_at, s.last_event_at, s.seconds,
               s.spins, s.total_bet, s.total_win, s.bonus
        FROM play_sessions s JOIN players p ON p.id = s.player_key JOIN slots sl ON sl.id = s.slot_key
        ORDER BY s.session_id
        """,
    )


def snapshot(engine) -> dict[str, list[tuple]]:
    """Every column of the imported tables, ``updated_at`` included."""
    return {
        table: _rows(engine, f"SELECT * FROM {table} ORDER BY id")
        for table in ("players", "slots", "play_sessions")
    }


def _rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def import_file(engine, kind: str, path):
    return import_frame(engine, kind, load_file(path, kind), source=str(path))


def import_all_csv(engine, tmp_path) -> None:
    for kind, text in (("players", PLAYERS_CSV), ("slots", SLOTS_CSV), ("sessions", SESSIONS_CSV)):
        import_file(engine, kind, write(tmp_path, f"{kind}.csv", text))


def write_parquet(tmp_path) -> dict[str, object]:
    ts = pa.timestamp("us", tz="UTC")
    tables = {
        "players": pa.table(
            {
                "player_id": ["p1", "p2", "p3"],
                "market": ["GB", "SE", None],
                "registered_at": pa.array(
                    [utc("2023-01-01T00:00:00+00:00"), utc("2023-02-01T11:00:00+00:00"), None], type=ts
                ),
                "self_excluded_until": pa.array([None, utc("2024-12-31T00:00:00+00:00"), None], type=ts),
                "cooling_off_until": pa.array([None, None, None], type=ts),
                "marketing_consent": [True, False, True],
                "risk_flag": [False, True, False],
            }
        ),
        "slots": pa.table(
            {
                "slot_id": ["g1", "g2"],
                "name": ["Book of Ra", "Fruit Party"],
                "provider": ["Novomatic", "Pragmatic"],
                "theme": ["egyptian", "fruit"],
                "volatility": ["high", "low"],
                "rtp": [96.1, 94.0],
                "min_bet": [0.1, 0.2],
                "max_bet": [100.0, 20.0],
                "release_date": pa.array([date(2021, 3, 4), None], type=pa.date32()),
                "active": [True, False],
                "markets": pa.array([["GB", "SE"], None], type=pa.list_(pa.string())),
            }
        ),
        "sessions": pa.table(
            {
                "session_id": ["s1", "s2", "s3"],
                "player_id": ["p1", "p2", "p1"],
                "slot_id": ["g1", "g2", "g2"],
                "started_at": pa.array(
                    [utc("2024-05-01T18:00:00+00:00"), utc("2024-05-02T06:00:00+00:00"),
                     utc("2024-05-03T10:00:00+00:00")], type=ts,
                ),
                "ended_at": pa.array(
                    [utc("2024-05-01T19:30:00+00:00"), None, utc("2024-05-03T10:00:30+00:00")], type=ts
                ),
                "spins": pa.array([120, 3, 5], type=pa.int32()),
                "total_bet": [60.5, 0.6, 1.0],
                "total_win": [48.25, 0.0, 2.0],
                "bonus": [False, True, False],
            }
        ),
    }
    paths = {}
    for kind, table in tables.items():
        paths[kind] = tmp_path / f"{kind}.parquet"
        pq.write_table(table, paths[kind])
    return paths


# --- good input ----------------------------------------------------------------------------------


def test_csv_import_writes_exact_rows(db, tmp_path):
    import_all_csv(db, tmp_path)
    assert players_rows(db) == EXPECTED_PLAYERS
    assert slots_rows(db) == EXPECTED_SLOTS
    assert sessions_rows(db) == EXPECTED_SESSIONS


def test_parquet_import_writes_the_same_rows(db, tmp_path):
    paths = write_parquet(tmp_path)
    results = [import_file(db, kind, paths[kind]) for kind in ("players", "slots", "sessions")]
    assert [(r.inserted, r.updated, r.unchanged) for r in results] == [(3, 0, 0), (2, 0, 0), (3, 0, 0)]
    assert players_rows(db) == EXPECTED_PLAYERS
    assert slots_rows(db) == EXPECTED_SLOTS
    assert sessions_rows(db) == EXPECTED_SESSIONS


def test_session_keys_are_the_internal_ids(db, tmp_path):
    import_all_csv(db, tmp_path)
    mismatched = _rows(
        db,
        """
        SELECT s.session_id FROM play_sessions s
        JOIN players p ON p.id = s.player_key JOIN slots sl ON sl.id = s.slot_key
        WHERE (s.session_id, p.player_id, sl.slot_id)
              NOT IN (('s1', 'p1', 'g1'), ('s2', 'p2', 'g2'), ('s3', 'p1', 'g2'))
        """,
    )
    assert mismatched == []
    assert _rows(db, "SELECT count(*) FROM play_sessions") == [(3,)]


def test_importing_the_same_files_again_changes_nothing(db, tmp_path):
    import_all_csv(db, tmp_path)
    before = snapshot(db)
    results = [
        import_file(db, kind, tmp_path / f"{kind}.csv") for kind in ("players", "slots", "sessions")
    ]
    assert [(r.inserted, r.updated, r.unchanged) for r in results] == [(0, 0, 3), (0, 0, 2), (0, 0, 3)]
    assert snapshot(db) == before


def test_csv_then_parquet_of_the_same_data_changes_nothing(db, tmp_path):
    import_all_csv(db, tmp_path)
    before = snapshot(db)
    paths = write_parquet(tmp_path)
    for kind in ("players", "slots", "sessions"):
        assert import_file(db, kind, paths[kind]).unchanged > 0
    assert snapshot(db) == before


def test_a_changed_row_is_the_only_row_updated(db, tmp_path):
    import_all_csv(db, tmp_path)
    before = snapshot(db)["play_sessions"]
    changed = SESSIONS_CSV.replace(
        "s2,p2,g2,2024-05-02T08:00:00+02:00,,3,", "s2,p2,g2,2024-05-02T08:00:00+02:00,2024-05-02T08:10:00+02:00,7,"
    )
    result = import_file(db, "sessions", write(tmp_path, "changed.csv", changed))
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 2)
    after = snapshot(db)["play_sessions"]
    assert [a[1] for a, b in zip(after, before, strict=True) if a != b] == ["s2"]
    row = {s[0]: s for s in sessions_rows(db)}["s2"]
    assert row[4:8] == (utc("2024-05-02T06:10:00+00:00"), utc("2024-05-02T06:10:00+00:00"), 600.0, 7)
    updated_at = dict(_rows(db, "SELECT session_id, updated_at FROM play_sessions"))
    assert updated_at["s2"] > updated_at["s1"] == updated_at["s3"]


def test_an_omitted_column_keeps_its_value_and_a_new_row_gets_the_default(db, tmp_path):
    import_all_csv(db, tmp_path)
    result = import_file(db, "players", write(tmp_path, "markets.csv", "player_id,market\np1,SE\np4,NL\n"))
    assert (result.inserted, result.updated) == (1, 1)
    rows = {r[0]: r for r in players_rows(db)}
    assert rows["p1"] == ("p1", "SE", *EXPECTED_PLAYERS[0][2:])  # consent and registration kept
    assert rows["p4"] == ("p4", "NL", None, None, None, False, False)  # fail-closed: no consent


def test_an_empty_cell_clears_a_nullable_column(db, tmp_path):
    import_all_csv(db, tmp_path)
    import_file(db, "players", write(tmp_path, "lifted.csv", "player_id,self_excluded_until\np2,\n"))
    assert {r[0]: r for r in players_rows(db)}["p2"][3] is None


def test_an_empty_list_of_markets_is_stored_as_every_market(db, tmp_path):
    # docs/import-format.md: empty = every market (NULL). Issue 22: stored as '{}', served nowhere.
    import_all_csv(db, tmp_path)
    table = pa.table({"slot_id": ["g1", "g2"], "name": ["A", "B"], "provider": ["P", "P"], "theme": ["t", "t"],
                      "volatility": ["low", "low"], "rtp": [95.0, 95.0], "min_bet": [0.1, 0.1], "max_bet": [1.0, 1.0],
                      "markets": pa.array([[], ["SE"]], type=pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "markets.parquet")
    import_file(db, "slots", tmp_path / "markets.parquet")
    assert {r[0]: r[-1] for r in slots_rows(db)} == {"g1": None, "g2": ["SE"]}


def test_sessions_without_an_end_column_keep_the_stored_end(db, tmp_path):
    import_all_csv(db, tmp_path)
    moved = "session_id,player_id,slot_id,started_at\ns1,p1,g1,2024-05-01T19:00:00Z\n"
    import_file(db, "sessions", write(tmp_path, "moved.csv", moved))
    row = {s[0]: s for s in sessions_rows(db)}["s1"]
    assert row[3:7] == (utc("2024-05-01T19:00:00+00:00"), utc("2024-05-01T19:30:00+00:00"),
                        utc("2024-05-01T19:30:00+00:00"), 1800.0)
    assert row[7] == 120  # spins left out: kept


def test_an_api_batch_goes_through_the_same_upsert(db):
    records = [
        {"player_id": "p1", "marketing_consent": True, "risk_flag": False},
        {"player_id": "p2", "marketing_consent": False, "risk_flag": True},
    ]
    frame = validate_records(records, "players", source="PUT /players")
    result = import_frame(db, "players", frame, source="PUT /players")
    assert (result.inserted, result.updated) == (2, 0)
    assert [(r[0], r[5], r[6]) for r in players_rows(db)] == [("p1", True, False), ("p2", False, True)]


# --- bad input: an InputError and nothing written ------------------------------------------------


def test_unknown_player_after_many_good_rows_writes_nothing(db, tmp_path):
    import_all_csv(db, tmp_path)
    before = snapshot(db)
    good = "".join(f"n{i},p{1 + i % 3},g{1 + i % 2},2024-06-01T10:00:00Z,,1,1,1,false\n" for i in range(5000))
    bad = "x1,p9,g1,2024-06-01T10:00:00Z,,1,1,1,false\n"
    path = write(tmp_path, "late.csv", SESSIONS_CSV.splitlines()[0] + "\n" + good + bad)
    with pytest.raises(InputError) as info:
        import_file(db, "sessions", path)
    assert (info.value.source, info.value.row, info.value.field) == (str(path), 5001, "player_id")
    assert "unknown player_id 'p9'" in info.value.message
    assert snapshot(db) == before


def test_unknown_slot_is_named(db, tmp_path):
    import_all_csv(db, tmp_path)
    path = write(tmp_path, "s.csv", "session_id,player_id,slot_id,started_at\nn1,p1,g1,2024-06-01T10:00:00Z\n"
                                    "n2,p1,nope,2024-06-01T10:00:00Z\n")
    with pytest.raises(InputError) as info:
        import_file(db, "sessions", path)
    assert (info.value.row, info.value.field) == (2, "slot_id")
    assert _rows(db, "SELECT count(*) FROM play_sessions") == [(3,)]


def test_a_start_after_the_stored_end_writes_nothing(db, tmp_path):
    import_all_csv(db, tmp_path)
    before = snapshot(db)
    path = write(tmp_path, "late.csv", "session_id,player_id,slot_id,started_at\ns3,p1,g2,2024-05-03T11:00:00Z\n")
    with pytest.raises(InputError) as info:
        import_file(db, "sessions", path)
    assert (info.value.row, info.value.field) == (1, "started_at")
    assert "negative duration" in info.value.message
    assert snapshot(db) == before


BAD_FILES = {
    "missing column": ("sessions", "session_id,player_id,slot_id\ns9,p1,g1\n", None, "started_at",
                       "required column is missing"),
    "wrong type": ("sessions", "session_id,player_id,slot_id,started_at,spins\n"
                   "s9,p1,g1,2024-06-01T10:00:00Z,3\ns10,p1,g1,2024-06-01T10:00:00Z,three\n",
                   2, "spins", "'three' is not a whole number"),
    "naive timestamp": ("sessions", "session_id,player_id,slot_id,started_at\ns9,p1,g1,2024-06-01 10:00:00\n",
                        1, "started_at", "has no time zone"),
    "unknown player": ("sessions", "session_id,player_id,slot_id,started_at\ns9,p1,g1,2024-06-01T10:00:00Z\n"
                       "s10,ghost,g1,2024-06-01T10:00:00Z\n", 2, "player_id", "unknown player_id 'ghost'"),
    "negative duration": ("sessions", "session_id,player_id,slot_id,started_at,ended_at\n"
                          "s9,p1,g1,2024-06-01T10:00:00Z,2024-06-01T09:59:59Z\n", 1, "ended_at", "negative duration"),
    "duplicate id": ("sessions", "session_id,player_id,slot_id,started_at\ns9,p1,g1,2024-06-01T10:00:00Z\n"
                     "s10,p1,g1,2024-06-01T10:00:00Z\ns9,p2,g1,2024-06-01T11:00:00Z\n", 3, "session_id",
                     "duplicate session_id 's9' (first in row 1)"),
    "bad volatility": ("slots", "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet\n"
                       "g9,X,P,t,wild,96,0,1\n", 1, "volatility", "'wild' is not one of low, medium, high"),
    "rtp out of range": ("slots", "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet\n"
                         "g9,X,P,t,low,96,0,1\ng10,X,P,t,low,196,0,1\n", 2, "rtp", "not a percentage"),
    # issue 22: 100,000 markets overflowed ix_slots_hidden's row; at most 100
    "too many markets": ("slots", "slot_id,name,provider,theme,volatility,rtp,min_bet,max_bet,markets\n"
                         "g9,X,P,t,low,96,0,1,GB\ng10,X,P,t,low,96,0,1," + "|".join(f"M{i}" for i in range(101))
                         + "\n", 2, "markets", "101 markets; at most 100"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_cli_refuses_bad_input_with_exit_2_and_writes_nothing(db, settings, tmp_path, monkeypatch, capsys, case):
    import_all_csv(db, tmp_path)
    before = snapshot(db)
    kind, text, row, field, needle = BAD_FILES[case]
    path = write(tmp_path, "bad.csv", text)
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    assert main(["import", kind, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    where = f"{path}, row {row}, field {field!r}" if row else f"{path}, field {field!r}"
    assert err.startswith(f"recsys import: error: {where}: ")
    assert needle in err
    assert "Traceback" not in err
    assert snapshot(db) == before


def test_cli_imports_and_prints_a_summary(db, settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    for kind, text in (("players", PLAYERS_CSV), ("slots", SLOTS_CSV), ("sessions", SESSIONS_CSV)):
        assert main(["import", kind, str(write(tmp_path, f"{kind}.csv", text))]) == 0
    out = capsys.readouterr().out
    assert "3 sessions read: 3 inserted, 0 updated, 0 unchanged" in out
    assert sessions_rows(db) == EXPECTED_SESSIONS
    assert main(["import", "sessions", str(tmp_path / "sessions.csv")]) == 0
    assert "3 sessions read: 0 inserted, 0 updated, 3 unchanged" in capsys.readouterr().out


def test_cli_missing_file(settings, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RECSYS_DATABASE_URL", settings.database.url)
    assert main(["import", "players", str(tmp_path / "nope.parquet")]) == 2
    assert "nope.parquet: no such file" in capsys.readouterr().err


def test_a_bigger_import_round_trips(db, tmp_path):
    """A few thousand rows through both paths: counts and one computed value per row."""
    n = 3000
    players = pd.DataFrame({"player_id": [f"p{i}" for i in range(100)], "marketing_consent": "true"})
    players.to_csv(tmp_path / "players.csv", index=False)
    import_file(db, "players", tmp_path / "players.csv")
    import_file(db, "slots", write(tmp_path, "slots.csv", SLOTS_CSV))
    start = pd.Timestamp("2024-01-01T00:00:00Z") + pd.to_timedelta(range(n), unit="min")
    sessions = pd.DataFrame(
        {
            "session_id": [f"s{i}" for i in range(n)],
            "player_id": [f"p{i % 100}" for i in range(n)],
            "slot_id": ["g1", "g2"] * (n // 2),
            "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ended_at": (start + pd.to_timedelta([i % 50 for i in range(n)], unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    sessions.to_parquet(tmp_path / "sessions.parquet")
    result = import_file(db, "sessions", tmp_path / "sessions.parquet")
    assert (result.rows, result.inserted) == (n, n)
    assert _rows(db, "SELECT sum(seconds), count(DISTINCT player_key) FROM play_sessions") == [
        (float(sum(i % 50 for i in range(n))), 100)
    ]


def test_the_migration_makes_stored_empty_markets_every_market(server_url):
    # Rows the importer stored as '{}' before issue 22 are served nowhere until the migration.
    import psycopg
    from alembic.script import ScriptDirectory

    from recsys.db import migrations
    from recsys.db.engine import with_database

    scripts = ScriptDirectory.from_config(migrations.alembic_config(server_url))
    script = next(s for s in scripts.walk_revisions() if s.path.endswith("_empty_markets_are_every_market.py"))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS recsys_empty_markets WITH (FORCE)")
        conn.execute("CREATE DATABASE recsys_empty_markets")
    url = with_database(server_url, "recsys_empty_markets")
    try:
        migrations.upgrade(url, script.down_revision)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO slots (slot_id, name, provider, theme, volatility, rtp, min_bet, max_bet, "
                         "markets) VALUES ('empty', 'E', 'P', 't', 'low', 95, 0.1, 1, '{}'), "
                         "('listed', 'L', 'P', 't', 'low', 95, 0.1, 1, '{SE}')")
        migrations.upgrade(url)
        with psycopg.connect(url) as conn:
            rows = dict(conn.execute("SELECT slot_id, markets FROM slots").fetchall())
        assert rows == {"empty": None, "listed": ["SE"]}
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS recsys_empty_markets WITH (FORCE)")
