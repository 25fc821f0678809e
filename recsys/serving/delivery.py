"""What a player's stream may show of a stored triggered list: protection is checked at delivery,
not only when the list was made.

A triggered list reaches a stream twice over: pushed live when its transaction commits, and replayed
from the table when a client reconnects (``recsys.db.push``). Minutes or days may pass in between,
so each delivery applies, as things stand at that moment:

1. the protection gate (``recsys.serving.gate``), first and fail-closed: a player it stops now
   gets the list's id with no games and no action, and the gate's reason in ``suppressed``
   (what ``GET .../recommendations`` answers such a player);
2. the disabled-slot and market filters: a slot disabled since, or no longer offered in the
   player's market, is left out; a list left with no game and no action is not sent at all.

Pure: the stored list and the player's fields come in (``recsys.db.push.Pushed``), the stream's
event body goes out.
"""

from __future__ import annotations

from datetime import datetime

from recsys.db.push import Pushed
from recsys.serving.gate import Protection, protection_gate
from recsys.serving.lists import SESSION_THRESHOLD, RecommendedItem, Suppression, TriggeredList


def deliverable(pushed: Pushed, now: datetime) -> TriggeredList | None:
    """The event body a stream sends for ``pushed`` at ``now``; None: nothing to send."""
    protection = Protection(pushed.self_excluded_until, pushed.cooling_off_until, pushed.marketing_consent,
                            pushed.risk_flag)
    gate = protection_gate(protection, now)
    if gate is not None:
        return _body(pushed, None, [], gate)
    items = [RecommendedItem(i.slot_id, round(i.score, 6), i.reason) for i in pushed.items if i.available]
    if not items and pushed.action is None:
        return None  # every game is gone: a list of nothing tells the player nothing
    return _body(pushed, pushed.action, items, pushed.suppressed_reason)


def _body(pushed: Pushed, action: str | None, items: list[RecommendedItem], suppressed: str | None) -> TriggeredList:
    return TriggeredList(
        pushed.recommendation_id,
        pushed.player_id,
        pushed.session_id,
        pushed.context_slot_id,
        pushed.version_id,
        SESSION_THRESHOLD,
        action,
        items,
        None if suppressed is None else Suppression(suppressed),
    )
