"""A served list: the one type for a list as it is made (``recsys.serving.lists``), logged
(``recsys.db.lists``), answered (``GET .../recommendations``) and sent to a stream (the long-session
trigger, ``recsys.tracker``). The HTTP bodies are its views (``recsys.serving.lists.answer`` and
``triggered``), built when it is answered, not kept beside it.

Pure: no database, no HTTP (the ranking makes the items, the database layer writes them).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple


class ServedItem(NamedTuple):
    """One place of a list (a named tuple: a list makes about ten, and a frozen dataclass's
    ``__init__`` costs three times as much)."""

    slot_key: int
    slot_id: str
    score: float  # as ranked; the answer rounds it to 6 decimals, the log keeps it whole
    reason: str  # similar, personal, explore, popular, cold_start
    explored: bool


@dataclass(frozen=True, slots=True)
class ServedList:
    """One list, served or suppressed, as a row of ``recommendations`` stores it (its items as arrays)."""

    recommendation_id: uuid.UUID
    player_id: str
    player_key: int
    version_id: int | None
    trigger: str  # api, or session_threshold
    context_slot_key: int | None  # as asked, even a slot this process does not know yet
    context_slot_id: str | None
    market: str | None
    items: tuple[ServedItem, ...]
    filters: dict[str, Any]  # what made the list (gate, k, market, policy settings, candidate source ...)
    gate: str | None = None  # the protection gate's reason; None: allowed
    suppressed: str | None = None  # the gate's reason, or a late-session one; None: games
    action: str | None = None  # e.g. ``reality_check``: what the frontend shows instead of games
    session_key: int | None = None  # the play session whose long-session trigger produced it
    session_id: str | None = None
    experiment_id: int | None = None  # the experiment that split the player (recsys.experiments)
    arm: str | None = None  # its arm that made the list

    @property
    def pushed(self) -> bool:
        """Whether a player's stream shows it: games, or an action such as a reality check (a list the
        gate or the silent late-session policy withheld is logged, never pushed)."""
        return self.gate is None and (self.suppressed is None or self.action is not None)
