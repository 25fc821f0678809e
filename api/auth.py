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

Where a request came from, for the dashboard's sign-in (issue 22): :func:`request_scheme` believes
``X-Forwarded-Proto`` only from a proxy that ``RECSYS_TRUSTED_PROXIES`` names, and
:func:`cross_site` says why a browser's request came from another site.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
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


# --- where a request came from ------------------------------------------------------------------------


@functools.cache
def _networks(trusted: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _from_trusted_proxy(connection: ASGIConnection, trusted: tuple[str, ...]) -> bool:
    peer = connection.client.host if connection.client else None
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:  # a Unix socket, or a test client
        return False
    return any(address in network for network in _networks(trusted))


def request_scheme(connection: ASGIConnection, trusted: tuple[str, ...]) -> str:
    """``https`` or ``http`` as the client used it: the connection's own scheme, or the first value of
    ``X-Forwarded-Proto`` (the proxy nearest the client) when the peer is one of the ``trusted``
    proxies (addresses or networks). Anyone else's header is ignored: it could claim TLS it lacks."""
    forwarded = connection.headers.get("x-forwarded-proto")
    if forwarded and _from_trusted_proxy(connection, trusted):
        return "https" if forwarded.split(",")[0].strip().lower() == "https" else "http"
    return "https" if connection.url.scheme in ("https", "wss") else "http"


_DEFAULT_PORTS = (":80", ":443")


def cross_site(connection: ASGIConnection) -> str | None:
    """Why a browser sent this request from another origin (a header as it came), or None.

    Fetch Metadata first: ``Sec-Fetch-Site`` must be ``same-origin`` (or ``none``: the user's own
    navigation). Browsers without it send ``Origin`` on every POST; its host must be the ``Host``
    this server was asked for (default ports aside; the scheme is not compared, so a TLS proxy
    without ``RECSYS_TRUSTED_PROXIES`` does not lock old browsers out). A request with neither header
    does not come from a browser, so no other site can have forged it.
    """
    site = connection.headers.get("sec-fetch-site")
    if site is not None:
        return None if site.lower() in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = connection.headers.get("origin")
    if origin is None:
        return None
    _, separator, host = origin.partition("://")
    own = connection.headers.get("host", "")
    if not separator or _without_default_port(host.lower()) != _without_default_port(own.lower()):
        return f"Origin: {origin}"
    return None


def _without_default_port(host: str) -> str:
    return next((host.removesuffix(port) for port in _DEFAULT_PORTS if host.endswith(port)), host)
