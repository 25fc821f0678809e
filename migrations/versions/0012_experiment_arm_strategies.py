"""Experiment arms name their strategy: a model version, ``popularity`` or ``itemknn``.

``experiment_arms.strategy`` is NULL for an arm that ranks with a model version and names the
baseline otherwise; the arms stored before (``version_id`` NULL: popularity) are filled in. The check
keeps the two columns consistent: exactly one of a version and a strategy.

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STRATEGY_CHECK = "(version_id IS NULL) = (strategy IS NOT NULL) AND (strategy IS NULL OR strategy IN ('popularity', 'itemknn'))"


def upgrade() -> None:
    op.add_column("experiment_arms", sa.Column(
        "strategy", sa.String(16), comment="baseline the arm ranks with (popularity, itemknn); NULL = its model version"))
    op.execute("UPDATE experiment_arms SET strategy = 'popularity' WHERE version_id IS NULL")
    op.create_check_constraint(op.f("ck_experiment_arms_strategy"), "experiment_arms", STRATEGY_CHECK)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_experiment_arms_strategy"), "experiment_arms", type_="check")
    op.execute("DELETE FROM experiment_arms WHERE strategy = 'itemknn'")  # no way to store it before
    op.drop_column("experiment_arms", "strategy")
