"""A/B experiments between model versions; the served-list log's experiment and arm; dashboard sessions

An experiment splits the players who pass the protection gate between arms, each a model version
(or popularity) with a weight (docs/experiments.md). Every served list records the experiment and
arm that made it next to its model version. ``v_experiment_items`` / ``v_experiment_outcomes`` give
analysts the per-arm outcomes `recsys experiment report` computes its intervals from.

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYST_ROLE = "recsys_analyst"
NAME_SHAPE = "name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"
VIEWS = {
    # One row per item of a list an experiment made. ``played``: a play session was attributed to
    # the list on that slot; ``seconds_after_click``: their play time, for clicked items.
    "v_experiment_items": """
        SELECT r.experiment_id, r.arm, r.version_id AS model_version, r.player_key, i.recommendation_id,
               i.slot_key, i.rank, r.created_at,
               coalesce(f.impressed, false) AS impressed, coalesce(f.clicked, false) AS clicked,
               coalesce(f.dismissed, false) AS dismissed, coalesce(ps.sessions, 0) > 0 AS played,
               CASE WHEN coalesce(f.clicked, false) THEN coalesce(ps.seconds, 0) END AS seconds_after_click
        FROM recommendations r
        JOIN recommendation_items i ON i.recommendation_id = r.id AND i.created_at = r.created_at
        LEFT JOIN LATERAL (
            SELECT bool_or(fb.action = 'impression') AS impressed, bool_or(fb.action = 'click') AS clicked,
                   bool_or(fb.action = 'dismiss') AS dismissed
            FROM feedback fb WHERE fb.recommendation_id = i.recommendation_id AND fb.slot_key = i.slot_key
        ) f ON true
        LEFT JOIN LATERAL (
            SELECT count(*) AS sessions, sum(s.seconds) AS seconds FROM play_sessions s
            WHERE s.recommendation_id = i.recommendation_id AND s.slot_key = i.slot_key
        ) ps ON true
        WHERE r.experiment_id IS NOT NULL
    """,
    "v_experiment_outcomes": """
        SELECT e.id AS experiment_id, e.name AS experiment, e.status, a.position, a.name AS arm,
               a.version_id AS model_version, a.weight,
               coalesce(l.players, 0) AS players, coalesce(l.lists, 0) AS lists,
               coalesce(o.items, 0) AS items, coalesce(o.impressions, 0) AS impressions,
               coalesce(o.clicks, 0) AS clicks, coalesce(o.plays, 0) AS plays,
               coalesce(o.dismissals, 0) AS dismissals,
               coalesce(o.seconds_after_click, 0) AS seconds_after_click,
               o.clicks::float8 / nullif(o.impressions, 0) AS click_rate,
               o.plays::float8 / nullif(o.impressions, 0) AS play_rate,
               o.dismissals::float8 / nullif(o.impressions, 0) AS dismiss_rate,
               o.seconds_after_click / 60.0 / nullif(o.clicks, 0) AS minutes_per_click
        FROM experiments e
        JOIN experiment_arms a ON a.experiment_id = e.id
        LEFT JOIN (
            SELECT experiment_id, arm, count(DISTINCT player_key) AS players, count(*) AS lists
            FROM recommendations WHERE experiment_id IS NOT NULL GROUP BY experiment_id, arm
        ) l ON l.experiment_id = e.id AND l.arm = a.name
        LEFT JOIN (
            SELECT experiment_id, arm, count(*) AS items, count(*) FILTER (WHERE impressed) AS impressions,
                   count(*) FILTER (WHERE clicked) AS clicks, count(*) FILTER (WHERE played) AS plays,
                   count(*) FILTER (WHERE dismissed) AS dismissals,
                   sum(seconds_after_click) AS seconds_after_click
            FROM v_experiment_items GROUP BY experiment_id, arm
        ) o ON o.experiment_id = e.id AND o.arm = a.name
    """,
}


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("promoted_arm", sa.String(length=64), nullable=True,
                  comment="arm whose version was activated when it stopped"),
        sa.CheckConstraint("status IN ('running', 'stopped')", name=op.f("ck_experiments_status")),
        sa.CheckConstraint(NAME_SHAPE, name=op.f("ck_experiments_name_shape")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
        sa.UniqueConstraint("name", name=op.f("uq_experiments_name")),
    )
    op.create_index("uq_experiments_one_running", "experiments", ["status"], unique=True,
                    postgresql_where=sa.text("status = 'running'"))
    op.create_table(
        "experiment_arms",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False, comment="0 = the control arm"),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True,
                  comment="model version the arm ranks with; NULL = popularity"),
        sa.Column("weight", sa.Integer(), nullable=False, comment="share of the experiment's players, relative"),
        sa.CheckConstraint("weight > 0", name=op.f("ck_experiment_arms_weight_positive")),
        sa.CheckConstraint(NAME_SHAPE, name=op.f("ck_experiment_arms_name_shape")),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE",
                                name=op.f("fk_experiment_arms_experiment_id_experiments")),
        sa.PrimaryKeyConstraint("experiment_id", "position", name=op.f("pk_experiment_arms")),
        sa.UniqueConstraint("experiment_id", "name", name=op.f("uq_experiment_arms_experiment_id_name")),
    )
    op.create_table(
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False, comment="SHA-256 hex of the cookie's token"),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False,
                  comment="hidden field every admin form carries"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE",
                                name=op.f("fk_dashboard_sessions_api_key_id_api_keys")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_dashboard_sessions")),
    )
    op.create_index(op.f("ix_dashboard_sessions_expires_at"), "dashboard_sessions", ["expires_at"])
    # Added to the partitioned parent, the columns reach every partition.
    op.add_column("recommendations", sa.Column("experiment_id", sa.Integer(), nullable=True,
                                               comment="experiment the player was split by (recsys.experiments)"))
    op.add_column("recommendations", sa.Column("arm", sa.String(length=64), nullable=True,
                                               comment="the experiment's arm that made the list"))
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    op.execute(f"GRANT SELECT ON experiments, experiment_arms, {', '.join(VIEWS)} TO {ANALYST_ROLE}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_column("recommendations", "arm")
    op.drop_column("recommendations", "experiment_id")
    op.drop_index(op.f("ix_dashboard_sessions_expires_at"), table_name="dashboard_sessions")
    op.drop_table("dashboard_sessions")
    op.drop_table("experiment_arms")
    op.drop_index("uq_experiments_one_running", table_name="experiments",
                  postgresql_where=sa.text("status = 'running'"))
    op.drop_table("experiments")
