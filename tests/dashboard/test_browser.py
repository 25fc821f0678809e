"""The dashboard in a real browser: Debian's chromium driven by Playwright against a real server on a
seeded embedded PostgreSQL. Screenshots go to the test's temporary folder."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from recsys.db import experiments as store
from recsys.db import versions
from tests.dashboard.world import CHROMIUM, Server, launch, seed, serve_lists, sign_in

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium")


@pytest.fixture(scope="module")
def dashboard(engine, settings, tmp_path_factory):
    casino = seed(engine, tmp_path_factory.mktemp("reports"))
    with Server(settings) as server, sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        serve_lists(server.url, casino.keys["read"], ["p1", "p2", "p7"])  # p7 is self-excluded
        yield server, casino, browser
        browser.close()


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def test_sign_in_sets_a_strict_session_cookie_and_the_overview_shows_real_numbers(dashboard, engine, tmp_path):
    server, casino, browser = dashboard
    page = sign_in(browser, server.url, casino.keys["admin"])
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/dashboard")
    assert 7.9 * 3600 < cookie["expires"] - time.time() <= 8 * 3600
    served = _count(engine, "SELECT count(*) FROM recommendations WHERE suppressed_reason IS NULL "
                            "AND created_at > now() - interval '24 hours'")
    assert served > 300  # the pilot's lists and the three just served
    assert page.text_content("#served-24h") == str(served)
    assert page.text_content("#suppressed-24h") == "1"
    assert page.text_content("#active-id") == str(casino.active)
    assert page.locator("#active-version table").inner_text().count("0.842") == 1
    assert page.locator("#lists svg").count() == 1 and "hour of day (UTC)" in page.locator("#lists svg").inner_html()
    page.screenshot(path=tmp_path / "overview.png", full_page=True)
    page.click("text=Pipeline runs")
    page.click("#runs a:text('report')")
    assert page.text_content("h1") == "Pipeline run 1"


def test_an_admin_starts_and_stops_an_experiment(dashboard, engine, tmp_path):
    server, casino, browser = dashboard
    page = sign_in(browser, server.url, casino.keys["admin"])
    page.goto(f"{server.url}/dashboard/experiments")
    pilot = page.locator("#experiment-pilot")
    assert "better" in pilot.locator("table.results").inner_text()  # the seeded candidate clicks more
    page.fill("input[name=name]", "browser-ab")
    page.fill("input[name=arms]", f"control={casino.active}:50 candidate={casino.candidate}:50")
    page.click("#start button[type=submit]")
    section = page.locator("#experiment-browser-ab")
    assert "running" in section.locator("h2").inner_text()
    assert store.running(engine).name == "browser-ab"
    page.screenshot(path=tmp_path / "experiment-running.png", full_page=True)
    section.locator("select[name=promote]").select_option("candidate")
    section.locator("button[type=submit]").click()
    assert "stopped" in page.locator("#experiment-browser-ab h2").inner_text()
    assert "promoted arm candidate" in page.locator("#experiment-browser-ab").inner_text()
    assert versions.active_version(engine).id == casino.candidate
    page.screenshot(path=tmp_path / "experiment-stopped.png", full_page=True)


def test_why_this_list_shows_a_players_lists_from_the_audit_log(dashboard, tmp_path):
    server, casino, browser = dashboard
    page = sign_in(browser, server.url, casino.keys["read"])
    (served,) = serve_lists(server.url, casino.keys["read"], ["p2"])
    page.goto(f"{server.url}/dashboard/players")
    page.fill("input[name=player_id]", "p2")
    page.click("main button[type=submit]")
    newest = page.locator("section.list").first
    assert served["recommendation_id"] in newest.inner_text()
    assert "gate: allowed" in newest.inner_text()
    assert [r.split("\t")[1].split()[-1] for r in newest.locator("table.items").inner_text().splitlines()[1:]] == \
        [item["slot_id"] for item in served["items"]]
    page.screenshot(path=tmp_path / "player.png", full_page=True)
    page.goto(f"{server.url}/dashboard/players?player_id=p7")
    assert "suppressed: self_excluded" in page.locator("section.list").first.inner_text()


def test_a_read_key_cannot_activate(dashboard, engine, tmp_path):
    server, casino, browser = dashboard
    page = sign_in(browser, server.url, casino.keys["read"])
    page.goto(f"{server.url}/dashboard/versions")
    button = page.locator(f"#version-{casino.refused} button")
    assert button.is_disabled()
    before = versions.active_version(engine).id
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    answer = page.request.post(f"{server.url}/dashboard/versions/{casino.refused}/activate",
                               form={"csrf": csrf, "force": "on"})
    assert answer.status == 403 and "needs an admin key" in answer.text()
    assert versions.active_version(engine).id == before
    page.screenshot(path=tmp_path / "versions-read-only.png", full_page=True)
