import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from recsys.db.events import store_events
from recsys.db.feedback import Feedback, store_feedback
from recsys.errors import InputError
from recsys.events import PlayEvent
from tests.factories import add_player, add_session, add_slot
from tests.online import in_transaction

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
WINDOW = 1800.0


@pytest.fixture
def served(db):
    """alice was recommended [fruit, pharaoh]; bob [fruit]."""
    with db.begin() as conn:
        alice, bob = add_player(conn, "alice"), add_player(conn, "bob")
        fruit, pharaoh, wolf = add_slot(conn, "fruit"), add_slot(conn, "pharaoh"), add_slot(conn, "wolf")
        recs = {"alice": uuid.uuid4(), "bob": uuid.uuid4()}
        for player, key, slots in (("alice", alice, [fruit, pharaoh]), ("bob", bob, [fruit])):
            conn.execute(
                sa.text(
                    "INSERT INTO recommendations (id, player_key, trigger, created_at, slot_keys, scores, reasons, "
                    "explored) VALUES (:id, :p, 'api', :t, :slots, :scores, :reasons, :explored)"
                ),
                {"id": recs[player], "p": key, "t": T0, "slots": slots, "scores": [1.0] * len(slots),
                 "reasons": ["similar"] * len(slots), "explored": [False] * len(slots)},
            )
    return {"db": db, "recs": recs, "alice": alice, "bob": bob, "fruit": fruit, "pharaoh": pharaoh, "wolf": wolf}


def _store(db, items):
    return in_transaction(db, lambda conn: store_feedback(conn, items, window_seconds=WINDOW))


def test_feedback_is_idempotent(served):
    rec = str(served["recs"]["alice"])
    batch = [Feedback(rec, "fruit", "impression", T0), Feedback(rec, "fruit", "click", T0 + timedelta(seconds=5))]
    assert (_store(served["db"], batch).accepted, _store(served["db"], batch).duplicates) == (2, 2)
    with served["db"].connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one() == 2


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (Feedback("not-a-uuid", "fruit", "click"), "recommendation_id", "not a UUID"),
        (Feedback(str(uuid.uuid4()), "fruit", "click"), "recommendation_id", "unknown recommendation"),
        (Feedback("{alice}", "wolf", "click"), "slot_id", "was not in recommendation"),
        (Feedback("{alice}", "fruit", "like"), "action", "must be one of"),
        (Feedback("{alice}", "fruit", "click", datetime(2026, 3, 1)), "ts", "time zone"),
    ],
)
def test_bad_feedback_rejects_the_batch(served, item, field, message):
    rec = str(served["recs"]["alice"])
    item = Feedback(item.recommendation_id.replace("{alice}", rec), item.slot_id, item.action, item.ts)
    with pytest.raises(InputError, match=message) as info:
        _store(served["db"], [Feedback(rec, "pharaoh", "impression"), item])
    assert (info.value.index, info.value.field) == (1, field)
    with served["db"].connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM feedback")).scalar_one() == 0


def test_attribution_on_a_hand_built_example(served):
    db, rec = served["db"], served["recs"]["alice"]
    with db.begin() as conn:
        # a session before the click, one inside the window, one after it, one on a slot not clicked
        before = add_session(conn, "before", served["alice"], served["fruit"], T0 - timedelta(minutes=1), 60)
        inside = add_session(conn, "inside", served["alice"], served["fruit"], T0 + timedelta(minutes=10), 60)
        late = add_session(conn, "late", served["alice"], served["fruit"], T0 + timedelta(minutes=31), 60)
        other = add_session(conn, "other", served["alice"], served["wolf"], T0 + timedelta(minutes=2), 60)
        bobs = add_session(conn, "bobs", served["bob"], served["fruit"], T0 + timedelta(minutes=2), 60)
    result = _store(db, [Feedback(str(rec), "fruit", "click", T0)])
    assert result.attributed_sessions == 1
    with db.connect() as conn:
        got = dict(conn.execute(sa.text("SELECT id, recommendation_id FROM play_sessions")).all())
    assert got == {before: None, inside: rec, late: None, other: None, bobs: None}


def test_a_session_created_after_the_feedback_is_attributed_too(served):
    # As the session tracker does it: the batch that starts the session attributes it in its pipeline.
    db, rec = served["db"], served["recs"]["alice"]
    _store(db, [Feedback(str(rec), "pharaoh", "impression", T0)])
    start = PlayEvent("s-0", "start", "s", "alice", "pharaoh", T0 + timedelta(minutes=5))
    stored = in_transaction(db, lambda conn: store_events(conn, [start], pause_seconds=300.0, threshold_seconds=3600.0,
                                                          attribution_seconds=WINDOW))
    assert (stored.accepted, stored.attributed_sessions) == (1, 1)
    with db.connect() as conn:
        session = conn.execute(sa.text("SELECT id FROM play_sessions WHERE session_id = 's'")).scalar_one()
    with db.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT recommendation_id FROM play_sessions WHERE id = :s"), {"s": session}
            ).scalar_one()
            == rec
        )
