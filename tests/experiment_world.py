"""Experiments with a known truth: served lists written straight into the log, and per-player sums
drawn without a database.

:func:`two_versions`: players in one market, 20 slots, an active version and a ready one.

:func:`serve_experiment`: each player gets the arm :func:`recsys.experiments.assign` gives, one list
of ``items`` slots, an impression of every item, a click on each with the arm's probability, a play
session attributed to each clicked item (its minutes drawn around the arm's mean) and a dismissal
of some unclicked ones.

:func:`heavy_tailed_arm`: one arm's :class:`~recsys.experiments.PlayerSums` as a casino's players
give them: impressions per player heavy-tailed (most players a handful, a few hundreds) and a
click propensity that differs from player to player, so items of one player are not independent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from recsys.experiments import Experiment, PlayerSums, assign


def two_versions(engine, players: int) -> tuple[dict[str, int], dict[str, int], int, int]:
    """Players ``p0..`` (market GB), slots ``s1..s20``, version ids ``(old, new)``: old active, new
    ready (seeds 1 and 2): what an experiment between two versions needs."""
    from tests.api.conftest import write_version
    from tests.factories import add_player, add_slot

    with engine.begin() as conn:
        keys = {f"p{i}": add_player(conn, f"p{i}", market="GB") for i in range(players)}
        slots = {f"s{i}": add_slot(conn, f"s{i}") for i in range(1, 21)}
    old = write_version(engine, {}, slots, seed=1)
    new = write_version(engine, {}, slots, seed=2, activate=False)
    return keys, slots, old, new


@dataclass(frozen=True)
class ClickModel:
    click: float  # P(click | impression)
    minutes: float = 5.0  # mean minutes played after a click
    dismiss: float = 0.05  # P(dismiss | impression, no click)


def serve_experiment(engine, experiment: Experiment, players: dict[str, int], slots: list[int],
                     models: dict[str, ClickModel], *, seed: int = 0, items: int = 5,
                     now: datetime | None = None) -> dict[str, int]:
    """Log one list per player; returns the number of players per arm."""
    rng = np.random.default_rng(seed)
    now = now or datetime.now(UTC)
    lists, feedback, sessions, per_arm = [], [], [], {}
    for n, (player_id, key) in enumerate(players.items()):
        arm = assign(experiment, player_id)
        per_arm[arm.name] = per_arm.get(arm.name, 0) + 1
        model = models[arm.name]
        rec_id, at = uuid.uuid4(), now - timedelta(minutes=n % 1400)
        chosen = [int(slot) for slot in rng.choice(slots, size=items, replace=False)]
        lists.append({"id": rec_id, "p": key, "v": arm.version_id, "e": experiment.id, "arm": arm.name, "at": at,
                      "slots": chosen, "scores": [1.0] * items, "reasons": ["personal"] * items,
                      "explored": [False] * items})
        for rank, slot in enumerate(chosen, 1):
            feedback.append({"r": rec_id, "s": slot, "a": "impression", "ts": at})
            if rng.random() < model.click:
                feedback.append({"r": rec_id, "s": slot, "a": "click", "ts": at})
                seconds = float(rng.exponential(model.minutes * 60))
                sessions.append({"sid": f"x-{rec_id}-{rank}", "p": key, "s": slot, "start": at,
                                 "end": at + timedelta(seconds=seconds), "sec": seconds, "r": rec_id})
            elif rng.random() < model.dismiss:
                feedback.append({"r": rec_id, "s": slot, "a": "dismiss", "ts": at})
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO recommendations (id, player_key, version_id, trigger, experiment_id, arm, filters, "
            "created_at, slot_keys, scores, reasons, explored) VALUES (:id, :p, :v, 'api', :e, :arm, "
            "'{\"gate\": \"allowed\"}', :at, :slots, :scores, :reasons, :explored)"), lists)
        conn.execute(sa.text("INSERT INTO feedback (recommendation_id, slot_key, action, ts) VALUES (:r, :s, :a, :ts)"),
                     feedback)
        if sessions:
            conn.execute(sa.text(
                "INSERT INTO play_sessions (session_id, player_key, slot_key, started_at, last_event_at, ended_at, "
                "seconds, recommendation_id) VALUES (:sid, :p, :s, :start, :end, :end, :sec, :r)"), sessions)
    return per_arm


def heavy_tailed_arm(rng: np.random.Generator, players: int, click: float, *, minutes: float = 5.0,
                     spread: float = 2.0, tail: float = 1.2, cap: int = 1000) -> PlayerSums:
    """Per-player sums of one arm whose true clicks per impression is ``click``.

    Impressions per player: ``1 + 4 x Pareto(tail)``, at most ``cap`` (tail 1.2: a median of 3, a
    few players in a thousand with several hundred). Each player's click propensity is
    Beta(``spread x click``, ``spread x (1 - click)``): mean ``click``, and the smaller ``spread``,
    the more players differ. Each click plays exponential minutes around ``minutes``; a tenth of
    clicks pass the session threshold. No dismissal, suppression or reality check: zeros everywhere.
    """
    impressions = np.minimum(1 + np.floor(4 * rng.pareto(tail, players)), cap)
    propensity = rng.beta(spread * click, spread * (1 - click), players)
    clicks = rng.binomial(impressions.astype(np.int64), propensity).astype(np.float64)
    click_minutes = rng.gamma(np.maximum(clicks, 1e-9), minutes) * (clicks > 0)
    return PlayerSums.of(lists=np.ceil(impressions / 5), items=impressions, impressions=impressions, clicks=clicks,
                         plays=clicks, click_minutes=click_minutes, long_clicks=rng.binomial(clicks.astype(np.int64),
                                                                                             0.1))
