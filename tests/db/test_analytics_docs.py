"""Every SQL block of docs/analytics.md runs as the analyst role on a seeded database and answers."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import add_player, add_session, add_slot

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
# Run by the database owner: an analyst cannot create roles (that is the point of the role).
OWNER_ONLY = re.compile(r"^\s*CREATE ROLE", re.IGNORECASE)


@pytest.fixture
def seeded(db):
    """Yesterday (UTC): one list of two items served to alice by version 7 on the long-session trigger,
    both shown, the explored one clicked and then played for 15 minutes; the trigger fired at 21:05.
    A month earlier version 6 showed the slot "fruit" 500 times on request, never clicked."""
    created = datetime.now(UTC).replace(hour=20, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with db.begin() as conn:
        alice = add_player(conn, "alice")
        fruit, wolf = add_slot(conn, "fruit"), add_slot(conn, "wolf", provider="howl")
        conn.execute(sa.text(
            "INSERT INTO model_versions (id, status, model, params, metrics) "
            "VALUES (7, 'active', 'neumf', '{}', '{\"hr@10\": 0.7}')"
        ))
        rec = uuid.uuid4()
        conn.execute(
            sa.text("INSERT INTO recommendations (id, player_key, version_id, trigger, created_at, slot_keys, scores, "
                    "reasons, explored) VALUES (:r, :p, 7, 'session_threshold', :t, ARRAY[:fruit, :wolf], '{0.5,0.5}', "
                    "'{similar,explore}', '{f,t}')"),
            {"r": rec, "p": alice, "t": created, "fruit": fruit, "wolf": wolf},
        )
        for slot, action in ((fruit, "impression"), (wolf, "impression"), (wolf, "click")):
            conn.execute(
                sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) VALUES (:r, :s, :a, :t)"),
                {"r": rec, "s": slot, "a": action, "t": created},
            )
        conn.execute(sa.text(
            "INSERT INTO model_versions (id, status, model, params) VALUES (6, 'retired', 'neumf', '{}')"
        ))
        conn.execute(
            sa.text(
                "WITH lists AS (INSERT INTO recommendations (id, player_key, version_id, trigger, created_at, "
                "  slot_keys, scores, reasons, explored) "
                "  SELECT gen_random_uuid(), :p, 6, 'api', :t, ARRAY[:s], '{0.4}', '{personal}', '{f}' "
                "  FROM generate_series(1, 500) RETURNING id) "
                "INSERT INTO feedback (recommendation_id, slot_key, action, ts) "
                "SELECT id, :s, 'impression', :t FROM lists"
            ),
            {"p": alice, "s": fruit, "t": created - timedelta(days=30)},
        )
        long = add_session(conn, "s0", alice, fruit, created - timedelta(hours=1), 3900)
        conn.execute(sa.text("UPDATE play_sessions SET trigger_fired_at = :t WHERE id = :s"),
                     {"t": created.replace(hour=21, minute=5), "s": long})
        played = add_session(conn, "s1", alice, wolf, created + timedelta(minutes=2), 900)
        conn.execute(sa.text("UPDATE play_sessions SET recommendation_id = :r WHERE id = :s"),
                     {"r": rec, "s": played})
    return db, rec, created


def _run(engine, sql: str, role: str | None) -> list[tuple]:
    with engine.connect() as conn:
        if role:
            conn.exec_driver_sql(f"SET ROLE {role}")
        result = conn.exec_driver_sql(sql)
        rows = [tuple(r) for r in result] if result.returns_rows else []
        conn.rollback()
    return rows


def test_the_page_has_its_queries():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_every_block_runs_as_the_analyst(seeded, number):
    engine, _, _ = seeded
    sql = BLOCKS[number]
    role = None if OWNER_ONLY.match(sql) else "recsys_analyst"
    rows = _run(engine, sql, role)
    if role is not None:
        assert rows, f"block {number} answered nothing on the seeded database:\n{sql}"


def _block(start: str) -> str:
    (sql,) = [b for b in BLOCKS if b.lstrip().startswith(start)]
    return sql


def test_known_answers(seeded):
    engine, rec, created = seeded
    funnel = _run(engine, _block("SELECT day, model_version, trigger"), "recsys_analyst")
    # served, impressions, clicks, plays, ctr, hours played after a click (900 s = 0.25 h -> 0.3)
    assert [r[1:] for r in funnel] == [(7, "session_threshold", 2, 2, 1, 1, Decimal("0.500"), Decimal("0.3"))]
    assert funnel[0][0] == created.date()
    explored = _run(engine, _block("SELECT model_version, explored"), "recsys_analyst")
    assert [r[1:] for r in explored] == [(False, 500, 0, 0), (False, 1, 0, 0), (True, 1, 1, 1)]
    assert [r[0] for r in explored] == [6, 7, 7]
    rarely = _run(engine, _block("SELECT slot_id, provider, theme"), "recsys_analyst")
    assert rarely == [("fruit", "acme", "fruit", 501, 501, 0, 0.0)]
    (explained,) = _run(engine, _block("SELECT r.id, r.created_at"), "recsys_analyst")
    assert explained[0] == rec and explained[3] == 7 and explained[-1] == {"hr@10": 0.7}
    hours = _run(engine, _block("SELECT extract(hour FROM trigger_fired_at"), "recsys_analyst")
    assert [(int(h), n) for h, n in hours] == [(21, 1)]
