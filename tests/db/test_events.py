import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recsys.db.events import store_events
from recsys.errors import InputError
from recsys.events import PlayEvent
from tests.factories import add_player, add_slot
from tests.online import in_transaction

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
PAUSE, THRESHOLD = 300.0, 3600.0


def _heartbeats(session_id: str, minutes: range, *, prefix: str = "e", player="alice", slot="fruit") -> list[PlayEvent]:
    return [
        PlayEvent(
            f"{prefix}-{session_id}-{m}",
            "start" if m == 0 else "heartbeat",
            session_id,
            player,
            slot,
            T0 + timedelta(minutes=m),
        )
        for m in minutes
    ]


def _store(engine, events):
    return in_transaction(engine, lambda conn: store_events(conn, events, pause_seconds=PAUSE,
                                                            threshold_seconds=THRESHOLD))


def _session(engine, session_id):
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT started_at, last_event_at, ended_at, seconds, spins, total_bet, trigger_fired_at "
                "FROM play_sessions WHERE session_id = :s"
            ),
            {"s": session_id},
        ).one()


@pytest.fixture
def casino(db):
    with db.begin() as conn:
        add_player(conn, "alice")
        add_slot(conn, "fruit")
        add_slot(conn, "pharaoh")
    return db


def test_crossing_one_hour_in_event_time_triggers_once(casino):
    first = _store(casino, _heartbeats("s1", range(0, 60)))  # 0..59 minutes: not yet an hour
    assert (first.accepted, first.duplicates, first.triggered) == (60, 0, [])
    second = _store(casino, _heartbeats("s1", range(60, 61)))
    assert [(t.session_id, t.player_id, t.slot_id, t.continuous_seconds) for t in second.triggered] == [
        ("s1", "alice", "fruit", 3600.0)
    ]
    assert _store(casino, _heartbeats("s1", range(61, 70))).triggered == []
    assert _session(casino, "s1").trigger_fired_at is not None


def test_a_retried_batch_changes_nothing(casino):
    events = _heartbeats("s1", range(0, 10)) + [
        PlayEvent("spin-1", "spin", "s1", "alice", "fruit", T0 + timedelta(minutes=3), bet=2.0, win=0.5)
    ]
    assert _store(casino, events).accepted == 11
    before = _session(casino, "s1")
    again = _store(casino, events)
    assert (again.accepted, again.duplicates) == (0, 11)
    assert _session(casino, "s1") == before
    assert (before.spins, float(before.total_bet), before.seconds) == (1, 2.0, 540.0)


def test_out_of_order_events_give_the_same_session(casino):
    events = _heartbeats("s1", range(0, 30)) + [
        PlayEvent("end", "end", "s1", "alice", "fruit", T0 + timedelta(minutes=30))
    ]
    _store(casino, list(reversed(events[15:])))
    _store(casino, list(reversed(events[:15])))
    row = _session(casino, "s1")
    assert (row.started_at, row.last_event_at, row.ended_at, row.seconds) == (
        T0,
        T0 + timedelta(minutes=30),
        T0 + timedelta(minutes=30),
        1800.0,
    )


def test_a_pause_longer_than_the_limit_restarts_continuity(casino):
    # 40 minutes, a 10-minute pause, then 40 more: 80 minutes played, but never one hour at a stretch.
    events = _heartbeats("s1", range(0, 41)) + _heartbeats("s1", range(51, 92))
    result = _store(casino, events)
    assert result.triggered == []
    assert _session(casino, "s1").seconds == 4800.0
    # a late heartbeat that fills the pause joins the two stretches: 91 continuous minutes
    late = _store(casino, _heartbeats("s1", range(44, 50, 3), prefix="late"))
    assert [t.continuous_seconds for t in late.triggered] == [91 * 60.0]


def test_concurrent_duplicate_heartbeats_trigger_exactly_once(casino):
    _store(casino, _heartbeats("s1", range(0, 59)))
    crossing = _heartbeats("s1", range(59, 64))
    results, errors = [], []
    barrier = threading.Barrier(6)

    def send(i: int) -> None:
        # every thread sends the same events, and half also send their own
        batch = crossing + (_heartbeats("s1", range(64, 66), prefix=f"t{i}") if i % 2 else [])
        barrier.wait()
        try:
            results.append(_store(casino, batch))
        except Exception as exc:  # collected, then asserted empty
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(len(r.triggered) for r in results) == 1
    assert sum(r.accepted for r in results) == 5 + 3 * 2


def test_a_bad_event_rejects_the_whole_batch(casino):
    events = _heartbeats("s1", range(0, 5)) + _heartbeats("s2", range(0, 2), player="mallory")
    with pytest.raises(InputError) as info:
        _store(casino, events)
    assert (info.value.index, info.value.field) == (5, "player_id")
    with casino.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM play_events")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM play_sessions")).scalar_one() == 0


def test_a_session_cannot_move_to_another_slot(casino):
    _store(casino, _heartbeats("s1", range(0, 2)))
    with pytest.raises(InputError) as info:
        _store(casino, _heartbeats("s1", range(2, 4), slot="pharaoh"))
    assert (info.value.index, info.value.field) == (0, "slot_id")


def test_appending_and_recomputing_give_the_same_sessions(casino):
    """The incremental path (events after the latest) and the full recompute (events in the past)."""
    import numpy as np

    rng = np.random.default_rng(5)
    offsets = np.cumsum(rng.choice([30, 60, 120, 700], size=80, p=[0.4, 0.4, 0.15, 0.05]))
    kinds = rng.choice(["heartbeat", "spin"], size=80)

    def events(session: str) -> list[PlayEvent]:
        return [
            PlayEvent(
                f"{session}-{i}",
                "start" if i == 0 else str(kind),
                session,
                "alice",
                "fruit",
                T0 + timedelta(seconds=int(o)),
                bet=1.0 if kind == "spin" else None,
            )
            for i, (o, kind) in enumerate(zip(offsets, kinds, strict=True))
        ]

    forward, backward = events("forward"), events("backward")
    for start in range(0, 80, 7):
        _store(casino, forward[start : start + 7])
    for start in reversed(range(0, 80, 7)):
        _store(casino, backward[start : start + 7])
    assert _session(casino, "forward")[:6] == _session(casino, "backward")[:6]
    assert _session(casino, "forward").seconds > 0


def test_the_statements_pass_their_data_as_parameters_and_read_as_written():
    # Issue 21: no data through session settings, no fake rows, no statement compacted to a byte budget.
    from recsys.db import events, feedback, lists, push

    statements = [events._PLAYER_KEYS, events._SLOT_KEYS, events._CREATE_SESSIONS, events._LOCK_SESSIONS,
                  events._STORE, events._CLAIM_TRIGGER, feedback.ATTRIBUTE_SESSIONS, lists._PLAYER, lists._LOG,
                  push._NOTIFY]
    for sql in statements:
        assert "current_setting(" not in sql and "set_config('recsys." not in sql
        assert "UNION ALL\nSELECT 'g'" not in sql
    assert [sql.count("\n") > 10 for sql in (events._STORE, events._CLAIM_TRIGGER)] == [True, True]
    named = ["new", "inserted", "touched", "gaps", "appended", "append", "everything", "segments", "spans", "totals",
             "recompute"]
    assert [f"{name} AS (" in events._STORE for name in named] == [True] * len(named)


def test_the_batch_runs_on_generic_plans_until_a_trigger_fires(casino):
    # The first statement sets plan_cache_mode for the batch's transaction; a trigger sets it back.
    seen, engine = [], casino

    def store_then_show(events):
        async def work(conn):
            result = await store_events(conn, events, pause_seconds=PAUSE, threshold_seconds=THRESHOLD)
            seen.append((await (await conn.execute("SHOW plan_cache_mode")).fetchone())[0])
            return result

        return in_transaction(engine, work)

    store_then_show(_heartbeats("a", range(0, 30)))
    result = store_then_show(_heartbeats("a", range(30, 61)))
    with engine.connect() as conn:
        seen.append(conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one())
    assert len(result.triggered) == 1
    assert seen == ["force_generic_plan", "auto", "auto"]


def test_the_claim_reads_only_its_candidates_events(casino):
    # The candidates' events through the index (an InitPlan), not by scanning every stored event (0.8 s
    # for 50 candidates over 175,000 events, over the API's statement timeout with a few crossing
    # batches at once).
    from recsys.db import events

    with casino.begin() as conn:
        conn.exec_driver_sql("""
            INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at)
            SELECT 'bulk-' || i, (SELECT id FROM players LIMIT 1), (SELECT id FROM slots LIMIT 1), now(), now()
            FROM generate_series(1, 400) AS i""")
        conn.exec_driver_sql("""
            INSERT INTO play_events (event_id, session_key, type, ts)
            SELECT 'bulk-' || s.id || '-' || e, s.id, 'heartbeat', now() - make_interval(secs => e)
            FROM play_sessions s, generate_series(1, 100) AS e WHERE starts_with(s.session_id, 'bulk-')""")
        conn.exec_driver_sql("ANALYZE play_events")
        keys = conn.exec_driver_sql(
            "SELECT id FROM play_sessions WHERE starts_with(session_id, 'bulk-') LIMIT 2").scalars()
        sql = (events._CLAIM_TRIGGER.replace("%(threshold)s", "3600").replace("%(pause)s", "600")
               .replace("%(sessions)s", "'{" + ",".join(map(str, keys)) + "}'"))
        plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql).scalars())
    assert "Seq Scan on play_events" not in plan
    assert "Index Cond: (session_key = ANY ((InitPlan" in plan


def test_a_batch_that_begins_its_own_transaction_sends_begin_with_its_first_statements(casino, tmp_path):
    # recsys.db.pool.begun with store_events(begin=True): BEGIN goes in the first pipeline (conn.transaction()
    # would send it alone, a round trip more); the block commits, or rolls back what it wrote when it raises.
    import asyncio

    import psycopg

    from recsys.db.pool import begun
    from tests.online import url_of

    trace = tmp_path / "trace.txt"

    async def scenario():
        async with await psycopg.AsyncConnection.connect(url_of(casino), autocommit=True) as conn:
            with trace.open("w") as out:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
                async with begun(conn):
                    stored = await store_events(conn, _heartbeats("b", range(0, 3)), pause_seconds=PAUSE,
                                                threshold_seconds=THRESHOLD, begin=True)
                conn.pgconn.untrace()
            with pytest.raises(InputError):
                async with begun(conn):
                    await store_events(conn, _heartbeats("c", range(0, 3)), pause_seconds=PAUSE,
                                       threshold_seconds=THRESHOLD, begin=True)
                    raise InputError("events", "refused after storing")
            return stored, conn.info.transaction_status

    stored, status = asyncio.run(scenario())
    assert stored.accepted == 3 and status == psycopg.pq.TransactionStatus.IDLE
    sent = [line.split("\t")[2].split()[0] for line in trace.read_text().splitlines() if line.startswith("F\t")]
    first_round_trip = sent[: sent.index("Sync")]
    assert first_round_trip.count("Parse") + first_round_trip.count("Bind") > 2  # BEGIN and the batch's first steps
    assert sent.count("Sync") + sent.count("Query") == 3  # round trips: the two pipelines and the COMMIT query
    with casino.connect() as conn:
        sessions = conn.execute(sa.text("SELECT session_id FROM play_sessions ORDER BY 1")).scalars().all()
    assert sessions == ["b"]
