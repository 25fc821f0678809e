"""Retention of the recommendation logs: monthly partitions made ahead, old ones dropped whole.

``recommendations`` (each list with its items) is partitioned by month of ``created_at``
(migrations 0006, 0015): ``recommendations_YYYY_MM``, and ``recommendations_default`` for anything
without its month's partition. The pipeline's ``retention`` stage (:func:`apply_retention`) makes
the partitions of this month and the next ones, and drops the months that ended more than
``keep_days`` ago, with the feedback on their lists (a play session attributed to one of them
keeps the session, not the link). Lists older than that in the default partition are deleted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

log = logging.getLogger(__name__)

MONTHS_AHEAD = 2
_MONTH = re.compile(r"recommendations_(\d{4})_(\d{2})")


@dataclass(frozen=True)
class RetentionResult:
    created: list[str]
    dropped_months: list[str]  # YYYY_MM
    deleted_default_rows: int
    cutoff: datetime | None


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def ensure_partitions(conn: sa.Connection, today: date, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """Create the monthly partitions from ``today``'s month through ``months_ahead`` later. A month
    whose rows already sit in the default partition is left there (its partition cannot be made)."""
    created, month = [], date(today.year, today.month, 1)
    for _ in range(months_ahead + 1):
        following = _next_month(month)
        name = f"recommendations_{month:%Y_%m}"
        exists = conn.execute(sa.text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one()
        if not exists:
            try:
                with conn.begin_nested():
                    conn.execute(sa.text(
                        f"CREATE TABLE {name} PARTITION OF recommendations "
                        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
                    ))
                created.append(name)
            except sa.exc.DBAPIError as exc:  # the default partition holds rows of that month
                log.warning("partition %s not created (%s)", name, str(exc.orig).strip().splitlines()[0])
        month = following
    return created


def drop_old(conn: sa.Connection, cutoff: datetime) -> tuple[list[str], int]:
    """Drop the monthly partitions that end at or before ``cutoff`` and delete older rows of the
    default partitions; feedback on those lists goes with them. Returns (months dropped, rows deleted)."""
    months = []
    for name in conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'recommendations'::regclass ORDER BY 1"
    )).scalars():
        match = _MONTH.fullmatch(name)
        if match and datetime(*_next_month(date(int(match[1]), int(match[2]), 1)).timetuple()[:3],
                              tzinfo=cutoff.tzinfo) <= cutoff:
            months.append(f"{match[1]}_{match[2]}")
    for month in months:
        conn.execute(sa.text(
            f"DELETE FROM feedback f USING recommendations_{month} r WHERE f.recommendation_id = r.id"
        ))
        conn.execute(sa.text(f"UPDATE play_sessions s SET recommendation_id = NULL FROM recommendations_{month} r "
                             "WHERE s.recommendation_id = r.id"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS recommendations_{month}"))
    old = {"cutoff": cutoff}
    conn.execute(sa.text("DELETE FROM feedback f USING recommendations_default r "
                         "WHERE f.recommendation_id = r.id AND r.created_at < :cutoff"), old)
    conn.execute(sa.text("UPDATE play_sessions s SET recommendation_id = NULL FROM recommendations_default r "
                         "WHERE s.recommendation_id = r.id AND r.created_at < :cutoff"), old)
    deleted = conn.execute(sa.text("DELETE FROM recommendations_default WHERE created_at < :cutoff"), old).rowcount
    return months, deleted


def apply_retention(engine: sa.Engine, keep_days: int) -> RetentionResult:
    """Partitions ahead, and (``keep_days`` > 0) history older than ``keep_days`` dropped; one transaction."""
    with engine.begin() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
        created = ensure_partitions(conn, now.date())
        if keep_days <= 0:
            return RetentionResult(created, [], 0, None)
        cutoff = now - timedelta(days=keep_days)
        months, deleted = drop_old(conn, cutoff)
    if months or deleted:
        log.info("retention: dropped months %s and %d older rows (kept %d days)", months, deleted, keep_days)
    return RetentionResult(created, months, deleted, cutoff)
