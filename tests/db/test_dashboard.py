"""The dashboard overview's counts (recsys.db.dashboard): known answers on a small log, the same as the
queries they replaced (issue 22: the old funnel took 97.6 s at volume), and reached through the
indexes of migration 0013."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from recsys.db import dashboard
from tests.factories import add_player, add_session, add_slot

# The overview's queries before migration 0013, the reference the new ones must agree with.
OLD_HOURLY_LISTS = """
SELECT h.hour, r.suppressed_reason, r.trigger, count(r.id) AS n
FROM generate_series(date_trunc('hour', now()) - make_interval(hours => :h - 1), date_trunc('hour', now()),
                     interval '1 hour') AS h(hour)
LEFT JOIN recommendations r ON r.created_at >= h.hour AND r.created_at < h.hour + interval '1 hour'
GROUP BY h.hour, r.suppressed_reason, r.trigger ORDER BY h.hour
"""
OLD_FUNNEL = """
SELECT count(*) AS served,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                      AND f.slot_key = i.slot_key AND f.action = 'impression')) AS impressions,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                      AND f.slot_key = i.slot_key AND f.action = 'click')) AS clicks,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM play_sessions s WHERE s.recommendation_id = i.recommendation_id
                                      AND s.slot_key = i.slot_key)) AS plays,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                                      AND f.slot_key = i.slot_key AND f.action = 'dismiss')) AS dismissals
FROM recommendation_items i WHERE i.created_at >= now() - make_interval(hours => :h)
"""


def add_list(conn, list_id: str, player: int, made: datetime, slots: list[int], *, trigger: str = "api",
             suppressed: str | None = None) -> str:
    conn.execute(sa.text("INSERT INTO recommendations (id, player_key, trigger, suppressed_reason, created_at, "
                         "slot_keys, scores, reasons, explored) VALUES (:id, :p, :t, :s, :at, :slots, :scores, "
                         ":reasons, :explored)"),
                 {"id": list_id, "p": player, "t": trigger, "s": suppressed, "at": made, "slots": slots,
                  "scores": [1.0] * len(slots), "reasons": ["personal"] * len(slots),
                  "explored": [False] * len(slots)})
    return list_id


def add_feedback(conn, list_id: str, slot: int, action: str, received: datetime) -> None:
    conn.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts, received_at) "
                         "VALUES (:id, :slot, :action, :at, :at)"),
                 {"id": list_id, "slot": slot, "action": action, "at": received})


def attribute(conn, session: int, list_id: str) -> None:
    conn.execute(sa.text("UPDATE play_sessions SET recommendation_id = :id WHERE id = :s"),
                 {"id": list_id, "s": session})


@pytest.fixture
def log(db):
    """Two lists served in the last 24 hours (five items), one suppressed, one 30 hours old with late
    feedback, and play attributed twice to one item."""
    return write_log(db)


@pytest.fixture
def fresh_log(server_url):
    """:func:`log`'s rows in a database made for the test: tables the planner has no statistics of,
    whatever the worker's database held before (other files' rows left statistics behind their
    TRUNCATE, and the funnel's plan then chose other indexes in fresh-clone CI runs)."""
    from recsys.db import migrations
    from recsys.db.engine import sqlalchemy_url, with_database
    from tests.conftest import worker_name

    name = worker_name("recsys_funnel")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = with_database(server_url, name)
    migrations.upgrade(url)
    engine = sa.create_engine(sqlalchemy_url(url))
    yield write_log(engine)
    engine.dispose()
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def write_log(db):
    now = datetime.now(UTC)
    with db.begin() as conn:
        p1, p2 = add_player(conn, "p1"), add_player(conn, "p2")
        a, b, c = (add_slot(conn, s) for s in ("a", "b", "c"))
        new = add_list(conn, "00000000-0000-0000-0000-000000000001", p1, now - timedelta(hours=2), [a, b, c])
        other = add_list(conn, "00000000-0000-0000-0000-000000000002", p2, now - timedelta(hours=5), [a, b],
                         trigger="session_threshold")
        add_list(conn, "00000000-0000-0000-0000-000000000003", p2, now - timedelta(hours=1), [],
                 suppressed="self_excluded")
        old = add_list(conn, "00000000-0000-0000-0000-000000000004", p1, now - timedelta(hours=30), [a, b])
        later = now - timedelta(minutes=90)
        for slot, action in ((a, "impression"), (a, "click"), (a, "play"), (b, "impression"), (b, "dismiss")):
            add_feedback(conn, new, slot, action, later)
        add_feedback(conn, other, a, "impression", now - timedelta(hours=4))
        add_feedback(conn, old, a, "impression", now - timedelta(hours=29))
        add_feedback(conn, old, a, "click", now - timedelta(hours=29))
        add_feedback(conn, old, b, "impression", now - timedelta(hours=1))  # late, on a list out of the window
        for n in range(2):  # two sessions from one item: it counts once
            attribute(conn, add_session(conn, f"s{n}", p1, a, later + timedelta(minutes=n), 60.0), new)
        attribute(conn, add_session(conn, "s-old", p1, a, now - timedelta(hours=28), 60.0), old)
        add_session(conn, "s-own", p2, b, later, 60.0)
    return db


def old_hourly(conn, hours: int) -> list[tuple]:
    out: dict = {}
    for hour, reason, trigger, n in conn.execute(sa.text(OLD_HOURLY_LISTS), {"h": hours}):
        served, triggered, suppressed = out.get(hour, (0, 0, {}))
        if trigger is not None and reason is not None:
            suppressed[reason] = suppressed.get(reason, 0) + n
        elif trigger is not None:
            served, triggered = served + n, triggered + (n if trigger != "api" else 0)
        out[hour] = (served, triggered, suppressed)
    return [(hour, *counts) for hour, counts in out.items()]


def test_the_funnel_counts_the_windows_items_once_per_stage(log):
    with log.connect() as conn:
        assert dashboard.funnel(conn, 24) == {"served": 5, "impressions": 3, "clicks": 1, "plays": 1,
                                              "dismissals": 1}
        assert dashboard.funnel(conn, 48) == {"served": 7, "impressions": 5, "clicks": 2, "plays": 2,
                                              "dismissals": 1}


def test_the_counts_agree_with_the_queries_they_replaced(log):
    hours, funnel = dashboard.overview_counts(log, 24)
    with log.connect() as conn:
        for window in (3, 24, 48):
            assert dashboard.funnel(conn, window) == dict(conn.execute(sa.text(OLD_FUNNEL), {"h": window})
                                                          .one()._mapping), window
        assert [(h.hour, h.served, h.triggered, h.suppressed) for h in hours] == old_hourly(conn, 24)
        assert funnel == dashboard.funnel(conn, 24)
    assert len(hours) == 24 and sum(h.served for h in hours) == 2 and sum(h.triggered for h in hours) == 1
    assert [h.suppressed for h in hours if h.suppressed] == [{"self_excluded": 1}]


def test_an_hour_without_lists_is_a_row_of_zeros(db):
    hours, funnel = dashboard.overview_counts(db, 6)
    assert [(h.served, h.triggered, h.suppressed) for h in hours] == [(0, 0, {})] * 6
    assert hours[-1].hour == datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    assert funnel == {"served": 0, "impressions": 0, "clicks": 0, "plays": 0, "dismissals": 0}


def test_the_funnel_reaches_feedback_items_and_play_through_the_indexes(fresh_log):
    """The plan the 97.6 s funnel lacked (migration 0013): with sequential scans priced out, each
    table is read through its index, so none is scanned per item."""
    with fresh_log.begin() as conn:
        conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(sa.text("EXPLAIN " + dashboard.FUNNEL), {"h": 24}).scalars())
    for index in ("ix_feedback_received_at", "ix_play_sessions_recommendation_id_slot_key",
                  "created_at_idx"):  # recommendations' per-month copies of ix_recommendations_created_at
        assert index in plan, plan
