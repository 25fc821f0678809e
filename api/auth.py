"""API keys: ``Authorization: Bearer <key>``, checked against ``api_keys`` with a short in-process cache.

A key is looked up once per ``api_key_cache_seconds`` (default 5 s) per process; a revoked key
therefore keeps working for at most that long on a process that saw it recently. Unknown keys are
cached too, so a flood of bad keys does not become a flood of queries.

Memory stays bounded whatever clients send (issue 10: 9,000 junk tokens of 60 KB took a worker
from 166 MB to 684 MB): a token that does not have the shape of a key (``rsk_<8 hex>_<secret>``)
is refused before any lookup or caching, and the cache holds the SHA-256 digest of a token, never
the token, in a least-recently-used table bounded by ``api_key_cache_bytes``.

When the database cannot be reached, a key is a 503 (``DatabaseUnavailable``), except on the
endpoints marked ``grace`` (``/similar``, answered from memory): there a key verified within the
last ``api_key_grace_seconds`` keeps working.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from recsys.db.apikeys import KEY_PREFIX, ApiKey, find_key
from recsys.db.engine import DatabaseUnavailable

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="recsys"'}
KEY_SHAPE = re.compile(rf"{KEY_PREFIX}_[0-9a-f]{{8}}_[A-Za-z0-9_-]{{16,128}}")
"""What ``recsys.db.apikeys.create_key`` makes (a 43-character URL-safe secret), with room to spare."""
ENTRY_BYTES = 512
"""Upper estimate of one cache entry: a 32-byte digest (65 B as ``bytes``), the tuple, the float and
a shared or small ``ApiKey``; entries have one size because the token itself is never kept."""


class KeyCache:
    """SHA-256(token) -> (verified at, expires at, ApiKey or None), on monotonic time, LRU-bounded."""

    def __init__(self, engine, seconds: float, *, max_bytes: int = 4 << 20, grace_seconds: float = 300.0) -> None:
        self.engine = engine
        self.seconds = seconds
        self.grace_seconds = grace_seconds
        self.max_entries = max(1, max_bytes // ENTRY_BYTES)
        self._entries: OrderedDict[bytes, tuple[float, float, ApiKey | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(self, key: str, *, grace: bool = False) -> ApiKey | None:
        """The key's row, or None for an unknown key. Raises ``DatabaseUnavailable`` when the
        database cannot say, unless ``grace`` and the key was verified recently enough."""
        digest = hashlib.sha256(key.encode()).digest()
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
        if entry is not None and entry[1] > now:
            return entry[2]
        try:
            found = await anyio.to_thread.run_sync(find_key, self.engine, key)
        except DatabaseUnavailable:
            if grace and entry is not None and entry[2] is not None and now - entry[0] <= self.grace_seconds:
                return entry[2]
            raise
        with self._lock:
            self._entries[digest] = (now, now + self.seconds, found)
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found


def requires(scope: str, *, grace: bool = False):
    """A guard: the request must carry a valid key with ``scope`` (``admin`` implies every scope).

    ``grace``: the endpoint answers from memory, so a recently verified key keeps working while
    the database is unreachable (see the module docstring).
    """

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        header = connection.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise NotAuthorizedException("send an API key as `Authorization: Bearer <key>`", headers=_CHALLENGE)
        if not KEY_SHAPE.fullmatch(token):
            raise NotAuthorizedException("the API key is unknown or revoked", headers=_CHALLENGE)
        key = await connection.app.state.api_keys.lookup(token, grace=grace)
        if key is None or key.revoked_at is not None:
            raise NotAuthorizedException("the API key is unknown or revoked", headers=_CHALLENGE)
        if not key.allows(scope):
            raise PermissionDeniedException(
                f"this API key has scopes {', '.join(key.scopes)}; this endpoint needs {scope!r}"
            )

    guard.__name__ = f"requires_{scope}{'_grace' if grace else ''}"
    return guard


READ = requires("read")
READ_FROM_MEMORY = requires("read", grace=True)
INGEST = requires("ingest")
ADMIN = requires("admin")
