"""The analyst views answer on a hand-built example, and the analyst role reads but never writes."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.factories import add_player, add_session, add_slot

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)


@pytest.fixture
def history(db):
    with db.begin() as conn:
        alice = add_player(conn, "alice")
        fruit, wolf = add_slot(conn, "fruit"), add_slot(conn, "wolf", provider="howl")
        rec = uuid.uuid4()
        conn.execute(
            sa.text("INSERT INTO model_versions (id, status, model, params) VALUES (7, 'active', 'neumf', '{}')")
        )
        conn.execute(
            sa.text(
                "INSERT INTO recommendations (id, player_key, version_id, trigger, created_at) "
                "VALUES (:r, :p, 7, 'session_threshold', :t)"
            ),
            {"r": rec, "p": alice, "t": T0},
        )
        for rank, (slot, reason, explored) in enumerate([(fruit, "similar", False), (wolf, "explore", True)], 1):
            conn.execute(
                sa.text(
                    "INSERT INTO recommendation_items (recommendation_id, rank, slot_key, score, reason, explored) "
                    "VALUES (:r, :rank, :s, 0.5, :reason, :explored)"
                ),
                {"r": rec, "rank": rank, "s": slot, "reason": reason, "explored": explored},
            )
        for slot, action in ((fruit, "impression"), (wolf, "impression"), (wolf, "click")):
            conn.execute(
                sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) VALUES (:r, :s, :a, :t)"),
                {"r": rec, "s": slot, "a": action, "t": T0},
            )
        session = add_session(conn, "s1", alice, wolf, T0 + timedelta(minutes=2), 900)
        conn.execute(sa.text("UPDATE play_sessions SET recommendation_id = :r WHERE id = :s"), {"r": rec, "s": session})
    return db


def test_daily_funnel(history):
    with history.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT reason, served, impressions, clicks, plays, play_seconds_after_click "
                "FROM v_recommendation_funnel_daily WHERE day = '2026-03-01' AND model_version = 7 "
                "AND trigger = 'session_threshold' ORDER BY reason"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("explore", 1, 1, 1, 1, 900.0), ("similar", 1, 1, 0, 0, 0.0)]


def test_slot_performance_and_exploration_outcomes(history):
    with history.connect() as conn:
        wolf = conn.execute(
            sa.text("SELECT served, impressions, clicks, plays, click_through_rate FROM v_slot_performance "
                    "WHERE slot_id = 'wolf'")
        ).one()
        explored = dict(
            conn.execute(sa.text("SELECT explored, click_through_rate FROM v_exploration_outcomes")).all()
        )
    assert tuple(wolf) == (1, 1, 1, 1, 1.0)
    assert explored == {True: 1.0, False: 0.0}


def test_the_analyst_role_reads_but_cannot_write(history):
    with history.connect() as conn:
        conn.execute(sa.text("SET ROLE recsys_analyst"))
        assert conn.execute(sa.text("SELECT count(*) FROM v_recommendation_items")).scalar_one() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM play_sessions")).scalar_one() == 1
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT * FROM api_keys"))
    for statement in (
        "UPDATE players SET risk_flag = true",
        "DELETE FROM feedback",
        "INSERT INTO slots (slot_id, name, provider, theme, volatility, rtp, min_bet, max_bet) "
        "VALUES ('x', 'x', 'x', 'x', 'low', 96, 0, 1)",
        "CREATE TABLE scratch (x int)",
    ):
        with history.connect() as conn:
            conn.execute(sa.text("SET ROLE recsys_analyst"))
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(statement))


def test_the_analyst_role_has_a_statement_timeout_no_temp_tables_and_no_pg_notify(history):
    with history.connect() as conn:
        config = conn.execute(sa.text("SELECT rolconfig FROM pg_roles WHERE rolname = 'recsys_analyst'")).scalar_one()
        assert "statement_timeout=60s" in config
    for statement in ("CREATE TEMP TABLE scratch (x int)", "SELECT pg_notify('recsys_versions', '1')"):
        with history.connect() as conn:
            conn.execute(sa.text("SET ROLE recsys_analyst"))
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text(statement))
    with history.connect() as conn:  # the application's own role keeps both
        conn.execute(sa.text("CREATE TEMP TABLE scratch (x int)"))
        conn.execute(sa.text("SELECT pg_notify('recsys_test', '1')"))
