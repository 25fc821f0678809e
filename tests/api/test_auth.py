"""API keys under abuse: malformed tokens cost nothing, the cache is bounded and keeps no token.

The memory figure itself (1,500 distinct 60 KB junk tokens against a running server) is measured
by bench/bench_auth_memory.py.
"""

import anyio

from api.auth import ENTRY_BYTES, KeyCache
from recsys.db import apikeys
from tests.api.conftest import assert_problem


def test_malformed_tokens_are_refused_before_any_lookup_or_caching(client, keys):
    cache = client.app.state.api_keys
    for i in range(20):
        junk = f"{i:04d}" + "x" * 60_000  # issue 10: each distinct junk token was kept whole
        assert_problem(client.get("/v1/models", headers={"Authorization": f"Bearer {junk}"}), 401)
    assert_problem(client.get("/v1/models", headers={"Authorization": "Bearer rsk_0000000g_" + "a" * 43}), 401)
    assert len(cache) == 0
    assert client.get("/v1/models", headers=keys["read"]).status_code == 200
    assert len(cache) == 1


def test_the_cache_is_bounded_in_bytes_and_holds_digests_not_keys(db):
    real, _ = apikeys.create_key(db, ["read"], "real")
    cache = KeyCache(db, 60.0, max_bytes=3 * ENTRY_BYTES)
    unknown = [f"rsk_{i:08x}_{'s' * 43}" for i in range(5)]

    async def look_all():
        found = [await cache.lookup(key) for key in [real, *unknown]]
        return found

    found = anyio.run(look_all)
    assert found[0] is not None and found[0].scopes == ("read",) and found[1:] == [None] * 5
    assert len(cache) == 3  # the least recently used entries went
    assert all(isinstance(k, bytes) and len(k) == 32 for k in cache._entries)
