"""Prometheus metrics in the text exposition format, written by hand (no client library needed).

Per process: with several server workers each answers for itself (scrape each, or sum).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass

from litestar import MediaType, Response, get
from litestar.datastructures import State
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Seconds; the API aims at single-digit milliseconds, so the buckets are dense there.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the ``q`` quantile (seconds); inf past the last bucket."""
        total = sum(self.counts)
        if total == 0:
            return None
        cumulative = 0
        for bound, count in zip((*self.buckets, math.inf), self.counts, strict=True):
            cumulative += count
            if cumulative >= q * total:
                return bound
        return math.inf

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, cumulative = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {cumulative}')
        cumulative += self.counts[-1]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {cumulative}')
        out.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        out.append(f"{name}_count{{{labels}}} {cumulative}")
        return out


@dataclass(frozen=True)
class EndpointLoad:
    """One route and method since this process started. Quantiles are bucket upper bounds."""

    route: str
    method: str
    requests: int
    errors: int  # 5xx answers
    per_second: float
    p50_seconds: float | None
    p99_seconds: float | None


class Metrics:
    """Counters and histograms of one process. Updated from the event loop and from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], _Histogram] = {}
        self._log_seconds = _Histogram(LATENCY_BUCKETS)
        self._fallbacks: dict[str, int] = defaultdict(int)
        self._suppressions: dict[str, int] = defaultdict(int)
        self._served: dict[str, int] = defaultdict(int)
        self._version: int | None = None
        self._slots = 0
        self._build_seconds = 0.0
        self._swaps = 0
        self._started = time.time()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, f"{status // 100}xx")
        with self._lock:
            histogram = self._requests.get(key)
            if histogram is None:
                histogram = self._requests[key] = _Histogram(LATENCY_BUCKETS)
            histogram.observe(seconds)

    def observe_log_write(self, seconds: float) -> None:
        with self._lock:
            self._log_seconds.observe(seconds)

    def fallback(self, kind: str) -> None:
        with self._lock:
            self._fallbacks[kind] += 1

    def suppressed(self, reason: str) -> None:
        with self._lock:
            self._suppressions[reason] += 1

    def served(self, source: str) -> None:
        with self._lock:
            self._served[source] += 1

    def set_version(self, version_id: int | None, slots: int, *, build_seconds: float | None = None) -> None:
        with self._lock:
            self._version = version_id
            self._slots = slots
            if build_seconds is not None:
                self._build_seconds = build_seconds
                self._swaps += 1

    def endpoints(self) -> list[EndpointLoad]:
        """Requests, rate and latency quantiles per route and method, busiest first."""
        with self._lock:
            merged: dict[tuple[str, str], tuple[_Histogram, int]] = {}
            for (route, method, status), histogram in self._requests.items():
                combined, errors = merged.get((route, method), (_Histogram(LATENCY_BUCKETS), 0))
                combined.counts = [a + b for a, b in zip(combined.counts, histogram.counts, strict=True)]
                merged[(route, method)] = (combined, errors + (sum(histogram.counts) if status == "5xx" else 0))
            uptime = max(time.time() - self._started, 1e-9)
        out = [EndpointLoad(route, method, sum(h.counts), errors, sum(h.counts) / uptime, h.quantile(0.5),
                            h.quantile(0.99)) for (route, method), (h, errors) in merged.items()]
        return sorted(out, key=lambda e: -e.requests)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP recsys_http_request_duration_seconds Time from request to the end of the response.",
                "# TYPE recsys_http_request_duration_seconds histogram",
            ]
            for (route, method, status), histogram in sorted(self._requests.items()):
                labels = f'route="{route}",method="{method}",status="{status}"'
                lines += histogram.lines("recsys_http_request_duration_seconds", labels)
            lines += [
                "# HELP recsys_recommendation_log_seconds Time to write one served list (in the request).",
                "# TYPE recsys_recommendation_log_seconds histogram",
                *self._log_seconds.lines("recsys_recommendation_log_seconds", ""),
                "# HELP recsys_index_version Model version whose index is in memory (0: none).",
                "# TYPE recsys_index_version gauge",
                f"recsys_index_version {self._version or 0}",
                "# HELP recsys_index_slots Slots in the in-memory index (provisional ones included).",
                "# TYPE recsys_index_slots gauge",
                f"recsys_index_slots {self._slots}",
                "# HELP recsys_index_build_seconds Time the last index build took.",
                "# TYPE recsys_index_build_seconds gauge",
                f"recsys_index_build_seconds {self._build_seconds:.6f}",
                "# HELP recsys_index_swaps_total Index builds swapped in since start.",
                "# TYPE recsys_index_swaps_total counter",
                f"recsys_index_swaps_total {self._swaps}",
                "# HELP recsys_fallbacks_total Requests served by a fallback (pgvector search, popularity list).",
                "# TYPE recsys_fallbacks_total counter",
                *(f'recsys_fallbacks_total{{kind="{k}"}} {v}' for k, v in sorted(self._fallbacks.items())),
                "# HELP recsys_suppressions_total Lists withheld by the protection gate, by reason.",
                "# TYPE recsys_suppressions_total counter",
                *(f'recsys_suppressions_total{{reason="{k}"}} {v}' for k, v in sorted(self._suppressions.items())),
                "# HELP recsys_recommendations_total Lists served, by candidate source.",
                "# TYPE recsys_recommendations_total counter",
                *(f'recsys_recommendations_total{{source="{k}"}} {v}' for k, v in sorted(self._served.items())),
                "# HELP recsys_process_start_time_seconds Start of this process (Unix time).",
                "# TYPE recsys_process_start_time_seconds gauge",
                f"recsys_process_start_time_seconds {self._started:.0f}",
            ]
        return "\n".join(lines) + "\n"


def metrics_middleware(metrics: Metrics):
    """ASGI middleware timing every routed request by its route template (``/v1/slots/{slot_id:str}/similar``)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = scope.get("path_template") or "unmatched"
                metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)

        return timed

    return middleware


# Prometheus' text format 0.0.4; Litestar appends "; charset=utf-8" to every text/* type itself.
PROMETHEUS_MEDIA_TYPE = "text/plain; version=0.0.4"


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(state: State) -> Response[str]:
    return Response(state.metrics.render(), media_type=PROMETHEUS_MEDIA_TYPE)
