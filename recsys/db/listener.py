"""One LISTEN loop for every channel the processes hear: reconnect, backoff, debounce, catch-all.

A :class:`Listener` runs in a thread of its own. It connects, LISTENs on its channels, and hands
each burst of notifications to its callback; a lost connection (the server restarted, the backend
was terminated, any error at all) is logged and retried with exponential backoff, 0.5 s doubling
to 10 s. After every (re)connection ``on_connect`` runs: notifications sent while the connection
was down are lost, so a caller reloads or tells its clients to replay. A callback that raises is
logged with its traceback and the loop goes on: a listener that dies would leave the replica
stale, or its streams deaf, for good.

Only notifications the application signed reach the callbacks (:mod:`recsys.db.channels`): any
role may send ``NOTIFY`` on any channel, the analyst's included (issue 22). The key is read again on
every (re)connection.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import psycopg

from recsys.db.channels import NotifyKey, Verifier

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5
MAX_DELAY = 10.0
POLL_SECONDS = 0.25
"""How often the loop wakes without a notification, to notice ``stop`` and run ``on_idle``."""


class Listener:
    """LISTEN on ``channels`` in a daemon thread until :meth:`stop`.

    ``on_notifies`` gets the notifications of one burst (``psycopg.Notify``: ``channel``,
    ``payload``, the payload as the application signed it): those arriving within
    ``debounce_seconds`` of the first are handled together; unsigned, forged and replayed ones are
    dropped (``verifier.dropped`` counts them).
    ``on_connect(first)`` runs once LISTEN is in place (``first``: the first connection);
    ``on_disconnect()`` when the connection is lost; ``on_idle()`` every ``idle_seconds`` while
    connected (None: never).
    """

    def __init__(
        self,
        url: str,
        channels: Iterable[str],
        on_notifies: Callable[[list[psycopg.Notify]], None],
        *,
        on_connect: Callable[[bool], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        idle_seconds: float | None = None,
        debounce_seconds: float = 0.05,
        name: str = "recsys-listener",
    ) -> None:
        self.url = url
        self.channels = tuple(channels)
        self.on_notifies = on_notifies
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_idle = on_idle
        self.idle_seconds = idle_seconds
        self.debounce_seconds = debounce_seconds
        self.verifier = Verifier()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end (within :data:`POLL_SECONDS`); ``timeout``: wait that long for it."""
        self._stop.set()
        if timeout is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def run(self) -> None:
        delay, first = FIRST_DELAY, True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    self.verifier.key = NotifyKey.read(conn)
                    for channel in self.channels:
                        conn.execute(f"LISTEN {channel}")
                    delay = FIRST_DELAY
                    if self.on_connect is not None:
                        self._supervised(self.on_connect, first)
                    first = False
                    self._serve(conn)
            except Exception as exc:  # any error: the loop must outlive it
                if self.on_disconnect is not None:
                    self._supervised(self.on_disconnect)
                log.warning("LISTEN %s: connection lost (%s); reconnecting in %.1f s", ",".join(self.channels), exc,
                            delay, exc_info=not isinstance(exc, psycopg.OperationalError))
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_DELAY)

    def _serve(self, conn: psycopg.Connection) -> None:
        idle_at = None if self.idle_seconds is None else time.monotonic() + self.idle_seconds
        while not self._stop.is_set():
            heard = list(conn.notifies(timeout=POLL_SECONDS, stop_after=1))
            if heard:
                heard += conn.notifies(timeout=self.debounce_seconds)
                signed = [opened for n in heard if (opened := self.verifier.open(n)) is not None]
                if signed:
                    self._supervised(self.on_notifies, signed)
            if idle_at is not None and time.monotonic() >= idle_at:
                self._supervised(self.on_idle)
                idle_at = time.monotonic() + self.idle_seconds

    def _supervised(self, callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("LISTEN %s: a callback failed; listening on", ",".join(self.channels))
