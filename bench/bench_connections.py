"""Connections bounded and fair (issue 22): p50 / p99 of ``/healthz`` and recommendations while
thousands of idle sockets and open streams sit on the server, against the same server unloaded.

    python bench/bench_connections.py [--idle 5000] [--streams 1000] [--requests 300]

It seeds ``recsys_bench`` with a small casino (bench/bench_api.py), starts ``recsys serve``
(granian, default settings) and measures twice, in the same run: alone, then while this process
holds ``--idle`` TCP connections that send nothing (reopened as the server closes them after
``RECSYS_SERVE_HEADER_TIMEOUT_SECONDS``, as an attacker would) and ``--streams`` open push streams
(four read keys, one player each). Requests come from bench/loadgen.py in a process of its own,
paced (two connections, one request every ``--interval`` seconds each), so a stalled server shows
in the latencies. It also counts refusals (streams answered 429/503), the idle sockets the server
closed, and the cores the server's processes used in each phase (from ``/proc``): on a shared
machine, latencies with a server that used little CPU say the machine was busy, not the server.
Loopback only; bounded: about two minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_api import free_port, gets, seeded_casino, start_server, stop_server  # noqa: E402  (bench/)
from loadgen import drive_in_another_process, spread, tree_cpu_seconds  # noqa: E402  (bench/)

KEYS = 4


class Crowd:
    """Idle sockets and open streams, held by an asyncio loop in a thread of this process."""

    def __init__(self, port: int, idle: int, players: list[str], keys: list[str]) -> None:
        self.port, self.idle, self.players, self.keys = port, idle, players, keys
        self.open_idle = 0
        self.idle_closed = 0
        self.streams_open = 0
        self.streams_refused: dict[str, int] = {}
        self.stop = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    def start(self) -> Crowd:
        self.thread.start()
        return self

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)

    async def _run(self) -> None:
        tasks = [asyncio.create_task(self._idle()) for _ in range(self.idle)]
        for i, player in enumerate(self.players):
            tasks.append(asyncio.create_task(self._stream(player, self.keys[i % len(self.keys)])))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # open streams at a browser-like pace, not all in one tick
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _idle(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.2)
                continue
            self.open_idle += 1
            try:
                await reader.read()  # nothing is sent: this returns when the server closes it
                self.idle_closed += 1
            finally:
                self.open_idle -= 1
                writer.close()

    async def _stream(self, player: str, key: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(f"GET /v1/players/{player}/stream HTTP/1.1\r\nHost: bench\r\n"
                     f"Authorization: Bearer {key}\r\n\r\n".encode())
        try:
            status = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1].decode()
            if status != "200":
                self.streams_refused[status] = self.streams_refused.get(status, 0) + 1
                return
            self.streams_open += 1
            try:
                while await reader.read(4096):
                    pass
            finally:
                self.streams_open -= 1
        finally:
            writer.close()


def measure(port: int, key: str, paths: dict[str, list[str]], interval: float, server_pid: int) -> dict[str, dict]:
    """Each endpoint's figures, with the CPU seconds the server's processes spent meanwhile and the
    wall seconds (``server_cpu`` / ``seconds``: the cores the server used)."""
    out = {}
    for name, p in paths.items():
        cpu = tree_cpu_seconds(server_pid)
        out[name] = drive_in_another_process(port, spread(gets(p), 2), key, interval=interval)
        out[name]["server_cpu"] = tree_cpu_seconds(server_pid) - cpu
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300, help="requests per endpoint and phase")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between a connection's requests")
    parser.add_argument("--slots", type=int, default=500)
    parser.add_argument("--players", type=int, default=2000)
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process holds every socket
    from recsys.db import apikeys
    from recsys.settings import Settings

    settings = Settings.from_env()
    url, engine, world = seeded_casino(settings, slots=args.slots, players=args.players)
    keys = [apikeys.create_key(engine, ["read"], f"bench-connections-{i}")[0] for i in range(KEYS)]
    rng = random.Random(0)
    players = world["player_ids"]
    paths = {
        "healthz": ["/healthz"] * args.requests,
        "recommendations": [f"/v1/players/{rng.choice(players)}/recommendations?k=10" for _ in range(args.requests)],
    }
    port = free_port()
    server = start_server("granian", url, port, {})
    try:
        alone = measure(port, keys[0], paths, args.interval, server.pid)
        crowd = Crowd(port, args.idle, players[: args.streams], keys).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            crowd.streams_open + sum(crowd.streams_refused.values()) < args.streams or crowd.open_idle < args.idle * 0.9
        ):
            time.sleep(0.5)
        held = (crowd.open_idle, crowd.streams_open)
        crowded = measure(port, keys[0], paths, args.interval, server.pid)
        held_after = (crowd.open_idle, crowd.streams_open)
        crowd.close()
    finally:
        stop_server(server)
        engine.dispose()

    print(f"recsys serve (granian, 1 worker), file limit {hard:,}; crowd: {held[0]:,} idle sockets and "
          f"{held[1]:,} open streams when measuring began, {held_after[0]:,} and {held_after[1]:,} when it ended; "
          f"idle sockets closed by the server: {crowd.idle_closed:,}; streams refused: {crowd.streams_refused or 0}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")
    print(f"{'endpoint':<16} {'phase':<8} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
          f"{'server cores':>12}")
    for name in paths:
        for phase, figures in (("alone", alone[name]), ("crowded", crowded[name])):
            f = figures
            print(f"{name:<16} {phase:<8} {f['requests']:>8} {f['p50']:>8.2f} {f['p99']:>8.2f} {f['errors']:>7} "
                  f"{f['server_cpu'] / f['seconds']:>12.2f}"
                  + (f"  first error: {f['first_error']}" if f["errors"] else ""))
        print(f"{name:<16} p99 crowded / alone: {crowded[name]['p99'] / alone[name]['p99']:.2f}"
              f"  (target: p99 < 50 ms crowded: {'met' if crowded[name]['p99'] < 50 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
