"""Consolidation: play sessions -> interactions (player x slot x day), incremental and idempotent.

Each run takes the players whose sessions changed since the last run's watermark (minus a lookback
that covers transactions committed late), deletes their interactions and rebuilds them from all of
their sessions, with the normalized score over the player's whole history. Rebuilding whole players
keeps it simple and exactly idempotent: a rerun, a late session or a corrected one all end in the
state a full rebuild would give. The first run (no watermark) rebuilds everyone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from recsys.settings import Scoring

log = logging.getLogger(__name__)

JOB = "consolidate"
EARLIEST_DAY = date(2000, 1, 1)
"""Sessions starting before this day, or after tomorrow, are left out of the interactions (and
no partition is created for them): validation refuses such times, but a row that slipped past it
(an old import, a hand-written INSERT) must not make consolidation create thousands of partitions
or move the training window into the future (issue 10)."""
MAX_FUTURE_DAYS = 1
# pg_advisory_xact_lock key: two consolidations never interleave.
LOCK_KEY = 0x5EC5_0001


@dataclass(frozen=True)
class ConsolidationResult:
    players: int
    interactions: int
    first_day: date | None
    last_day: date | None
    full: bool
    watermark: datetime
    seconds: float
    skipped_sessions: int = 0  # sessions whose start lies outside [EARLIEST_DAY, tomorrow]


def consolidate(
    engine: sa.Engine, formula: Scoring, *, lookback_seconds: int | None = None, full: bool = False
) -> ConsolidationResult:
    """Bring ``interactions`` up to date with ``play_sessions`` in one transaction.

    ``lookback_seconds`` defaults to the formula's (``RECSYS_CONSOLIDATE_LOOKBACK_SECONDS``)."""
    lookback_seconds = formula.lookback_seconds if lookback_seconds is None else lookback_seconds
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        watermark = conn.execute(
            sa.text("SELECT watermark FROM job_watermarks WHERE job = :job"), {"job": JOB}
        ).scalar_one_or_none()
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        full = full or watermark is None

        if full:
            players_filter = ""
            conn.execute(sa.text("TRUNCATE interactions"))
        else:
            conn.execute(
                sa.text(
                    "CREATE TEMP TABLE changed_players ON COMMIT DROP AS "
                    "SELECT DISTINCT player_key FROM play_sessions "
                    "WHERE updated_at > :since"
                ),
                {"since": watermark - timedelta(seconds=lookback_seconds)},
            )
            conn.execute(sa.text("ANALYZE changed_players"))
            conn.execute(
                sa.text("DELETE FROM interactions i USING changed_players c WHERE i.player_key = c.player_key")
            )
            players_filter = "JOIN changed_players c ON c.player_key = s.player_key"

        bounds = {"earliest": EARLIEST_DAY, "latest": now.date() + timedelta(days=MAX_FUTURE_DAYS + 1)}
        first_day, last_day, skipped = conn.execute(
            sa.text(
                "SELECT min(d) FILTER (WHERE d >= :earliest AND d < :latest), "
                "max(d) FILTER (WHERE d >= :earliest AND d < :latest), "
                "count(*) FILTER (WHERE NOT (d >= :earliest AND d < :latest)) "
                f"FROM (SELECT (s.started_at AT TIME ZONE 'UTC')::date AS d FROM play_sessions s {players_filter}) x"
            ),
            bounds,
        ).one()
        if skipped:
            log.warning(
                "consolidation leaves out %d sessions starting before %s or after %s (bad event times)",
                skipped, bounds["earliest"], bounds["latest"] - timedelta(days=1),
            )
        if first_day is not None:
            ensure_partitions(conn, first_day, last_day)
        written = conn.execute(
            sa.text(_REBUILD.format(players_filter=players_filter)), {**_params(formula), **bounds}
        ).rowcount
        count_players = "count(DISTINCT player_key) FROM interactions" if full else "count(*) FROM changed_players"
        players = conn.execute(sa.text(f"SELECT {count_players}")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO job_watermarks (job, watermark, updated_at) VALUES (:job, :now, now()) "
                "ON CONFLICT (job) DO UPDATE SET watermark = excluded.watermark, updated_at = now()"
            ),
            {"job": JOB, "now": now},
        )
    return ConsolidationResult(
        players=players,
        interactions=written,
        first_day=first_day,
        last_day=last_day,
        full=full,
        watermark=now,
        seconds=time.perf_counter() - started,
        skipped_sessions=skipped,
    )


def ensure_partitions(conn: sa.Connection, first_day: date, last_day: date) -> list[str]:
    """Create the monthly partitions of ``interactions`` covering [first_day, last_day]."""
    created = []
    month = date(first_day.year, first_day.month, 1)
    while month <= last_day:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        name = f"interactions_{month:%Y_%m}"
        conn.execute(
            sa.text(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF interactions "
                f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
            )
        )
        created.append(name)
        month = following
    return created


def _params(formula: Scoring) -> dict[str, float]:
    return {
        "time_weight": formula.time_weight,
        "spins_weight": formula.spins_weight,
        "stake_weight": formula.stake_weight,
        "bonus_weight": formula.bonus_weight,
    }


# The formula of recsys.scoring, in SQL. The window max runs over all of a player's rows because
# every changed player is rebuilt whole.
_REBUILD = """
INSERT INTO interactions (player_key, slot_key, day, sessions, bonus_sessions, seconds, spins,
                          total_bet, total_win, score, normalized_score)
SELECT player_key, slot_key, day, sessions, bonus_sessions, seconds, spins, total_bet, total_win, score,
       CASE WHEN max(score) OVER (PARTITION BY player_key) > 0
            THEN least(1.0, score / max(score) OVER (PARTITION BY player_key)) ELSE 0 END
FROM (
    SELECT s.player_key, s.slot_key, (s.started_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS sessions,
           count(*) FILTER (WHERE s.bonus) AS bonus_sessions,
           sum(s.seconds) AS seconds,
           sum(s.spins) AS spins,
           sum(s.total_bet) AS total_bet,
           sum(s.total_win) AS total_win,
           :time_weight * ln(1 + sum(w.w * s.seconds) / 60.0)
             + :spins_weight * ln(1 + sum(w.w * s.spins))
             + :stake_weight * ln(1 + sum(w.w * s.total_bet::float8)) AS score
    FROM play_sessions s {players_filter}
    CROSS JOIN LATERAL (SELECT CASE WHEN s.bonus THEN CAST(:bonus_weight AS float8) ELSE 1.0 END AS w) w
    WHERE (s.started_at AT TIME ZONE 'UTC')::date >= :earliest AND (s.started_at AT TIME ZONE 'UTC')::date < :latest
    GROUP BY 1, 2, 3
) per_day
"""
