"""``recsys simulate``: a live stream of simulated players against a running API.

Players start sessions (half of them on a slot they were just recommended, clicking it first), send
heartbeats and spins as play events, and react to what comes back: a long session crosses the
one-hour trigger and receives a list, which the player sees (impressions) and sometimes follows
(click, then a new session on that slot, which the service attributes to the recommendation).

Event time runs ``speed`` times faster than the wall clock (default 60: a wall second is a minute of
play), so the one-hour trigger shows within a minute; the simulated hour ends at the present.
Everything goes through the public HTTP API, so it works against any deployment; the players and
slots to use come from the database the settings point at (``recsys.db.simulation``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0  # event time between heartbeats
SPINS_PER_BEAT = 12.0  # Poisson mean of the spins a beat reports (one spin event when there are any)
BATCH = 100  # events per POST /v1/events


@dataclass
class SimulationConfig:
    url: str
    api_key: str
    rate: float = 200.0
    """Target play events per wall second (the number of concurrent sessions follows from it)."""
    duration: float = 60.0
    """Wall seconds to run."""
    speed: float = 60.0
    """Event seconds per wall second."""
    median_session_minutes: float = 25.0
    """Sessions are log-normal around this (sigma 1): a few per cent pass the one-hour trigger."""
    recommend_share: float = 0.5
    """Share of new sessions that first ask the API for a list and play its pick."""
    click_share: float = 0.3
    """Share of triggered lists whose first item is clicked and played next."""
    trending_slot: str | None = None
    """A slot this simulation makes popular (``trending_share`` of new sessions play it)."""
    trending_share: float = 0.2
    seed: int = 0


@dataclass
class _Session:
    session_id: str
    player_id: str
    slot_id: str
    started: datetime
    ends: datetime
    next_beat: datetime


@dataclass
class SimulationSummary:
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    sessions: int = 0
    recommendation_requests: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    triggered: int = 0
    triggered_actions: dict[str, int] = field(default_factory=dict)
    feedback_sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    example_recommendation: str | None = None

    def lines(self) -> list[str]:
        rate = self.events_sent / self.seconds if self.seconds else 0.0
        return [
            f"play events sent: {self.events_sent:,} ({rate:,.0f}/s), accepted {self.accepted:,}, "
            f"duplicates {self.duplicates:,}",
            f"sessions started: {self.sessions:,}; recommendation requests: {self.recommendation_requests:,} "
            f"(suppressed by the protection gate: {_counts(self.suppressed)})",
            f"long-session triggers fired: {self.triggered:,} ({_counts(self.triggered_actions)})",
            f"feedback sent: {self.feedback_sent:,}",
            f"errors: {_counts(self.errors)}",
        ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


async def simulate(
    config: SimulationConfig, player_ids: list[str], slot_ids: list[str], slot_weights: np.ndarray,
    *, transport: httpx.AsyncBaseTransport | None = None,
) -> SimulationSummary:
    """Run the simulation for ``config.duration`` wall seconds; returns what happened.

    ``transport`` replaces the network (tests count what would be sent with httpx's MockTransport).
    """
    if not player_ids or not slot_ids:
        raise ValueError("the simulation needs players and slots")
    rng = np.random.default_rng(config.seed)
    summary = SimulationSummary()
    sessions_wanted = max(1, round(config.rate * HEARTBEAT_SECONDS / config.speed / events_per_beat(config)))
    wall0 = time.monotonic()
    event0 = datetime.now(UTC) - timedelta(seconds=config.duration * config.speed)
    active: dict[str, _Session] = {}
    busy: set[str] = set()
    headers = {"Authorization": f"Bearer {config.api_key}"}
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
    async with httpx.AsyncClient(base_url=config.url, headers=headers, timeout=10.0, limits=limits,
                                 transport=transport) as client:
        sim = _Simulation(config, client, rng, summary, player_ids, slot_ids, slot_weights)
        while (elapsed := time.monotonic() - wall0) < config.duration:
            now = event0 + timedelta(seconds=elapsed * config.speed)
            starts = [
                sim.start_session(now, busy)
                for _ in range(min(sessions_wanted - len(active), 50))
            ]
            for session in await asyncio.gather(*starts):
                if session is not None:
                    active[session.session_id] = session
            events = []
            for session in list(active.values()):
                events += sim.due_events(session, now)
                if session.next_beat > session.ends:
                    del active[session.session_id]
                    busy.discard(session.player_id)
            await asyncio.gather(*(sim.post_events(events[i : i + BATCH], now) for i in range(0, len(events), BATCH)))
            await asyncio.sleep(max(0.0, 0.25 - (time.monotonic() - wall0 - elapsed)))
    summary.seconds = time.monotonic() - wall0
    return summary


def events_per_beat(config: SimulationConfig) -> float:
    """Play events a session sends per heartbeat, on average: the beat itself, a spin event when the
    beat has spins (almost always), and its share of the session's final ``end``.

    ``rate`` counts all of them: sizing the sessions by the beats alone sent twice the rate asked
    (issue 23). A session of ``m`` minutes has ``floor(m) + 1`` beats; ``m`` is log-normal (sigma 1),
    so its mean is ``median * e^0.5``.
    """
    beats = config.median_session_minutes * float(np.exp(0.5)) / (HEARTBEAT_SECONDS / 60.0) + 0.5
    return 1.0 + (1.0 - float(np.exp(-SPINS_PER_BEAT))) + 1.0 / beats


class _Simulation:
    def __init__(self, config, client, rng, summary, player_ids, slot_ids, slot_weights) -> None:
        self.config, self.client, self.rng, self.summary = config, client, rng, summary
        self.player_ids, self.slot_ids, self.slot_weights = player_ids, slot_ids, slot_weights
        self.next_slot: dict[str, str] = {}  # a player's clicked recommendation, played next

    async def start_session(self, now: datetime, busy: set[str]) -> _Session | None:
        player = self.player_ids[int(self.rng.integers(len(self.player_ids)))]
        if player in busy:
            return None
        busy.add(player)
        slot = self.next_slot.pop(player, None)
        if slot is None and self.config.trending_slot and self.rng.random() < self.config.trending_share:
            slot = self.config.trending_slot
        if slot is None and self.rng.random() < self.config.recommend_share:
            slot = await self.recommended_slot(player, now)
        if slot is None:
            slot = self.slot_ids[int(self.rng.choice(len(self.slot_ids), p=self.slot_weights))]
        minutes = float(self.rng.lognormal(np.log(self.config.median_session_minutes), 1.0))
        self.summary.sessions += 1
        return _Session(f"sim-{uuid.uuid4()}", player, slot, now, now + timedelta(minutes=minutes), now)

    async def recommended_slot(self, player: str, now: datetime) -> str | None:
        self.summary.recommendation_requests += 1
        response = await self.request("GET", f"/v1/players/{player}/recommendations", params={"k": 5})
        if response is None:
            return None
        body = response.json()
        if body["suppressed"] is not None:
            reason = body["suppressed"]["reason"]
            self.summary.suppressed[reason] = self.summary.suppressed.get(reason, 0) + 1
            return None
        items = body["items"]
        if not items:
            return None
        self.summary.example_recommendation = self.summary.example_recommendation or player
        pick = items[int(self.rng.integers(len(items)))]["slot_id"]
        await self.feedback(body["recommendation_id"], [i["slot_id"] for i in items], pick, now)
        return pick

    def due_events(self, session: _Session, now: datetime) -> list[dict]:
        events = []
        while session.next_beat <= min(now, session.ends):
            kind = "start" if session.next_beat == session.started else "heartbeat"
            ts = session.next_beat.isoformat()
            events.append(self.event(session, kind, ts))
            spins = int(self.rng.poisson(SPINS_PER_BEAT))
            if spins:
                bet = round(float(self.rng.choice([0.2, 0.5, 1.0, 2.0])) * spins, 2)
                win = round(bet * float(self.rng.uniform(0.0, 1.9)), 2)
                events.append(self.event(session, "spin", ts, bet=bet, win=win))
            session.next_beat += timedelta(seconds=HEARTBEAT_SECONDS)
        if session.next_beat > session.ends and session.ends <= now:
            events.append(self.event(session, "end", session.ends.isoformat()))
        return events

    def event(self, session: _Session, kind: str, ts: str, **money) -> dict:
        return {
            "event_id": str(uuid.uuid4()),
            "type": kind,
            "session_id": session.session_id,
            "player_id": session.player_id,
            "slot_id": session.slot_id,
            "ts": ts,
            **money,
        }

    async def post_events(self, events: list[dict], now: datetime) -> None:
        if not events:
            return
        self.summary.events_sent += len(events)
        response = await self.request("POST", "/v1/events", json={"events": events})
        if response is None:
            return
        body = response.json()
        self.summary.accepted += body["accepted"]
        self.summary.duplicates += body["duplicates"]
        for rec in body.get("recommendations", []):
            self.summary.triggered += 1
            action = rec.get("action") or ("suppressed" if rec.get("suppressed") else "games")
            self.summary.triggered_actions[action] = self.summary.triggered_actions.get(action, 0) + 1
            items = [i["slot_id"] for i in rec.get("items", [])]
            if items:
                clicked = items[0] if self.rng.random() < self.config.click_share else None
                await self.feedback(rec["recommendation_id"], items, clicked, now)
                if clicked is not None:
                    self.next_slot[rec["player_id"]] = clicked

    async def feedback(self, recommendation_id: str, items: list[str], clicked: str | None, now: datetime) -> None:
        batch = [{"recommendation_id": recommendation_id, "slot_id": s, "action": "impression", "ts": now.isoformat()}
                 for s in items]
        if clicked is not None:
            batch.append({"recommendation_id": recommendation_id, "slot_id": clicked, "action": "click",
                          "ts": now.isoformat()})
        response = await self.request("POST", "/v1/feedback", json={"feedback": batch})
        if response is not None:
            self.summary.feedback_sent += len(batch)

    async def request(self, method: str, path: str, **kwargs) -> httpx.Response | None:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self._error(type(exc).__name__)
            return None
        if response.status_code >= 400:
            self._error(f"HTTP {response.status_code} {path.split('/')[2] if path.count('/') > 1 else path}")
            log.debug("%s %s -> %s %s", method, path, response.status_code, response.text[:300])
            return None
        return response

    def _error(self, kind: str) -> None:
        self.summary.errors[kind] = self.summary.errors.get(kind, 0) + 1
