"""experiments' outcomes rolled up from the log per list and per player, refreshed incrementally, frozen

``GET /v1/experiments`` and the dashboard's experiments page took more than 120 s with 10^7
logged items and 20 experiments (issue 22): every read summed every experiment's lists, items,
feedback and play again. ``experiment_list_outcomes`` keeps each list's outcome,
``experiment_player_outcomes`` the per-player sums of an arm, and ``experiment_rollups`` where each
experiment's rollup stands (``recsys.db.experiment_rollups``, docs/experiments.md): a read folds
in only the lists whose items' feedback or sessions changed (or that are new) since the watermark,
and a stopped experiment's statistics are stored (``frozen``) a day after it stopped, after which
it is never read from the log again. All start empty: the first read of each experiment fills its
rollup from the log.

Revision ID: 0014
Revises: 0013
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYST_ROLE = "recsys_analyst"


def upgrade() -> None:
    op.create_table(
        "experiment_list_outcomes",
        sa.Column("recommendation_id", sa.UUID(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("player_key", sa.BigInteger(), nullable=False),
        sa.Column("suppressed", sa.Boolean(), nullable=False, comment="a list without games"),
        sa.Column("reality_check", sa.Boolean(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=False, comment="items with an impression"),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("plays", sa.Integer(), nullable=False, comment="items with a session attributed to the list"),
        sa.Column("dismissals", sa.Integer(), nullable=False),
        sa.Column("click_seconds", postgresql.ARRAY(sa.Float()), nullable=False,
                  comment="per clicked item, ascending: seconds of continuous play attributed to it (0 without)"),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_experiment_list_outcomes_experiment_id_experiments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("recommendation_id", name=op.f("pk_experiment_list_outcomes")),
    )
    op.create_index(op.f("ix_experiment_list_outcomes_experiment_id_arm_player_key"), "experiment_list_outcomes",
                    ["experiment_id", "arm", "player_key"])
    op.create_table(
        "experiment_player_outcomes",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("player_key", sa.BigInteger(), nullable=False),
        sa.Column("lists", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False, comment="lists without games"),
        sa.Column("reality_checks", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("impressions", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.Column("plays", sa.Integer(), nullable=False),
        sa.Column("dismissals", sa.Integer(), nullable=False),
        sa.Column("click_minutes", sa.Float(), nullable=False, comment="minutes of play attributed to clicked items"),
        sa.Column("long_clicks", sa.Integer(), nullable=False,
                  comment="clicked items whose play reached experiment_rollups.threshold_seconds"),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_experiment_player_outcomes_experiment_id_experiments"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", "arm", "player_key", name=op.f("pk_experiment_player_outcomes")),
    )
    op.create_table(
        "experiment_rollups",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True),
                  comment="lists created, feedback received and sessions updated from then on are read again; "
                          "NULL: never filled"),
        sa.Column("threshold_seconds", sa.Float(), comment="the session threshold long_clicks counts against"),
        sa.Column("medians", postgresql.JSONB(astext_type=sa.Text()),
                  comment="per arm: the median minutes after a click, as the rows stand"),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("frozen", postgresql.JSONB(astext_type=sa.Text()),
                  comment="per arm: players, totals, each metric's ratio and variance; NULL: live"),
        sa.Column("frozen_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"],
                                name=op.f("fk_experiment_rollups_experiment_id_experiments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", name=op.f("pk_experiment_rollups")),
    )
    op.execute(f"GRANT SELECT ON experiment_list_outcomes, experiment_player_outcomes, experiment_rollups "
               f"TO {ANALYST_ROLE}")


def downgrade() -> None:
    op.drop_table("experiment_rollups")
    op.drop_table("experiment_player_outcomes")
    op.drop_index(op.f("ix_experiment_list_outcomes_experiment_id_arm_player_key"),
                  table_name="experiment_list_outcomes")
    op.drop_table("experiment_list_outcomes")
