"""API keys: ``Authorization: Bearer <key>``, checked against ``api_keys`` with a short in-process cache.

A key is looked up once per ``api_key_cache_seconds`` (default 5 s) per process; a revoked key
therefore keeps working for at most that long on a process that saw it recently. Unknown keys are
cached too, so a flood of bad keys does not become a flood of queries.
"""

from __future__ import annotations

import threading
import time

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from recsys.db.apikeys import ApiKey, find_key

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="recsys"'}
_MAX_ENTRIES = 10_000


class KeyCache:
    """key -> (expires at, ApiKey or None), on monotonic time."""

    def __init__(self, engine, seconds: float) -> None:
        self.engine = engine
        self.seconds = seconds
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    async def lookup(self, key: str) -> ApiKey | None:
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = await anyio.to_thread.run_sync(find_key, self.engine, key)
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (now + self.seconds, found)
        return found


def requires(scope: str):
    """A guard: the request must carry a valid key with ``scope`` (``admin`` implies every scope)."""

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("send an API key as `Authorization: Bearer <key>`", headers=_CHALLENGE)
        key = await connection.app.state.api_keys.lookup(token.strip())
        if key is None or key.revoked_at is not None:
            raise NotAuthorizedException("the API key is unknown or revoked", headers=_CHALLENGE)
        if not key.allows(scope):
            raise PermissionDeniedException(
                f"this API key has scopes {', '.join(key.scopes)}; this endpoint needs {scope!r}"
            )

    guard.__name__ = f"requires_{scope}"
    return guard


READ = requires("read")
INGEST = requires("ingest")
ADMIN = requires("admin")
