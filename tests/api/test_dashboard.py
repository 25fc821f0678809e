"""The dashboard over HTTP (tests/dashboard drives it in a browser): sign-in, cookie, scopes, CSRF."""

import re

import pytest

from recsys.db import experiments as store
from recsys.db import versions
from tests.api.conftest import count, write_version


def sign_in(client, headers) -> str:
    """Sign in with the key of ``headers``; returns the page's CSRF token."""
    key = headers["Authorization"].split()[1]
    response = client.post("/dashboard/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Max-Age=28800" in cookie
    assert "Path=/dashboard" in cookie
    page = client.get("/dashboard/versions")
    assert page.status_code == 200
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text)[1]


def test_pages_need_a_session(client):
    for path in ("/dashboard", "/dashboard/versions", "/dashboard/runs", "/dashboard/experiments",
                 "/dashboard/players?player_id=p1"):
        response = client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/dashboard/login"), path


@pytest.mark.parametrize(("key", "status"), [("rsk_00000000_nope", 401), (None, 403)])
def test_unknown_and_ingest_keys_cannot_sign_in(client, keys, key, status):
    key = key or keys["ingest"]["Authorization"].split()[1]
    response = client.post("/dashboard/login", data={"key": key}, follow_redirects=False)
    assert response.status_code == status and "set-cookie" not in response.headers


def test_overview_shows_the_active_version_and_todays_lists(client, keys, world):
    sign_in(client, keys["read"])
    for _ in range(3):
        assert client.get("/v1/players/p1/recommendations", headers=keys["read"]).status_code == 200
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert f'<strong id="active-id">{world.version}</strong>' in page.text
    assert '<strong id="served-24h">3</strong>' in page.text
    assert "<code>/v1/players/{player_id}/recommendations</code></td><td>GET</td><td class=\"n\">3</td>" in page.text
    assert "<svg" in page.text and "lists per hour" in page.text and "hour of day (UTC)" in page.text


def test_a_read_key_cannot_activate_and_admin_needs_the_csrf_token(client, keys, world, db):
    other = write_version(db, world.players, world.slots, seed=5, activate=False)
    csrf = sign_in(client, keys["read"])
    refused = client.post(f"/dashboard/versions/{other}/activate", data={"csrf": csrf})
    assert refused.status_code == 403 and "needs an admin key" in refused.text
    assert versions.active_version(db).id == world.version

    csrf = sign_in(client, keys["admin"])
    forged = client.post(f"/dashboard/versions/{other}/activate", data={"csrf": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert versions.active_version(db).id == world.version
    done = client.post(f"/dashboard/versions/{other}/activate", data={"csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert versions.active_version(db).id == other


def test_revoking_the_key_or_signing_out_ends_the_session(client, keys, db):
    from recsys.db import apikeys

    csrf = sign_in(client, keys["read"])
    assert count(db, "dashboard_sessions") == 1
    client.post("/dashboard/logout", data={"csrf": csrf})
    assert client.get("/dashboard", follow_redirects=False).status_code == 303
    sign_in(client, keys["admin"])
    apikeys.revoke_key(db, keys["admin"]["Authorization"].split("_")[1])
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_experiments_start_and_stop_from_the_dashboard(client, keys, world, db):
    other = write_version(db, world.players, world.slots, seed=5, activate=False)
    csrf = sign_in(client, keys["admin"])
    bad = client.post("/dashboard/experiments/start", data={"csrf": csrf, "name": "ab", "arms": "control=oops"})
    assert bad.status_code == 422 and "NAME=VERSION:WEIGHT" in bad.text
    assert client.post("/dashboard/experiments/start", data={
        "csrf": csrf, "name": "ab", "arms": f"control={world.version}:50 candidate={other}:50"},
        follow_redirects=False).status_code == 303
    assert store.running(db).name == "ab"
    page = client.get("/dashboard/experiments")
    assert "clicks / impression" in page.text and f"candidate (version {other})" in page.text
    assert client.post("/dashboard/experiments/ab/stop", data={"csrf": csrf, "promote": "candidate"},
                       follow_redirects=False).status_code == 303
    assert (store.get(db, "ab").promoted_arm, versions.active_version(db).id) == ("candidate", other)


def test_why_this_list_reads_the_audit_log(client, keys, world):
    sign_in(client, keys["read"])
    served = client.get("/v1/players/p2/recommendations?k=3", headers=keys["read"]).json()
    page = client.get("/dashboard/players?player_id=p2")
    assert page.status_code == 200
    assert served["recommendation_id"] in page.text and "gate: allowed" in page.text
    for item in served["items"]:
        assert f"<code>{item['slot_id']}</code>" in page.text
    assert client.get("/dashboard/players?player_id=nobody").status_code == 404
    escaped = client.get("/dashboard/players?player_id=%3Cscript%3E")
    assert "<script>" not in escaped.text and "&lt;script&gt;" in escaped.text


# --- session hygiene (issue 22, failure 10) ---------------------------------------------------------


def _key(headers) -> str:
    return headers["Authorization"].split()[1]


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a data: page
    {"Origin": "http://testserver.local.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another origin
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver.local"},  # Fetch Metadata wins
])
def test_a_cross_site_sign_in_or_sign_out_is_403(client, keys, db, headers):
    response = client.post("/dashboard/login", data={"key": _key(keys["admin"])}, headers=headers,
                           follow_redirects=False)
    assert response.status_code == 403 and "set-cookie" not in response.headers
    assert "same-origin" in response.text and count(db, "dashboard_sessions") == 0

    sign_in(client, keys["read"])
    refused = client.post("/dashboard/logout", headers=headers, follow_redirects=False)
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert client.get("/dashboard/versions").status_code == 200  # still signed in
    assert count(db, "dashboard_sessions") == 1


@pytest.mark.parametrize("headers", [
    {},  # not a browser (curl, a script): no cross-site request to forge
    {"Origin": "http://testserver.local"},
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver.local"},
])
def test_a_same_origin_sign_in_and_sign_out_work(client, keys, db, headers):
    response = client.post("/dashboard/login", data={"key": _key(keys["read"])}, headers=headers,
                           follow_redirects=False)
    assert response.status_code == 303 and count(db, "dashboard_sessions") == 1
    out = client.post("/dashboard/logout", headers=headers, follow_redirects=False)
    assert out.status_code == 303 and count(db, "dashboard_sessions") == 0


class _Peer:
    """The app as a proxy at ``address`` reaches it (the test client's peer is otherwise "testclient")."""

    def __init__(self, app, address: str) -> None:
        self.app, self.address = app, address

    async def __call__(self, scope, receive, send):
        await self.app({**scope, "client": (self.address, 40000)} if "client" in scope else scope, receive, send)

    def __getattr__(self, name):
        return getattr(self.app, name)


def _cookie(settings, key: str, *, peer: str | None = None, base_url: str = "http://testserver.local",
            headers: dict | None = None, **changes) -> str:
    from litestar.testing import TestClient

    from api.app import create_app
    from tests.api.conftest import SERVING

    app = create_app(settings.replace(**{**SERVING, **changes}))
    with TestClient(_Peer(app, peer) if peer else app, base_url=base_url) as client:
        response = client.post("/dashboard/login", data={"key": key}, headers=headers or {}, follow_redirects=False)
        assert response.status_code == 303, response.text
        return response.headers["set-cookie"]


def test_the_cookie_is_secure_when_the_request_came_over_tls(settings, keys, db):
    key = _key(keys["read"])
    tls = {"X-Forwarded-Proto": "https"}
    # Straight over TLS, and through a trusted proxy that says it terminated TLS.
    assert "Secure" in _cookie(settings, key, base_url="https://testserver.local")
    assert "Secure" in _cookie(settings, key, peer="10.1.2.3", headers=tls, trusted_proxies=("10.0.0.0/8",))
    assert "Secure" in _cookie(settings, key, peer="10.1.2.3", headers={"X-Forwarded-Proto": "https, http"},
                               trusted_proxies=("10.1.2.3",))  # the first proxy's word: the client's side
    # Plain HTTP, and X-Forwarded-Proto from anyone the setting does not name: ignored.
    assert "Secure" not in _cookie(settings, key)
    assert "Secure" not in _cookie(settings, key, peer="10.1.2.3", trusted_proxies=("10.0.0.0/8",))
    assert "Secure" not in _cookie(settings, key, peer="192.0.2.7", headers=tls, trusted_proxies=("10.0.0.0/8",))
    assert "Secure" not in _cookie(settings, key, peer="10.1.2.3", headers=tls)


def test_a_proxied_tls_origin_is_the_same_origin(settings, keys, db):
    headers = {"X-Forwarded-Proto": "https", "Origin": "https://testserver.local"}
    cookie = _cookie(settings, _key(keys["read"]), peer="10.1.2.3", headers=headers, trusted_proxies=("10.0.0.0/8",))
    assert "Secure" in cookie


def test_a_key_keeps_at_most_n_sessions_and_the_oldest_end_first(make_client, keys, db):
    client = make_client(ready=False, dashboard_max_sessions=3)
    tokens = []
    for _ in range(5):  # issue 22: 200 sign-ins left 200 session rows
        response = client.post("/dashboard/login", data={"key": _key(keys["read"])}, follow_redirects=False)
        assert response.status_code == 303
        tokens.append(response.cookies["recsys_dashboard"])
    sign_in(client, keys["admin"])  # another key's sessions are its own
    assert count(db, "dashboard_sessions") == 4
    live = []
    for token in tokens:
        client.cookies.clear()
        client.cookies.set("recsys_dashboard", token, path="/dashboard")
        live.append(client.get("/dashboard/versions", follow_redirects=False).status_code)
    assert live == [303, 303, 200, 200, 200]


# --- the overview at volume (issue 22, failure 5) ---------------------------------------------------


def _served(client) -> int:
    page = client.get("/dashboard")
    assert page.status_code == 200
    return int(re.search(r'<strong id="served-24h">(\d+)</strong>', page.text)[1])


def test_the_overview_reads_its_counts_at_most_once_per_cache_period(keys, world, make_client):
    """RECSYS_DASHBOARD_CACHE_SECONDS: reloading tabs share one read per period; 0 reads on every load."""
    cached, fresh = make_client(dashboard_cache_seconds=3600), make_client(dashboard_cache_seconds=0)
    for client in (cached, fresh):
        sign_in(client, keys["read"])
        assert _served(client) == 0
    assert cached.get("/v1/players/p1/recommendations", headers=keys["read"]).status_code == 200
    assert _served(cached) == 0  # the counts read before the list was served, until the period ends
    assert _served(fresh) == 1


def test_the_overview_counts_are_read_again_once_expired(world, db):
    import time

    import sqlalchemy as sa

    from api.dashboard import CountsCache

    cache = CountsCache(0.2)
    hours, funnel = cache.get(db)
    assert sum(h.served for h in hours) == 0 and funnel["served"] == 0
    with db.begin() as conn:
        conn.execute(sa.text("INSERT INTO recommendations (id, player_key, trigger, slot_keys, scores, reasons, "
                             "explored) VALUES ('00000000-0000-0000-0000-000000000001', :p, 'api', ARRAY[:s], "
                             "'{1.0}', '{personal}', '{f}')"), {"p": world.players["p1"], "s": world.slots["s1"]})
    time.sleep(0.3)
    hours, funnel = cache.get(db)
    assert sum(h.served for h in hours) == 1 and funnel["served"] == 1


def test_the_experiments_page_reads_its_results_at_most_once_per_cache_period(keys, world, db, make_client):
    """RECSYS_DASHBOARD_CACHE_SECONDS holds the experiments page's results too; a start or stop from the
    dashboard clears them at once; GET /v1/experiments always reads afresh."""
    other = write_version(db, world.players, world.slots, seed=5, activate=False)
    cached, fresh = make_client(dashboard_cache_seconds=3600), make_client(dashboard_cache_seconds=0)
    csrf = sign_in(cached, keys["admin"])
    sign_in(fresh, keys["read"])
    assert "exp-cached" not in cached.get("/dashboard/experiments").text
    body = {"name": "exp-cached", "arms": [{"name": "control", "version": world.version, "weight": 50},
                                      {"name": "candidate", "version": other, "weight": 50}]}
    assert cached.post("/v1/experiments", json=body, headers=keys["admin"]).status_code == 201
    assert "exp-cached" not in cached.get("/dashboard/experiments").text  # read before the start, until the period ends
    assert "exp-cached" in fresh.get("/dashboard/experiments").text
    assert [e["name"] for e in cached.get("/v1/experiments", headers=keys["read"]).json()] == ["exp-cached"]
    assert cached.post("/dashboard/experiments/exp-cached/stop", data={"csrf": csrf},
                       follow_redirects=False).status_code == 303
    page = cached.get("/dashboard/experiments").text
    assert "exp-cached" in page and store.get(db, "exp-cached").status == "stopped"
