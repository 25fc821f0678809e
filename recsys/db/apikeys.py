"""API keys: created once and shown once, stored as a SHA-256 hash beside a lookup prefix.

A key reads ``rsk_<prefix>_<secret>``: the 8-hex-digit prefix finds the row (``api_keys.prefix``,
unique), the SHA-256 of the whole key must equal ``key_hash``. The secret has 256 random bits, so a
plain (unsalted) hash is enough: there is nothing to guess by brute force. Scopes are ``read``,
``ingest`` and ``admin``; ``admin`` implies the other two.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from recsys.db.schema import SCOPES
from recsys.errors import RecsysError

KEY_PREFIX = "rsk"


class ApiKeyError(RecsysError):
    pass


@dataclass(frozen=True)
class ApiKey:
    id: int
    prefix: str
    scopes: tuple[str, ...]
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether this key may use an endpoint that needs ``scope`` (``admin`` implies every scope)."""
        return self.revoked_at is None and ("admin" in self.scopes or scope in self.scopes)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 8 or not parts[2]:
        return None
    return parts[1]


_COLUMNS = "id, prefix, scopes, name, created_at, revoked_at"


def _key(row) -> ApiKey:
    return ApiKey(row.id, row.prefix, tuple(row.scopes), row.name, row.created_at, row.revoked_at)


def create_key(engine: sa.Engine, scopes: list[str], name: str | None = None) -> tuple[str, ApiKey]:
    """A new key with ``scopes``: ``(the key, its row)``. The key itself is stored nowhere."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if not scopes or unknown:
        raise ApiKeyError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    for _ in range(5):
        prefix = secrets.token_hex(4)
        key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        with engine.begin() as conn:
            row = conn.execute(
                sa.text(
                    "INSERT INTO api_keys (prefix, key_hash, scopes, name) VALUES (:prefix, :hash, :scopes, :name) "
                    f"ON CONFLICT (prefix) DO NOTHING RETURNING {_COLUMNS}"
                ),
                {"prefix": prefix, "hash": hash_key(key), "scopes": sorted(set(scopes)), "name": name},
            ).first()
        if row is not None:
            return key, _key(row)
    raise ApiKeyError("could not find a free key prefix")


def find_key(engine: sa.Engine, key: str) -> ApiKey | None:
    """The key's row when ``key`` is genuine (revoked keys included, see ``ApiKey.allows``), else None."""
    prefix = prefix_of(key)
    if prefix is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {_COLUMNS}, key_hash FROM api_keys WHERE prefix = :prefix"), {"prefix": prefix}
        ).first()
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        return None
    return _key(row)


def list_keys(engine: sa.Engine) -> list[ApiKey]:
    with engine.connect() as conn:
        return [_key(r) for r in conn.execute(sa.text(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id"))]


def revoke_key(engine: sa.Engine, prefix: str) -> bool:
    """Revoke the key with this prefix; False when there is none (or it was already revoked)."""
    with engine.begin() as conn:
        return bool(
            conn.execute(
                sa.text("UPDATE api_keys SET revoked_at = now() WHERE prefix = :prefix AND revoked_at IS NULL"),
                {"prefix": prefix},
            ).rowcount
        )
