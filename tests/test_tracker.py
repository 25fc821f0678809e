"""The session tracker's late-session policy (pure; the tracker's database steps are tested through
POST /v1/events in tests/api/test_events.py)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from recsys.db.events import TriggeredSession
from recsys.settings import RealTime, Settings
from recsys.tracker import GAMES, Decision, decide, in_night_hours


def session(continuous_minutes: float, last_event_at: datetime) -> TriggeredSession:
    return TriggeredSession(1, "s", 1, "p", 1, "slot", continuous_minutes * 60.0,
                            last_event_at - timedelta(minutes=continuous_minutes), last_event_at)


def config(**changes) -> RealTime:
    return Settings.from_env({}, **{"session_max_seconds": 3 * 3600.0, **changes}).realtime


NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("window", "hour", "inside"), [
    ((0, 6), 0, True), ((0, 6), 5, True), ((0, 6), 6, False), ((0, 6), 23, False),
    ((22, 4), 22, True), ((22, 4), 23, True), ((22, 4), 3, True), ((22, 4), 4, False), ((22, 4), 12, False),
    ((18, 24), 23, True), ((18, 24), 0, False),
])
def test_night_hours_are_utc_and_may_wrap_midnight(window, hour, inside):
    assert in_night_hours(NOON.replace(hour=hour, minute=59), window) is inside


def test_night_hours_read_the_time_in_utc():
    stockholm = timezone(timedelta(hours=1))
    assert in_night_hours(datetime(2026, 3, 1, 0, 30, tzinfo=stockholm), (23, 24))  # 23:30 UTC
    assert not in_night_hours(NOON, None)


def test_games_until_the_maximum_or_the_night():
    assert decide(session(60, NOON), config()) == GAMES
    assert decide(session(179, NOON), config()) == GAMES
    assert decide(session(180, NOON), config()) == Decision("session_limit", "reality_check")
    night = config(night_hours="11-13")
    assert decide(session(60, NOON), night) == Decision("night_hours", "reality_check")
    assert decide(session(60, NOON.replace(hour=13)), night) == GAMES
    # both apply: the session's length is the reason given
    assert decide(session(200, NOON), night) == Decision("session_limit", "reality_check")


def test_the_silent_policy_gives_no_action():
    assert decide(session(180, NOON), config(late_session_action="silent")) == Decision("session_limit", None)
