"""Play events as the real-time layer receives them, and their validation (no I/O).

A batch is validated whole before anything is written: the first bad event is reported with its
index in the batch and the field, and nothing of the batch is stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from recsys.constants import BET, CONTROL_CHARACTERS, EVENT_TYPES, ID_LENGTH, numeric_limit
from recsys.errors import InputError

AMOUNT_LIMIT = numeric_limit(BET)
"""``bet`` and ``win`` are ``NUMERIC(12, 2)``: below 10^10 after rounding to cents."""
_CONTROL = re.compile(CONTROL_CHARACTERS)
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
"""The largest zone offset PostgreSQL's ``timestamptz`` reads (RFC 3339 allows up to 23:59; issue 22:
``+16:00`` was a 500, ``InvalidTimeZoneDisplacementValue``). Real zones lie within -12:00 .. +14:00."""


@dataclass(frozen=True)
class PlayEvent:
    event_id: str
    type: str
    session_id: str
    player_id: str
    slot_id: str
    ts: datetime
    bet: float | None = None
    win: float | None = None
    bonus: bool | None = None


@dataclass(frozen=True)
class TimeBounds:
    """The event times a batch may carry, relative to the receiving server's clock: at most
    ``max_future`` ahead (clock skew) and ``max_age`` behind (late delivery from a client that was
    offline). A time outside would land a session in a partition, a training window or a
    popularity count where it does not belong (issue 10: one event at 0001-01-01 stopped the
    pipeline)."""

    max_future: timedelta
    max_age: timedelta

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        return now - self.max_age, now + self.max_future


def time_problem(ts: datetime, window: tuple[datetime, datetime] | None, what: str) -> str | None:
    """Why ``ts`` cannot be stored as one of ``what`` (``"event times"``), or None: it needs a zone,
    an offset PostgreSQL reads (:data:`MAX_UTC_OFFSET`), and to lie in ``window`` (``(earliest,
    latest)``; None: any)."""
    offset = ts.utcoffset()
    if offset is None:
        return "needs a time zone (RFC 3339)"
    if abs(offset) > MAX_UTC_OFFSET:
        return f"{ts.isoformat()} has a time-zone offset beyond -15:59 .. +15:59"
    if window is not None and not window[0] <= ts <= window[1]:
        return (f"{ts.isoformat()} is outside the accepted {what} "
                f"{window[0].isoformat(timespec='seconds')} .. {window[1].isoformat(timespec='seconds')}")
    return None


def validate_events(
    events: list[PlayEvent], source: str = "events", *, window: tuple[datetime, datetime] | None = None
) -> None:
    """Raise ``InputError(source, ..., index=index, field=...)`` for the first invalid event (0-based index).

    ``window``: ``(earliest, latest)`` event times accepted (see :class:`TimeBounds`); None: any.
    """
    if not events:
        raise InputError(source, "the batch holds no events")
    seen: dict[str, PlayEvent] = {}
    for index, event in enumerate(events):
        first = seen.setdefault(event.event_id, event)
        if first != event:
            # A retry repeats an event whole; one id for two different events would store one of
            # them and leave the other's session behind, empty (issue 10).
            raise InputError(source, f"event_id {event.event_id!r} already names another event in this batch",
                             index=index, field="event_id")
        for name in ("event_id", "session_id", "player_id", "slot_id"):
            value = getattr(event, name)
            if not value or len(value) > ID_LENGTH:
                raise InputError(source, f"must be 1 to {ID_LENGTH} characters", index=index, field=name)
            if not value.strip():  # as the import refuses a blank id (and the OpenAPI document says)
                raise InputError(source, "must not be blank", index=index, field=name)
            if _CONTROL.search(value):
                raise InputError(source, "must not contain control characters", index=index, field=name)
        if event.type not in EVENT_TYPES:
            raise InputError(source, f"must be one of {', '.join(EVENT_TYPES)}", index=index, field="type")
        problem = time_problem(event.ts, window, "event times")
        if problem is not None:
            raise InputError(source, problem, index=index, field="ts")
        for name in ("bet", "win"):
            value = getattr(event, name)
            if value is not None and not value >= 0:
                raise InputError(source, "must not be negative", index=index, field=name)
            if value is not None and round(value, 2) >= AMOUNT_LIMIT:
                raise InputError(source, f"must be below {AMOUNT_LIMIT:.0f}", index=index, field=name)
