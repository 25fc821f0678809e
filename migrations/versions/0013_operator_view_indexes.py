"""indexes the operator's views read through at volume: feedback by arrival, play by list, items by time

The dashboard's funnel (``recsys.db.dashboard.funnel``) took 97.6 s with 373k list items in the
last 24 hours (issue 22): it probed ``play_sessions`` per item without an index on the list a
session is attributed to. It now starts from the feedback received in the window (a list's
feedback always arrives after the list) and reaches items and play through indexes:

- ``feedback (received_at)``: the feedback of the window, a tenth of its items;
- ``play_sessions (recommendation_id, slot_key)``, only attributed sessions: play of an item;
- ``recommendation_items (created_at)``, on the partitioned parent (each month gets its own):
  the items served in the window, counted from the index alone.

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_index("ix_play_sessions_recommendation_id_slot_key", "play_sessions", ["recommendation_id", "slot_key"],
                    postgresql_where=sa.text("recommendation_id IS NOT NULL"))
    op.create_index("ix_recommendation_items_created_at", "recommendation_items", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_recommendation_items_created_at", table_name="recommendation_items")
    op.drop_index("ix_play_sessions_recommendation_id_slot_key", table_name="play_sessions")
    op.drop_index("ix_feedback_received_at", table_name="feedback")
