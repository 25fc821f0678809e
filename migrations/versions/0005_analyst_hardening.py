"""the analyst role: a statement timeout, no TEMP tables, no pg_notify

recsys_analyst could create TEMP tables, call pg_notify() on the API's channels and run statements
without end (issue 10). TEMP and pg_notify() are granted to PUBLIC by default, so they are revoked
from PUBLIC and granted back to the role running this migration (the one the API and the worker
use). Revoking pg_notify() needs a superuser or the function's owner; without one the migration
says so with a warning and goes on (docs/analytics.md).

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "recsys_analyst"
STATEMENT_TIMEOUT = "60s"


def upgrade() -> None:
    op.execute(f"ALTER ROLE {ROLE} SET statement_timeout = '{STATEMENT_TIMEOUT}'")
    op.execute(
        "DO $$ BEGIN "
        "EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()); "
        "EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user); "
        "END $$"
    )
    op.execute(
        "DO $$ BEGIN "
        "REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC; "
        "EXECUTE format('GRANT EXECUTE ON FUNCTION pg_notify(text, text) TO %I', current_user); "
        "EXCEPTION WHEN insufficient_privilege THEN "
        "RAISE WARNING 'pg_notify() stays executable by every role: revoking it needs a superuser'; "
        "END $$"
    )


def downgrade() -> None:
    op.execute(
        "DO $$ BEGIN GRANT EXECUTE ON FUNCTION pg_notify(text, text) TO PUBLIC; "
        "EXCEPTION WHEN insufficient_privilege THEN NULL; END $$"
    )
    op.execute("DO $$ BEGIN EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO PUBLIC', current_database()); END $$")
    op.execute(f"ALTER ROLE {ROLE} RESET statement_timeout")
