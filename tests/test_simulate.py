"""`recsys simulate --rate R` sends R play events per second (issue 23: it sent about 2R).

The API side is httpx's MockTransport: it counts what arrives and answers as the API does, so the
test measures the simulator's own pacing, not a server's speed.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from recsys.simulate import SimulationConfig, simulate


def api(received: list[dict]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events":
            events = json.loads(request.content)["events"]
            received.extend(events)
            return httpx.Response(200, json={"accepted": len(events), "duplicates": 0, "recommendations": []})
        if request.url.path == "/v1/feedback":
            return httpx.Response(200, json={"accepted": len(json.loads(request.content)["feedback"])})
        return httpx.Response(200, json={"recommendation_id": "r", "suppressed": None,
                                         "items": [{"slot_id": "s1"}, {"slot_id": "s2"}]})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(("rate", "speed", "median_minutes"), [(150.0, 120.0, 25.0), (60.0, 60.0, 5.0)])
def test_the_measured_rate_is_within_ten_per_cent_of_the_rate_asked(rate, speed, median_minutes):
    received: list[dict] = []
    config = SimulationConfig(url="http://api", api_key="k", rate=rate, duration=6.0, speed=speed,
                              median_session_minutes=median_minutes, seed=3)
    players, slots = [f"p{i}" for i in range(2000)], [f"s{i}" for i in range(50)]
    summary = asyncio.run(simulate(config, players, slots, np.full(50, 1 / 50), transport=api(received)))
    assert summary.events_sent == len(received) and summary.errors == {}
    measured = len(received) / summary.seconds
    print(f"measured {measured:.1f}/s for {rate:g}/s asked")
    assert abs(measured / rate - 1) < 0.10, (measured, rate)
    assert summary.lines()[0].startswith(f"play events sent: {len(received):,} ({measured:,.0f}/s)")
