"""experiments sized for a minimum effect; the log read by experiment and arm

``experiments.min_effect``: the relative lift in clicks per impression an experiment's sample is
sized for (80 % power at 95 %); its report gives no verdict before that sample is reached
(docs/experiments.md, "Peeking").

An experiment's results are per-player sums of its own lists (``recsys.db.experiments.outcomes``).
``ix_recommendations_experiment`` (partial: only lists an experiment made) finds those lists
without reading the rest of the log; their play is found through migration 0013's
``(recommendation_id, slot_key)`` index of attributed sessions, and their feedback through its
``(recommendation_id, slot_key, action)`` unique index. ``GET /v1/experiments`` took 5.3 s for 10
experiments at 373k items a day (issue 22) reading every list of every experiment per experiment.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column(
        "min_effect", sa.Float(), server_default="0.1", nullable=False,
        comment="relative lift in clicks per impression the sample is sized for (80 % power)"))
    op.create_check_constraint("min_effect_range", "experiments", "min_effect > 0 AND min_effect <= 10")
    # On the partitioned parent: every partition gets it, and retention's new partitions too.
    op.create_index("ix_recommendations_experiment", "recommendations", ["experiment_id", "arm", "player_key"],
                    unique=False, postgresql_where=sa.text("experiment_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_recommendations_experiment", table_name="recommendations")
    op.drop_constraint("min_effect_range", "experiments", type_="check")
    op.drop_column("experiments", "min_effect")
