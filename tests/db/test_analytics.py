"""The analyst views answer on a hand-built example, and the analyst role reads but never writes."""

import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import push
from recsys.db.listener import Listener
from recsys.db.pipeline_runs import PIPELINE_LOCK, pipeline_lock
from recsys.db.versions import ACTIVATION_LOCK
from tests.api.conftest import wait_until
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
                "INSERT INTO recommendations (id, player_key, version_id, trigger, created_at, slot_keys, scores, "
                "reasons, explored) VALUES (:r, :p, 7, 'session_threshold', :t, ARRAY[:fruit, :wolf], '{0.5,0.5}', "
                "'{similar,explore}', '{f,t}')"
            ),
            {"r": rec, "p": alice, "t": T0, "fruit": fruit, "wolf": wolf},
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


# --- issue 22, failure 2: the analyst reads and nothing more ---------------------------------------------

ANALYST_LOGIN = "recsys_analyst_login_test"


@pytest.fixture
def analyst(database_url):
    """``analyst(how)``: a connection acting as the analyst, by ``set role`` (the NOLOGIN role) or by
    ``login`` as a LOGIN role that is a member of recsys_analyst (as an analyst's own login is)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {ANALYST_LOGIN}")
        conn.execute(f"CREATE ROLE {ANALYST_LOGIN} LOGIN IN ROLE recsys_analyst")

    def connect(how: str) -> psycopg.Connection:
        if how == "login":
            return psycopg.connect(database_url, user=ANALYST_LOGIN, password="", autocommit=True)
        conn = psycopg.connect(database_url, autocommit=True)
        conn.execute("SET ROLE recsys_analyst")
        return conn

    yield connect
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (ANALYST_LOGIN,)
        )
        conn.execute(f"DROP ROLE IF EXISTS {ANALYST_LOGIN}")


ADVISORY = [
    f"SELECT {name}({key})"
    for name in ("pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock_shared",
                 "pg_advisory_xact_lock", "pg_try_advisory_xact_lock")
    for key in (PIPELINE_LOCK, ACTIVATION_LOCK, "1, 2")
]


@pytest.mark.parametrize("how", ["set role", "login"])
def test_the_analyst_can_take_no_advisory_lock(database_url, analyst, how):
    with analyst(how) as conn:
        for statement in ADVISORY:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchone()[0] == 0


def test_the_pipeline_and_activation_locks_stay_the_applications(db, analyst):
    with analyst("login") as analyst:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(f"SELECT pg_advisory_lock({PIPELINE_LOCK})")
        with pipeline_lock(db):  # taken at once: nothing the analyst did holds it
            pass
        with db.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ACTIVATION_LOCK})


@pytest.mark.parametrize("how", ["set role", "login"])
def test_the_analyst_can_write_no_large_object(analyst, how):
    for statement in ("SELECT lo_from_bytea(0, '\\x00'::bytea)", "SELECT lo_create(0)", "SELECT lo_creat(-1)",
                      "SELECT lo_import('/etc/hostname')"):
        with analyst(how) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.mark.parametrize("how", ["set role", "login"])
def test_the_analyst_can_neither_read_the_notify_key_nor_sign(analyst, how):
    for statement in ("SELECT * FROM notify_keys", "SELECT recsys_notify('recsys_push', '{}')"):
        with analyst(how) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_a_listener_hears_only_what_the_application_signed(database_url, analyst):
    """The analyst's ``NOTIFY`` (forged, or a replay of a signed payload it heard) reaches no
    callback; the application's own announcement does, with its payload as sent."""
    heard: list[psycopg.Notify] = []
    connected = threading.Event()
    listener = Listener(database_url, (push.CHANNEL,), heard.extend, on_connect=lambda first: connected.set(),
                        debounce_seconds=0.005).start()
    forged = json.dumps({"recommendation_id": str(uuid.uuid4()), "player_id": "P00020000"})
    real = push.Notice(uuid.uuid4(), "P00000001")
    try:
        assert connected.wait(10)
        with psycopg.connect(database_url, autocommit=True) as eavesdropper, \
                analyst("login") as analyst:
            eavesdropper.execute(f"LISTEN {push.CHANNEL}")
            analyst.execute(f"NOTIFY {push.CHANNEL}, '{forged}'")

            async def announce():
                async with await psycopg.AsyncConnection.connect(database_url) as app:
                    await push.notify(app, [real])  # committed when the block ends

            asyncio.run(announce())
            assert wait_until(lambda: len(heard) == 1, timeout=10)
            signed = [n for n in eavesdropper.notifies(timeout=2, stop_after=2) if n.pid != analyst.info.backend_pid]
            assert len(signed) == 1
            analyst.execute(f"NOTIFY {push.CHANNEL}, '{signed[0].payload}'")  # a replay, from the analyst
            assert wait_until(lambda: listener.verifier.dropped == 2, timeout=10)
        assert [(n.channel, push.notice(n)) for n in heard] == [(push.CHANNEL, real)]
    finally:
        listener.stop(timeout=5)


def test_the_catalogue_trigger_signs_its_notifications(db, database_url):
    heard: list[psycopg.Notify] = []
    connected = threading.Event()
    listener = Listener(database_url, ("recsys_catalogue",), heard.extend, on_connect=lambda first: connected.set(),
                        debounce_seconds=0.005).start()
    try:
        assert connected.wait(10)
        with db.begin() as conn:
            add_slot(conn, "signed")
        assert wait_until(lambda: len(heard) == 1, timeout=10)
        assert heard[0].payload == "INSERT" and listener.verifier.dropped == 0
    finally:
        listener.stop(timeout=5)
