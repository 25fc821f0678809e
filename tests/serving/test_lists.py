"""The list's code (recsys.serving.lists) and the serving state it reads (recsys.serving.state), called
directly on the real database, without HTTP: the circle casino of tests/api/conftest.py (slot
``s{i}``'s neighbours are ``s{i +- 1}``, then ``s{i +- 2}``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa

from api.metrics import Metrics
from recsys.errors import NotFound
from recsys.serving import lists
from recsys.serving.state import ServingState
from tests.api.conftest import N_SLOTS, SERVING, write_version
from tests.factories import add_player, add_slot
from tests.online import url_of


@pytest.fixture
def casino(db):
    with db.begin() as conn:
        players = {f"p{i}": add_player(conn, f"p{i}", market="GB") for i in range(1, 4)}
        slots = {f"s{i}": add_slot(conn, f"s{i}", provider=f"p{i}") for i in range(1, N_SLOTS + 1)}
    version = write_version(db, players, slots)
    return db, players, slots, version


def serving_state(settings, engine, *, version_in_memory: bool = True) -> ServingState:
    """The state an API process holds, loaded in the foreground (no LISTEN thread)."""
    state = ServingState(settings.replace(**SERVING), engine, url_of(engine), Metrics())
    state.refresh_catalogue()
    state.read_experiment()
    state.refresh_stats()
    if version_in_memory:
        state.load_active_version()
    return state


def make(state: ServingState, player_id: str, **options):
    """One list on a connection of its own, as ``GET .../recommendations`` makes it."""

    async def scenario():
        async with await psycopg.AsyncConnection.connect(state.url, autocommit=True) as conn:
            return await lists.make_list(conn, state, state.snapshot, player_id, trigger=lists.API, **options)

    return asyncio.run(scenario())


def logged(engine, recommendation_id: uuid.UUID):
    with engine.connect() as conn:
        head = conn.execute(sa.text("SELECT player_key, version_id, trigger, context_slot_key, suppressed_reason, "
                                    "filters FROM recommendations WHERE id = :id"), {"id": recommendation_id}).one()
        items = conn.execute(sa.text("SELECT rank, slot_key, score, reason, explored FROM recommendation_items "
                                     "WHERE recommendation_id = :id ORDER BY rank"), {"id": recommendation_id}).all()
    return head, [tuple(item) for item in items]


def test_the_list_is_logged_as_returned_before_it_returns(casino, settings):
    engine, players, slots, version = casino
    state = serving_state(settings, engine)
    served = make(state, "p1", k=4, context_key=slots["s10"], context_slot_id="s10")
    assert [i.slot_id for i in served.items[:2]] in (["s9", "s11"], ["s11", "s9"])  # the circle's neighbours
    head, items = logged(engine, served.recommendation_id)  # committed: another connection sees it
    assert (head.player_key, head.version_id, head.trigger, head.context_slot_key, head.suppressed_reason) == (
        players["p1"], version, "api", slots["s10"], None)
    assert head.filters["search"] == "faiss" and head.filters["strategy"] == "model"
    assert items == [(rank, i.slot_key, i.score, i.reason, i.explored) for rank, i in enumerate(served.items, 1)]
    answer = lists.answer(served)
    assert (answer.recommendation_id, answer.model_version) == (served.recommendation_id, version)
    assert [(i.slot_id, i.score) for i in answer.items] == [(i.slot_id, round(i.score, 6)) for i in served.items]


def test_protection_is_read_on_every_list(casino, settings):
    engine, players, slots, _ = casino
    state = serving_state(settings, engine)
    assert make(state, "p2", k=3).suppressed is None
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = :t WHERE player_id = 'p2'"),
                     {"t": datetime.now(UTC) + timedelta(days=30)})
    stopped = make(state, "p2", k=3)  # the same state, nothing reloaded: the database is asked again
    assert (stopped.suppressed, stopped.gate, stopped.items) == ("self_excluded", "self_excluded", ())
    assert logged(engine, stopped.recommendation_id)[0].suppressed_reason == "self_excluded"
    assert not stopped.pushed
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE players SET self_excluded_until = NULL WHERE player_id = 'p2'"))
    assert make(state, "p2", k=3).suppressed is None


def test_a_version_not_in_memory_is_served_through_pgvector(casino, settings):
    engine, _, slots, version = casino
    state = serving_state(settings, engine, version_in_memory=False)
    assert state.snapshot.model is None
    served = make(state, "p1", k=2, context_key=slots["s5"], context_slot_id="s5")
    assert sorted(i.slot_id for i in served.items) == ["s4", "s6"]
    head, _ = logged(engine, served.recommendation_id)
    assert (head.version_id, head.filters["search"]) == (version, "pgvector")


def test_an_unknown_player_writes_nothing(casino, settings):
    engine, *_ = casino
    state = serving_state(settings, engine)
    with pytest.raises(NotFound, match="nobody"):
        make(state, "nobody", k=3)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM recommendations")).scalar_one() == 0


def test_a_list_made_in_a_transaction_that_rolls_back_leaves_no_trace(casino, settings):
    engine, *_ = casino
    state = serving_state(settings, engine)

    async def scenario():
        async with await psycopg.AsyncConnection.connect(state.url, autocommit=True) as conn:
            with pytest.raises(RuntimeError, match="the batch failed"):
                async with conn.transaction():
                    await lists.make_list(conn, state, state.snapshot, "p1", k=3, trigger=lists.SESSION_THRESHOLD,
                                          synchronous_commit=True)
                    raise RuntimeError("the batch failed")

    asyncio.run(scenario())
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM recommendations")).scalar_one() == 0


def test_the_state_swaps_in_a_newly_activated_version(casino, settings):
    engine, players, slots, first = casino
    state = serving_state(settings, engine)
    assert state.snapshot.model.version_id == first
    second = write_version(engine, players, slots, seed=1)
    state.load_active_version()
    assert state.snapshot.model.version_id == second
    assert make(state, "p3", k=3).version_id == second
    bank = state.snapshot.explore_bank("GB", 10**9)
    assert bank is state.snapshot.explore_bank("GB", 10**9)  # made once per snapshot and market
    assert sorted(bank.pool.tolist()) == sorted(slots.values())


def test_group_commit_writes_concurrent_lists_together_and_a_bad_one_alone(casino, settings):
    import dataclasses

    from recsys.db import lists as db
    from recsys.db.pool import OnlinePool

    engine, *_ = casino
    state = serving_state(settings, engine)
    statements = []
    write = db.log_lists

    async def counted(conn, served, **options):
        statements.append(len(served))
        await write(conn, served, **options)

    async def scenario():
        pool = OnlinePool(state.url, size=2)
        log = db.GroupCommit(pool, synchronous_commit=False)
        try:
            made = await asyncio.gather(*(lists.recommend(state, pool, log, f"p{1 + i % 3}", k=3) for i in range(6)))
            groups = len(statements)
            unsaved = []  # lists made but not logged yet: then three logged at once, one of them refused
            async with pool.connection() as conn:
                for player in ("p1", "p2"):
                    await lists.make_list(conn, state, state.snapshot, player, k=2, trigger=lists.API,
                                          log=lambda served: asyncio.sleep(0, unsaved.append(served)))
            bad = dataclasses.replace(unsaved[0], recommendation_id=uuid.uuid4(), player_key=10**9)
            mixed = await asyncio.gather(log.log(unsaved[0]), log.log(bad), log.log(unsaved[1]),
                                         return_exceptions=True)
            return made, groups, unsaved, mixed
        finally:
            await pool.close()

    db.log_lists = counted
    try:
        made, groups, unsaved, mixed = asyncio.run(scenario())
    finally:
        db.log_lists = write
    for served in [*made, *unsaved]:  # each request returned after its own list was committed
        assert logged(engine, served.recommendation_id)[1] == [
            (rank, i.slot_key, i.score, i.reason, i.explored) for rank, i in enumerate(served.items, 1)]
    assert groups < 6 and sum(statements[:groups]) == 6  # six concurrent lists, fewer statements
    assert statements[groups:] == [3, 1, 1, 1]  # the group refused, then each list alone
    assert mixed[0] is None and mixed[2] is None
    assert isinstance(mixed[1], psycopg.errors.ForeignKeyViolation)


def test_a_slot_added_or_disabled_is_seen_by_the_next_list(casino, settings):
    engine, _, slots, _ = casino
    state = serving_state(settings, engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE slots SET active = false WHERE slot_id = 's11'"))
        add_slot(conn, "s21", provider="p21")
    # The database hides the disabled slot at once; the catalogue learns of the new one when refreshed.
    around = make(state, "p1", k=4, context_key=slots["s10"], context_slot_id="s10")
    assert "s11" not in [i.slot_id for i in around.items] and "s9" in [i.slot_id for i in around.items]
    assert "s21" not in state.snapshot.catalogue.key_of
    state.refresh_catalogue()
    assert "s21" in state.snapshot.catalogue.key_of
    assert state.snapshot.model.version_id == casino[3]  # the version in memory is kept across the refresh
