"""A keep-alive HTTP/1.1 load generator (asyncio sockets) that runs in a process of its own.

    from loadgen import Request, drive_in_another_process
    stats = drive_in_another_process(port, [[Request("GET", "/healthz")] * 1000] * 4, key)

Each inner list is one connection's requests, sent one after the other (a connection waits for each
answer): ``len(shares)`` is the concurrency. Giving each connection its own list lets a benchmark
keep related requests (one play session's events) on one connection and in order. With ``interval``
a connection sends its requests on a schedule (one every ``interval`` seconds) instead of as fast as
it can, and a request's latency runs from its scheduled time, so a stalled server is not hidden by
the requests it delayed. Answers must carry ``Content-Length`` (Litestar's do). Loopback only; the
job travels to the driver process as a pickle in a temporary file, the figures come back as JSON on
its stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np


class Request(NamedTuple):
    method: str
    path: str
    body: bytes | None = None


def spread(requests: list[Request], concurrency: int) -> list[list[Request]]:
    """Round-robin ``requests`` over ``concurrency`` connections."""
    return [requests[i::concurrency] for i in range(concurrency)]


async def _connection(host, port, requests, headers, latencies, errors, interval, offset):
    reader, writer = await asyncio.open_connection(host, port)
    begin = time.perf_counter() + offset
    try:
        for n, (method, path, body) in enumerate(requests):
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
            if body is not None:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            started = time.perf_counter()
            if interval:
                scheduled = begin + n * interval
                if scheduled > started:
                    await asyncio.sleep(scheduled - started)
                started = scheduled
            writer.write(head.encode() + b"\r\n" + (body or b""))
            answer = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", answer).group(1))
            content = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not answer.startswith(b"HTTP/1.1 200"):
                errors.append(answer.split(b"\r\n", 1)[0].decode() + " " + content[:300].decode(errors="replace"))
    finally:
        writer.close()


async def _drive(host, port, shares, key, interval):
    headers = f"Authorization: Bearer {key}\r\n" if key else ""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    # Paced connections are staggered, so that the load is spread over each interval.
    await asyncio.gather(*(
        _connection(host, port, share, headers, latencies, errors, interval, (interval or 0) * i / len(shares))
        for i, share in enumerate(shares)
    ))
    return latencies, errors, time.perf_counter() - started


def drive(host: str, port: int, shares: list[list[Request]], key: str | None, interval: float | None = None) -> dict:
    """Send every share on its own connection, all at once (each paced at one request per ``interval``
    seconds, or as fast as answers come); requests/s, p50/p99 (ms) and errors."""
    cpu = time.process_time()
    latencies, errors, seconds = asyncio.run(_drive(host, port, shares, key, interval))
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,  # the load generator's own CPU
        "rps": len(latencies) / seconds,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latencies_ms": ms.tolist(),  # for a caller that joins several drives' figures
    }


def drive_in_another_process(port: int, shares: list[list[Request]], key: str | None,
                             interval: float | None = None) -> dict:
    """:func:`drive` in a fresh Python process, so that the client does not share the benchmark's GIL."""
    with tempfile.NamedTemporaryFile(suffix=".pickle") as job:
        pickle.dump({"port": port, "shares": shares, "key": key, "interval": interval}, job)
        job.flush()
        out = subprocess.run([sys.executable, __file__, job.name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# --- whose CPU: the server's, PostgreSQL's, the load generator's ----------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its descendants, those that exited
    included once their parent has reaped them (Linux ``/proc``; 0.0 where it is not readable)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
        times[int(entry)] = sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def postmaster_pid(url: str) -> int | None:
    """The PID of the PostgreSQL server behind ``url`` when it runs on this machine (the parent of
    a backend), else None."""
    import psycopg

    with psycopg.connect(url) as conn:
        if conn.info.host not in ("localhost", "127.0.0.1", "::1") and not conn.info.host.startswith("/"):
            return None
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            with open(f"/proc/{backend}/stat") as file:
                return int(file.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        job = pickle.load(file)
    print(json.dumps(drive("127.0.0.1", job["port"], job["shares"], job["key"], job["interval"])))
