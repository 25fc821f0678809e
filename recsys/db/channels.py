"""The application's NOTIFY channels, signed: only what the application's role announced is heard.

Any role may ``LISTEN`` and send ``NOTIFY`` on any channel (PostgreSQL has no privilege for
either; issue 22: the analyst pushed a stored list to a player's stream with
``NOTIFY recsys_push, '{...}'``). So the application announces through ``recsys_notify(channel,
payload)`` (migration 0010), which sends ``<ms>.<hmac>.<payload>``: the statement's time in Unix
milliseconds, and HMAC-SHA256 of ``<channel>.<ms>.<payload>`` under the key in ``notify_keys``, a
table only the application's role reads. A :class:`Verifier` (every :class:`~recsys.db.listener.Listener`
has one) hands on the original payload of a notification that verifies and drops the rest:

* unsigned or forged (a wrong MAC, or one made for another channel);
* older than :data:`MAX_AGE_SECONDS`, or as much in the future (a replay of a heard one);
* already heard (a replay within that window: the MACs heard are kept that long).

Signing rather than treating notifications as hints only: the stream acts on a push notice at once
(re-reading the list, but still sending it), and a hint the analyst may send at will costs the API
an index or catalogue reload each time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 120.0
"""A notification stamped further than this from the listener's clock is dropped. Delivery takes
milliseconds; the window allows for a transaction that announced early and committed late, and for
clocks of the database and API hosts a little apart."""

LOG_EVERY_SECONDS = 10.0
"""Dropped notifications are logged at most this often (a flood of forged ones must not flood the log)."""

@dataclass(frozen=True)
class NotifyKey:
    """The HMAC key as SHA-256's pads (64 bytes each), read from ``notify_keys``."""

    inner_pad: bytes
    outer_pad: bytes

    @classmethod
    def read(cls, conn: psycopg.Connection) -> NotifyKey:
        """The key (made now if the table is empty). A listener reads it on every (re)connection, so
        one that outlived a new key (the table was emptied) verifies again once it reconnects."""
        row = conn.execute("SELECT inner_pad, outer_pad FROM recsys_notify_key()").fetchone()
        return cls(bytes(row[0]), bytes(row[1]))

    def mac(self, channel: str, pid: int, stamp: str, payload: str) -> str:
        """HMAC-SHA256 (hex) of ``<channel>.<pid>.<stamp>.<payload>``, as ``recsys_notify`` computes it."""
        inner = hashlib.sha256(self.inner_pad + f"{channel}.{pid}.{stamp}.{payload}".encode()).digest()
        return hashlib.sha256(self.outer_pad + inner).hexdigest()


class Verifier:
    """Opens signed notifications; keeps the MACs it accepted for :data:`MAX_AGE_SECONDS`."""

    def __init__(self, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self.key: NotifyKey | None = None
        self.max_age_us = max_age_seconds * 1e6
        self.dropped = 0
        self._heard: dict[str, int] = {}  # MAC -> its stamp (us)
        self._forget_at = 0.0
        self._logged_at = 0.0

    def open(self, notification: psycopg.Notify) -> psycopg.Notify | None:
        """The notification with its original payload; None (counted, logged now and then) when it
        is unsigned, forged, stale or a replay."""
        reason = self._refusal(notification)
        if reason is None:
            stamp, mac, payload = notification.payload.split(".", 2)
            self._heard[mac] = int(stamp)
            return psycopg.Notify(notification.channel, payload, notification.pid)
        self.dropped += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning("dropped a notification on %s from backend %d (%s; %d dropped so far): %r",
                        notification.channel, notification.pid, reason, self.dropped, notification.payload[:120])
        return None

    def _refusal(self, notification: psycopg.Notify) -> str | None:
        if self.key is None:
            return "no key read yet"
        parts = notification.payload.split(".", 2)
        if len(parts) != 3 or not parts[0].isdigit():
            return "not signed"
        stamp, mac, payload = parts
        if not hmac.compare_digest(mac, self.key.mac(notification.channel, notification.pid, stamp, payload)):
            return "bad signature"
        now_us = time.time() * 1e6
        if abs(now_us - int(stamp)) > self.max_age_us:
            return f"stamped {(now_us - int(stamp)) / 1e6:.0f} s ago"
        self._forget(now_us)
        if mac in self._heard:
            return "a replay"
        return None

    def _forget(self, now_us: float) -> None:
        """Drop MACs too old to be accepted again anyway (once a second at most: it walks them all)."""
        if now_us >= self._forget_at:
            oldest, self._forget_at = now_us - self.max_age_us, now_us + 1e6
            self._heard = {mac: stamp for mac, stamp in self._heard.items() if stamp >= oldest}
