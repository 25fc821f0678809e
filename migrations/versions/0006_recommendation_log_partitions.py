"""recommendations and recommendation_items partitioned by month of created_at, for retention

Every served list adds ~2 KB to these tables (issue 10). Partitioned by month, old history leaves
by dropping a partition (``recsys.db.retention``, the pipeline's ``retention`` stage) instead of a
DELETE that bloats the tables. A partitioned table's unique keys must hold the partition key, so:

- ``recommendations``' key is ``(id, created_at)``; ``recommendation_items`` gets the list's
  ``created_at`` and the key ``(recommendation_id, rank, created_at)``;
- the foreign keys *to* them (items -> lists, feedback -> items, play_sessions -> lists) go: the
  writers check them (``recsys.db.feedback`` refuses feedback on an unknown item, attribution
  only names logged lists) and retention removes a list's feedback with it.

Rows move into monthly partitions from the oldest month held through next month; a ``_default``
partition takes anything else. Views are recreated unchanged; the analyst role keeps SELECT.

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("v_recommendation_items", "v_item_outcomes", "v_recommendation_funnel_daily", "v_slot_performance",
         "v_exploration_outcomes")
ANALYST_ROLE = "recsys_analyst"
TABLES = ("recommendations", "recommendation_items")


def _views() -> list[tuple[str, str]]:
    rows = op.get_bind().execute(
        sa.text("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' AND viewname = ANY(:v)"),
        {"v": list(VIEWS)},
    ).all()
    found = dict(rows)
    return [(name, found[name]) for name in VIEWS if name in found]


def _months(first: date, last: date) -> list[date]:
    months, month = [], date(first.year, first.month, 1)
    while month <= last:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def _recommendations_table(partitioned: bool) -> None:
    key = ["id", "created_at"] if partitioned else ["id"]
    op.create_table(
        "recommendations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("player_key", sa.BigInteger(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("context_slot_key", sa.Integer(), nullable=True),
        sa.Column("session_key", sa.BigInteger(), nullable=True,
                  comment="play session that fired a session_threshold trigger"),
        sa.Column("market", sa.String(length=16), nullable=True),
        sa.Column("suppressed_reason", sa.String(length=32), nullable=True, comment="NULL when the gate allowed it"),
        sa.Column("action", sa.String(length=32), nullable=True, comment="e.g. reality_check instead of games"),
        sa.Column("filters", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
                  nullable=False,
                  comment="what produced the list: candidate source, exclusions, exploration share, index"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "suppressed_reason IS NULL OR suppressed_reason IN ('self_excluded', 'cooling_off', 'no_consent', "
            "'risk_flag', 'session_limit', 'night_hours')",
            name="ck_recommendations_suppressed_reason",
        ),
        sa.CheckConstraint("trigger IN ('api', 'session_threshold')", name="ck_recommendations_trigger"),
        sa.ForeignKeyConstraint(["context_slot_key"], ["slots.id"], name="fk_recommendations_context_slot_key_slots"),
        sa.ForeignKeyConstraint(["player_key"], ["players.id"], name="fk_recommendations_player_key_players"),
        sa.ForeignKeyConstraint(["version_id"], ["model_versions.id"],
                                name="fk_recommendations_version_id_model_versions"),
        sa.PrimaryKeyConstraint(*key, name="pk_recommendations"),
        **({"postgresql_partition_by": "RANGE (created_at)"} if partitioned else {}),
    )
    op.create_index("ix_recommendations_created_at", "recommendations", ["created_at"])
    op.create_index("ix_recommendations_player_key_created_at", "recommendations", ["player_key", "created_at"])


def _items_table(partitioned: bool) -> None:
    created = [sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False,
                         comment="the list's created_at (the partition key)")] if partitioned else []
    tail = ["created_at"] if partitioned else []
    foreign = [] if partitioned else [
        sa.ForeignKeyConstraint(["recommendation_id"], ["recommendations.id"],
                                name="fk_recommendation_items_recommendation_id_recommendations", ondelete="CASCADE")
    ]
    op.create_table(
        "recommendation_items",
        sa.Column("recommendation_id", sa.UUID(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False, comment="1-based"),
        sa.Column("slot_key", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("explored", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        *created,
        sa.CheckConstraint("reason IN ('similar', 'personal', 'explore', 'popular', 'cold_start')",
                           name="ck_recommendation_items_reason"),
        *foreign,
        sa.ForeignKeyConstraint(["slot_key"], ["slots.id"], name="fk_recommendation_items_slot_key_slots"),
        sa.PrimaryKeyConstraint("recommendation_id", "rank", *tail, name="pk_recommendation_items"),
        sa.UniqueConstraint("recommendation_id", "slot_key", *tail,
                            name=f"uq_recommendation_items_recommendation_id_slot_key{'_created_at' if tail else ''}"),
        **({"postgresql_partition_by": "RANGE (created_at)"} if partitioned else {}),
    )
    op.create_index("ix_recommendation_items_slot_key", "recommendation_items", ["slot_key"])


def _swap(partitioned: bool) -> None:
    views = _views()
    for name, _ in reversed(views):
        op.execute(f"DROP VIEW {name}")
    for table in TABLES:
        op.execute(f"CREATE TABLE {table}_copy AS TABLE {table}")
    op.execute("DROP TABLE recommendation_items, recommendations CASCADE")  # with the foreign keys to them
    _recommendations_table(partitioned)
    _items_table(partitioned)
    bind = op.get_bind()
    if partitioned:
        first = bind.execute(sa.text("SELECT min(created_at) FROM recommendations_copy")).scalar_one()
        today = datetime.now(UTC).date()
        oldest = date(today.year - 3, today.month, 1)  # older rows (if any) go to the default partition
        start = max(first.astimezone(UTC).date(), oldest) if first else today
        following = date(today.year + 1, 1, 1) if today.month == 12 else date(today.year, today.month + 1, 1)
        months = _months(start, following)
        for month in months:
            end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
            for table in TABLES:
                op.execute(f"CREATE TABLE {table}_{month:%Y_%m} PARTITION OF {table} "
                           f"FOR VALUES FROM ('{month.isoformat()}') TO ('{end.isoformat()}')")
        for table in TABLES:
            op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        op.execute("INSERT INTO recommendations SELECT * FROM recommendations_copy")
        op.execute(
            "INSERT INTO recommendation_items (recommendation_id, rank, slot_key, score, reason, explored, created_at) "
            "SELECT i.recommendation_id, i.rank, i.slot_key, i.score, i.reason, i.explored, r.created_at "
            "FROM recommendation_items_copy i JOIN recommendations_copy r ON r.id = i.recommendation_id"
        )
    else:
        op.execute("INSERT INTO recommendations SELECT * FROM recommendations_copy")
        op.execute(
            "INSERT INTO recommendation_items (recommendation_id, rank, slot_key, score, reason, explored) "
            "SELECT recommendation_id, rank, slot_key, score, reason, explored FROM recommendation_items_copy "
            "ON CONFLICT DO NOTHING"
        )
        op.execute("DELETE FROM feedback f WHERE NOT EXISTS (SELECT 1 FROM recommendation_items i "
                   "WHERE i.recommendation_id = f.recommendation_id AND i.slot_key = f.slot_key)")
        op.execute("UPDATE play_sessions s SET recommendation_id = NULL WHERE recommendation_id IS NOT NULL "
                   "AND NOT EXISTS (SELECT 1 FROM recommendations r WHERE r.id = s.recommendation_id)")
        op.create_foreign_key("fk_feedback_item", "feedback", "recommendation_items",
                              ["recommendation_id", "slot_key"], ["recommendation_id", "slot_key"], ondelete="CASCADE")
        op.create_foreign_key("fk_play_sessions_recommendation_id_recommendations", "play_sessions",
                              "recommendations", ["recommendation_id"], ["id"])
    for table in TABLES:
        op.execute(f"DROP TABLE {table}_copy")
    for name, definition in views:
        op.execute(f"CREATE VIEW {name} AS {definition}")
    grants = ", ".join([*TABLES, *(name for name, _ in views)])
    op.execute(f"GRANT SELECT ON {grants} TO {ANALYST_ROLE}")


def upgrade() -> None:
    _swap(partitioned=True)


def downgrade() -> None:
    _swap(partitioned=False)
