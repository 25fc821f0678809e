"""Play events as the real-time layer receives them, and their validation (no I/O).

A batch is validated whole before anything is written: the first bad event is reported with its
index in the batch and the field, and nothing of the batch is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from recsys.db.schema import EVENT_TYPES, ID_LENGTH
from recsys.errors import InputError


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


def validate_events(events: list[PlayEvent], source: str = "events") -> None:
    """Raise ``InputError(source, ..., row=index, field=...)`` for the first invalid event (0-based index)."""
    if not events:
        raise InputError(source, "the batch holds no events")
    for index, event in enumerate(events):
        for name in ("event_id", "session_id", "player_id", "slot_id"):
            value = getattr(event, name)
            if not value or len(value) > ID_LENGTH:
                raise InputError(source, f"must be 1 to {ID_LENGTH} characters", row=index, field=name)
        if event.type not in EVENT_TYPES:
            raise InputError(source, f"must be one of {', '.join(EVENT_TYPES)}", row=index, field="type")
        if event.ts.tzinfo is None:
            raise InputError(source, "needs a time zone (RFC 3339)", row=index, field="ts")
        for name in ("bet", "win"):
            value = getattr(event, name)
            if value is not None and not value >= 0:
                raise InputError(source, "must not be negative", row=index, field=name)
