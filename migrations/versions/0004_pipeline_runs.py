"""pipeline_runs: one row per daily pipeline run

Status, per-stage timings and row counts, what the run started from (for "nothing new since the
last run"), the version it produced, its error and its report (docs/pipeline.md).

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYST_ROLE = "recsys_analyst"


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("run_day", sa.Date(), nullable=False, comment="UTC day the run started"),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column(
            "stage", sa.String(length=32), nullable=True,
            comment="stage running now, or the last one entered (the failing one)",
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "stages", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
            nullable=False, comment="per stage: seconds and row counts",
        ),
        sa.Column(
            "inputs", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"),
            nullable=False,
            comment="what the run started from: sessions and their last update, end day, settings digest",
        ),
        sa.Column("version_id", sa.Integer(), nullable=True, comment="model version the run produced"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report_path", sa.Text(), nullable=True, comment="HTML run report"),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'refused', 'skipped', 'failed')", name=op.f("ck_pipeline_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_runs")),
    )
    op.create_index(
        "uq_pipeline_runs_one_running", "pipeline_runs", ["status"], unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )
    # Analysts read the run history too (the role comes from 0003).
    op.execute(f"GRANT SELECT ON pipeline_runs TO {ANALYST_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE ALL ON pipeline_runs FROM {ANALYST_ROLE}")
    op.drop_index("uq_pipeline_runs_one_running", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
