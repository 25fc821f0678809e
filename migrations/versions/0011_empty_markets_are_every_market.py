"""A slot's empty list of markets is every market: stored '{}' becomes NULL

docs/import-format.md says an empty ``markets`` means every market, and NULL is how the schema says
it (``slots.markets``). Before issue 22 the API and the importer stored ``[]`` as ``'{}'``, which no
market lists, so the slot was served nowhere; they now store NULL. This fixes the rows already
stored. Data only: no column, index or constraint changes.

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE slots SET markets = NULL WHERE cardinality(markets) = 0")


def downgrade() -> None:
    """Nothing to undo: NULL and '{}' were meant to say the same, and NULL is what the code writes."""
