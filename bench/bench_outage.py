"""What the API answers while its database is unreachable, and how fast it recovers (issue 10).

    python bench/bench_outage.py [--outage 3.0] [--rounds 3]

Starts an embedded PostgreSQL in a temporary folder behind a TCP proxy (tests/proxy.py), seeds the
tests' small casino (twenty slots, an active version), serves the app with uvicorn in this process
(API keys re-checked on every request: ``RECSYS_API_KEY_CACHE_SECONDS=0``), then per round: cuts
the proxy for ``--outage`` seconds while polling ``/similar``, recommendations and ``/readyz``,
restores it and times the first 200 of each. Prints the status codes seen and the recovery times.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=3.0, help="seconds the database is unreachable")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import sqlalchemy as sa
    import uvicorn

    from api.app import create_app
    from recsys.db import apikeys, migrations
    from recsys.db.embedded import embedded_url
    from recsys.db.engine import sqlalchemy_url
    from recsys.settings import Settings
    from tests.api.conftest import SERVING, write_version
    from tests.factories import add_player, add_slot
    from tests.proxy import Proxy

    with tempfile.TemporaryDirectory() as data:
        url = embedded_url(Path(data))
        migrations.upgrade(url)
        engine = sa.create_engine(sqlalchemy_url(url))
        with engine.begin() as conn:
            players = {f"p{i}": add_player(conn, f"p{i}", market="GB") for i in range(1, 6)}
            slots = {f"s{i}": add_slot(conn, f"s{i}", provider=f"p{(i - 1) // 4}") for i in range(1, 21)}
        write_version(engine, players, slots)
        key, _ = apikeys.create_key(engine, ["read"], "bench")
        proxy = Proxy(url)
        settings = Settings.from_env({}, database_url=proxy.url, data_dir=Path(data) / "app")
        app = create_app(settings.replace(**{**SERVING, "api_key_cache_seconds": 0.0}))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
        threading.Thread(target=server.run, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        paths = {"similar": "/v1/slots/s10/similar?k=5", "recommendations": "/v1/players/p1/recommendations",
                 "readyz": "/readyz"}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            for round_ in range(1, args.rounds + 1):
                before = {name: client.get(path).status_code for name, path in paths.items()}  # the key is verified
                assert set(before.values()) == {200}, before
                proxy.cut()
                seen: dict[str, Counter] = {name: Counter() for name in paths}
                headers_seen: set[str] = set()
                until = time.monotonic() + args.outage
                while time.monotonic() < until:
                    for name, path in paths.items():
                        response = client.get(path)
                        seen[name][response.status_code] += 1
                        if response.status_code == 503 and name != "readyz":
                            headers_seen.add(f"Retry-After: {response.headers.get('retry-after')}, "
                                             f"{response.headers.get('content-type')}")
                    time.sleep(0.05)
                restored = time.monotonic()
                proxy.restore()
                back: dict[str, float] = {}
                while len(back) < len(paths) and time.monotonic() - restored < 60:
                    for name, path in paths.items():
                        if name not in back and client.get(path).status_code == 200:
                            back[name] = time.monotonic() - restored
                    time.sleep(0.01)
                print(f"round {round_}: {args.outage:.1f} s outage; answers during it: "
                      + "; ".join(f"{name} {dict(counts)}" for name, counts in seen.items()))
                print(f"  503s carried {sorted(headers_seen)}")
                print("  first 200 after the database is back: "
                      + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in back.items()))
        server.should_exit = True
        proxy.cut()
        engine.dispose()


if __name__ == "__main__":
    main()
