"""The experiments' rollup (recsys.db.experiment_rollups) against the reference query over the log:
the same per-player sums after lists, late feedback, late attribution, growing sessions, suppressed
lists and reality checks, changes committed after a refresh began, concurrent refreshes; a stopped
experiment frozen a day after its stop."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from recsys.db import experiment_rollups
from recsys.db import experiments as store
from recsys.experiments import SUM_NAMES, Arm, ArmOutcome, PlayerSums, SummedSums, assign, results
from tests.experiment_world import ClickModel, serve_experiment, two_versions

THRESHOLD = 600.0


@pytest.fixture
def world(db):
    players, slots, old, new = two_versions(db, 120)
    experiment = store.start(db, "rolled", (Arm("control", old, 50), Arm("candidate", new, 50)))
    return experiment, players, list(slots.values())


def assert_same(engine, experiment, threshold=THRESHOLD):
    """The rollup's outcomes equal the reference query's, player by player, exactly."""
    rolled = store.outcomes(engine, experiment, threshold)
    logged = store.outcomes_from_log(engine, experiment, threshold)
    assert [(o.arm, o.version_id, o.weight) for o in rolled] == [(o.arm, o.version_id, o.weight) for o in logged]
    for r, g in zip(rolled, logged, strict=True):
        for name in SUM_NAMES:
            assert np.array_equal(getattr(r.sums, name), getattr(g.sums, name)), (r.arm, name)
        assert r.median_click_minutes == g.median_click_minutes
    assert same_results(rolled, logged, experiment.min_effect)
    return rolled


def same_results(a, b, min_effect) -> bool:
    """The same estimates, sample plans and guardrail flags (the outcomes' sums may differ in kind)."""
    return [(r.estimates, r.sample, r.guardrail_flags()) for r in results(a, min_effect)] == \
           [(r.estimates, r.sample, r.guardrail_flags()) for r in results(b, min_effect)]


def serve(engine, experiment, players, slots, seed):
    serve_experiment(engine, experiment, players, slots, {"control": ClickModel(0.3), "candidate": ClickModel(0.4)},
                     seed=seed)
    with engine.begin() as conn:  # whole seconds: a float sum is then the same in any order (both queries'
        conn.execute(sa.text("UPDATE play_sessions SET seconds = round(seconds)"))  # orders are unspecified)


def log_list(conn, experiment, player_id, player_key, *, suppressed=None, action=None):
    conn.execute(sa.text(
        "INSERT INTO recommendations (id, player_key, trigger, experiment_id, arm, suppressed_reason, action) "
        "VALUES (:id, :p, 'session_threshold', :e, :arm, :s, :a)"),
        {"id": uuid.uuid4(), "p": player_key, "e": experiment.id, "arm": assign(experiment, player_id).name,
         "s": suppressed, "a": action})


def unfeedbacked_items(conn, limit):
    """Items of the experiment's lists without a click yet: ``(recommendation_id, slot_key, player_key)``."""
    return conn.execute(sa.text(
        "SELECT i.recommendation_id, i.slot_key, r.player_key FROM recommendation_items i "
        "JOIN recommendations r ON r.id = i.recommendation_id WHERE NOT EXISTS (SELECT FROM feedback f "
        "WHERE f.recommendation_id = i.recommendation_id AND f.slot_key = i.slot_key AND f.action = 'click') "
        "ORDER BY i.recommendation_id, i.slot_key LIMIT :n"), {"n": limit}).all()


def test_the_rollup_equals_the_log_through_late_feedback_attribution_and_protection(world, db):
    experiment, players, slots = world
    some = dict(list(players.items())[:60])
    serve(db, experiment, some, slots, seed=1)
    first = assert_same(db, experiment)  # the first read fills the rollup from the log
    assert sum(o.players for o in first) == 60
    with db.begin() as conn:
        watermark = conn.execute(sa.text("SELECT watermark FROM experiment_rollups")).scalar_one()
    assert watermark is not None
    # Late feedback on lists already rolled up: clicks, dismissals, and a duplicate that counts once.
    with db.begin() as conn:
        late = unfeedbacked_items(conn, 12)
        conn.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) "
                             "VALUES (:r, :s, :a, now()) ON CONFLICT DO NOTHING"),
                     [{"r": r, "s": s, "a": a} for r, s, _ in late for a in ("impression", "click")]
                     + [{"r": late[0][0], "s": late[0][1], "a": "dismiss"}])
        # Sessions that started unattributed, then attributed late (as feedback.py's attribution does:
        # recommendation_id and updated_at set together), one of them on a clicked item.
        for n, (_, s, p) in enumerate(late[:4]):
            conn.execute(sa.text(
                "INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, seconds) "
                "VALUES (:sid, :p, :s, now(), now(), :sec)"), {"sid": f"late-{n}", "p": p, "s": s, "sec": 90.0 * n})
    assert_same(db, experiment)  # the feedback counted, the unattributed sessions not yet
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE play_sessions SET recommendation_id = :r, updated_at = now() "
                             "WHERE session_id = :sid"),
                     [{"r": r, "sid": f"late-{n}"} for n, (r, _, _) in enumerate(late[:4])])
    rolled = assert_same(db, experiment)
    # A session goes on: its seconds grow past the threshold (long_clicks), as events.py updates it.
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE play_sessions SET seconds = 3600, updated_at = now() WHERE session_id = 'late-3'"))
    longer = assert_same(db, experiment)
    assert sum(o.long_clicks for o in longer) == sum(o.long_clicks for o in rolled) + 1
    # New players, more lists for players already in, suppressed lists and reality checks.
    serve(db, experiment, dict(list(players.items())[60:]), slots, seed=2)
    with db.begin() as conn:
        for player_id, key in list(players.items())[::7]:
            log_list(conn, experiment, player_id, key, suppressed="session_limit", action="reality_check")
        for player_id, key in list(players.items())[1::11]:
            log_list(conn, experiment, player_id, key, suppressed="self_excluded")
    everything = assert_same(db, experiment)
    assert sum(o.players for o in everything) == 120
    assert sum(o.suppressed for o in everything) == len(list(players)[::7]) + len(list(players)[1::11])
    assert sum(o.reality_checks for o in everything) == len(list(players)[::7])
    # Nothing changed: reading again counts nothing twice.
    assert_same(db, experiment)
    assert_same(db, experiment)
    # Another session threshold recounts long_clicks from the clicked items' seconds, and back.
    shorter = assert_same(db, experiment, threshold=200.0)
    assert sum(o.long_clicks for o in shorter) > sum(o.long_clicks for o in everything)
    assert_same(db, experiment)


def test_a_change_committed_after_a_refresh_began_is_folded_in_later(world, db):
    experiment, players, slots = world
    serve(db, experiment, players, slots, seed=3)
    assert_same(db, experiment)
    with db.connect() as slow:  # a feedback transaction that began before the refresh and commits after it
        slow.execute(sa.text("SELECT now()"))
        late = unfeedbacked_items(slow, 5)
        slow.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) VALUES (:r, :s, 'click', "
                             "now())"), [{"r": r, "s": s} for r, s, _ in late])
        before = store.outcomes(db, experiment, THRESHOLD)  # cannot see the open transaction's clicks
        with db.begin() as conn:
            watermark, = conn.execute(sa.text("SELECT watermark FROM experiment_rollups")).one()
            started = slow.execute(sa.text("SELECT now()")).scalar_one()
        assert watermark <= started  # held back to the open transaction's start
        slow.commit()
    after = assert_same(db, experiment)
    assert sum(o.clicks for o in after) == sum(o.clicks for o in before) + 5


def test_refreshes_in_parallel_count_each_change_once(world, db):
    experiment, players, slots = world
    serve(db, experiment, dict(list(players.items())[:40]), slots, seed=4)
    assert_same(db, experiment)
    serve(db, experiment, dict(list(players.items())[40:]), slots, seed=5)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: store.outcomes(db, experiment, THRESHOLD), range(8)))
    assert sum(o.players for o in assert_same(db, experiment)) == 120


def test_a_stopped_experiment_is_frozen_a_day_after_its_stop(world, db):
    experiment, players, slots = world
    serve(db, experiment, players, slots, seed=6)
    store.stop(db, experiment.name)
    stopped = store.get(db, experiment.name)
    assert_same(db, stopped)  # stopped an instant ago: still refreshed, not frozen
    with db.begin() as conn:
        assert conn.execute(sa.text("SELECT frozen FROM experiment_rollups")).scalar_one() is None
        conn.execute(sa.text("UPDATE experiments SET stopped_at = now() - interval '1 day 1 minute'"))
    other_threshold = store.outcomes_from_log(db, stopped, 60.0)
    frozen = assert_same(db, stopped)  # this read freezes it, from the same sums
    assert all(isinstance(o.sums, PlayerSums) for o in frozen)
    stored = store.outcomes(db, stopped, THRESHOLD)
    assert all(isinstance(o.sums, SummedSums) for o in stored)
    assert same_results(stored, frozen, stopped.min_effect)
    assert [(o.players, o.lists, o.clicks, o.median_click_minutes) for o in stored] == \
           [(o.players, o.lists, o.clicks, o.median_click_minutes) for o in frozen]
    # Feedback after the freeze changes the log, not the frozen statistics.
    with db.begin() as conn:
        late = unfeedbacked_items(conn, 5)
        conn.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) VALUES (:r, :s, 'click', "
                             "now())"), [{"r": r, "s": s} for r, s, _ in late])
        frozen_at = conn.execute(sa.text("SELECT frozen_at FROM experiment_rollups")).scalar_one()
    assert frozen_at is not None
    assert same_results(store.outcomes(db, stopped, THRESHOLD), stored, stopped.min_effect)
    assert sum(o.clicks for o in store.outcomes_from_log(db, stopped, THRESHOLD)) == \
           sum(o.clicks for o in stored) + 5
    # Another session threshold reads the frozen per-player rows: as the log was at the freeze.
    again = store.outcomes(db, stopped, 60.0)
    for a, b in zip(again, other_threshold, strict=True):
        for name in SUM_NAMES:
            assert np.array_equal(getattr(a.sums, name), getattr(b.sums, name))


def test_frozen_sums_give_the_results_of_the_arrays():
    rng = np.random.default_rng(7)

    def arm(n):
        impressions = rng.integers(1, 20, n).astype(float)
        clicks = np.minimum(impressions, rng.integers(0, 5, n)).astype(float)
        return PlayerSums.of(lists=np.ones(n), items=impressions, impressions=impressions, clicks=clicks,
                             plays=clicks, click_minutes=clicks * 2.5, suppressed=rng.integers(0, 2, n).astype(float))

    control, candidate = arm(300), arm(280)
    arrays = [ArmOutcome("control", 1, 50, control, 2.5), ArmOutcome("candidate", 2, 50, candidate, 2.5)]
    summed = [ArmOutcome(o.arm, o.version_id, o.weight, SummedSums.from_json(SummedSums.of(o.sums).to_json()),
                         o.median_click_minutes) for o in arrays]
    assert same_results(summed, arrays, 0.1)
    for s, a in zip(results(summed), results(arrays), strict=True):
        assert [s.outcome.sums.total(n) for n in SUM_NAMES] == [a.outcome.sums.total(n) for n in SUM_NAMES]
        assert s.outcome.players == a.outcome.players


def test_the_analyst_reads_the_rollup_and_writes_nothing(world, db):
    experiment, players, slots = world
    serve(db, experiment, players, slots, seed=8)
    store.outcomes(db, experiment, THRESHOLD)
    with db.connect() as conn:
        conn.exec_driver_sql("SET ROLE recsys_analyst")
        assert conn.execute(sa.text("SELECT count(*) FROM experiment_player_outcomes")).scalar_one() == 120
        assert conn.execute(sa.text("SELECT count(*) FROM experiment_list_outcomes")).scalar_one() == 120
        assert conn.execute(sa.text("SELECT count(*) FROM experiment_rollups")).scalar_one() == 1
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("SELECT * FROM experiment_rollups FOR UPDATE"))
        conn.rollback()
        conn.exec_driver_sql("SET ROLE recsys_analyst")
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("DELETE FROM experiment_player_outcomes"))


def test_the_settle_period_covers_attribution_and_the_late_session_limit():
    from recsys.settings import RealTime

    realtime = RealTime()
    assert timedelta(seconds=realtime.attribution_window_seconds + realtime.max_seconds) <= experiment_rollups.SETTLE


def test_the_api_folds_the_running_experiment_in_while_idle(world, db, settings):
    # recsys.serving.state's idle refresh rolls up what was logged since the last read, so a read after a
    # busy hour finds at most one idle period's lists to fold in.
    from api.metrics import Metrics
    from recsys.serving.state import ServingState
    from tests.online import url_of

    experiment, players, slots = world
    serve(db, experiment, players, slots, seed=3)
    state = ServingState(settings.replace(session_threshold_seconds=THRESHOLD), db, url_of(db), Metrics())
    state.read_experiment()
    with db.connect() as conn:
        logged = conn.execute(sa.text("SELECT count(*) FROM recommendations WHERE experiment_id = :e"),
                              {"e": experiment.id}).scalar_one()
        before = conn.execute(sa.text("SELECT count(*) FROM experiment_list_outcomes")).scalar_one()
    state.refresh_experiment_rollup()
    with db.connect() as conn:
        rolled = conn.execute(sa.text("SELECT count(*) FROM experiment_list_outcomes WHERE experiment_id = :e"),
                              {"e": experiment.id}).scalar_one()
    assert logged > 0 and before == 0 and rolled == logged
    assert_same(db, experiment)
