"""catalogue changes NOTIFY the API

Every statement that changes ``slots`` (an HTTP PUT, a file import, an operator's SQL) sends
``NOTIFY recsys_catalogue`` on commit, so every API replica reloads its in-memory catalogue at once
and a disabled slot leaves the similar-slot lists within milliseconds (docs/api.md). One
notification per statement, not per row: a bulk import costs one reload.

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION recsys_notify_catalogue() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('recsys_catalogue', TG_OP);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER slots_notify_catalogue AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON slots "
        "FOR EACH STATEMENT EXECUTE FUNCTION recsys_notify_catalogue()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS slots_notify_catalogue ON slots")
    op.execute("DROP FUNCTION IF EXISTS recsys_notify_catalogue()")
