"""analyst views and the read-only recsys_analyst role

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Documented in docs/analytics.md. Views only read the history tables, so they need no upkeep.
VIEWS = {
    "v_recommendation_items": """
        SELECT r.id AS recommendation_id, r.created_at, (r.created_at AT TIME ZONE 'UTC')::date AS day,
               p.player_id, r.version_id AS model_version, r.trigger, cs.slot_id AS context_slot_id, r.market,
               r.suppressed_reason, r.action, i.rank, s.slot_id, s.provider, s.theme, i.score, i.reason, i.explored
        FROM recommendations r
        JOIN players p ON p.id = r.player_key
        LEFT JOIN slots cs ON cs.id = r.context_slot_key
        LEFT JOIN recommendation_items i ON i.recommendation_id = r.id
        LEFT JOIN slots s ON s.id = i.slot_key
    """,
    "v_item_outcomes": """
        SELECT i.recommendation_id, i.slot_key, i.rank, i.reason, i.explored, r.version_id AS model_version,
               r.trigger, (r.created_at AT TIME ZONE 'UTC')::date AS day,
               EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                       AND f.slot_key = i.slot_key AND f.action = 'impression') AS impressed,
               EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                       AND f.slot_key = i.slot_key AND f.action = 'click') AS clicked,
               EXISTS (SELECT 1 FROM feedback f WHERE f.recommendation_id = i.recommendation_id
                       AND f.slot_key = i.slot_key AND f.action = 'dismiss') AS dismissed,
               ps.sessions AS attributed_sessions, ps.seconds AS attributed_seconds
        FROM recommendation_items i
        JOIN recommendations r ON r.id = i.recommendation_id
        LEFT JOIN LATERAL (
            SELECT count(*) AS sessions, coalesce(sum(s.seconds), 0) AS seconds FROM play_sessions s
            WHERE s.recommendation_id = i.recommendation_id AND s.slot_key = i.slot_key
        ) ps ON true
    """,
    "v_recommendation_funnel_daily": """
        SELECT day, model_version, trigger, reason,
               count(*) AS served,
               count(*) FILTER (WHERE impressed) AS impressions,
               count(*) FILTER (WHERE clicked) AS clicks,
               count(*) FILTER (WHERE attributed_sessions > 0) AS plays,
               coalesce(sum(attributed_seconds), 0) AS play_seconds_after_click,
               count(*) FILTER (WHERE dismissed) AS dismissals
        FROM v_item_outcomes
        GROUP BY day, model_version, trigger, reason
    """,
    "v_slot_performance": """
        SELECT s.slot_id, s.name, s.provider, s.theme, s.volatility, s.active,
               coalesce(o.served, 0) AS served, coalesce(o.impressions, 0) AS impressions,
               coalesce(o.clicks, 0) AS clicks, coalesce(o.plays, 0) AS plays,
               coalesce(o.clicks, 0)::float8 / nullif(o.impressions, 0) AS click_through_rate,
               coalesce(i.players, 0) AS players, coalesce(i.seconds, 0) AS seconds_played
        FROM slots s
        LEFT JOIN (
            SELECT slot_key, count(*) AS served, count(*) FILTER (WHERE impressed) AS impressions,
                   count(*) FILTER (WHERE clicked) AS clicks,
                   count(*) FILTER (WHERE attributed_sessions > 0) AS plays
            FROM v_item_outcomes GROUP BY slot_key
        ) o ON o.slot_key = s.id
        LEFT JOIN (
            SELECT slot_key, count(DISTINCT player_key) AS players, sum(seconds) AS seconds
            FROM interactions GROUP BY slot_key
        ) i ON i.slot_key = s.id
    """,
    "v_exploration_outcomes": """
        SELECT day, model_version, explored,
               count(*) AS served,
               count(*) FILTER (WHERE impressed) AS impressions,
               count(*) FILTER (WHERE clicked) AS clicks,
               count(*) FILTER (WHERE attributed_sessions > 0) AS plays,
               count(*) FILTER (WHERE clicked)::float8 / nullif(count(*) FILTER (WHERE impressed), 0)
                   AS click_through_rate
        FROM v_item_outcomes
        GROUP BY day, model_version, explored
    """,
}
HISTORY_TABLES = (
    "players", "slots", "play_sessions", "play_events", "interactions", "model_versions", "recommendations",
    "recommendation_items", "feedback",
)
ROLE = "recsys_analyst"


def upgrade() -> None:
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    # Roles belong to the cluster, not the database: create it once, grant per database.
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') "
        f"THEN CREATE ROLE {ROLE} NOLOGIN; END IF; END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
    op.execute(f"GRANT SELECT ON {', '.join(HISTORY_TABLES + tuple(VIEWS))} TO {ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON {', '.join(HISTORY_TABLES + tuple(VIEWS))} FROM {ROLE}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {ROLE}")
    # Another database of the cluster may still grant to the role: then it stays.
    op.execute(
        f"DO $$ BEGIN DROP ROLE IF EXISTS {ROLE}; "
        f"EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
    )
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
