"""The protection gate: first, fail-closed. A player who may not be marketed to gets no games."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Protection:
    """A player's protection fields as stored; ``None`` means unknown."""

    self_excluded_until: datetime | None
    cooling_off_until: datetime | None
    marketing_consent: bool | None
    risk_flag: bool | None


def protection_gate(protection: Protection, now: datetime) -> str | None:
    """The reason a player gets no recommendation, or ``None`` when they may get one.

    Checked in this order, fail-closed: ``self_excluded`` (``self_excluded_until`` in the future),
    ``cooling_off``, ``no_consent`` (consent not given or unknown), ``risk_flag`` (flagged, or the
    flag unknown).
    """
    if protection.self_excluded_until is not None and protection.self_excluded_until > now:
        return "self_excluded"
    if protection.cooling_off_until is not None and protection.cooling_off_until > now:
        return "cooling_off"
    if protection.marketing_consent is not True:
        return "no_consent"
    if protection.risk_flag is not False:
        return "risk_flag"
    return None
