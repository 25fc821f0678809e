"""the analyst reads and nothing more: signed notifications, no advisory locks, no large objects

Issue 22 (failure 2): ``recsys_analyst`` could block the daily pipeline and every activation by
holding their advisory locks, announce anything on the API's channels with the SQL ``NOTIFY``
statement (0005 revoked only the function ``pg_notify()``; the statement needs no privilege and
cannot be revoked), and store large objects.

* **Notifications are signed.** ``recsys_notify(channel, payload)`` sends
  ``<us>.<hmac>.<payload>``: the statement's time in Unix microseconds and HMAC-SHA256 of
  ``<channel>.<sender's backend pid>.<us>.<payload>`` under a key in ``notify_keys``, which only the
  application's role reads. Listeners (``recsys.db.channels``) drop what does not verify (a replay
  from another backend does not: the pid differs), what is older than two minutes and what they
  have already heard. HMAC is written with the core ``sha256()`` over the key's inner and outer
  pads, stored ready-made, so no extension is needed; ``recsys_notify_key()`` makes the key from
  the server's strong random source when the table is empty. The catalogue
  trigger of 0002 signs the same way.
* **No advisory locks for the analyst.** The advisory-lock functions are granted to PUBLIC by
  default; they are revoked from PUBLIC and granted back to the role running this migration (the
  one the API, the worker and the pipeline use), as 0005 did for ``pg_notify()``. The analyst can
  take none at all, so neither the pipeline's lock (0x5EC50003) nor the activation's (0x5EC50004),
  nor consolidation's or training's. Keys derived from a secret would not do: ``pg_locks`` shows
  every held key to every role.
* **No large objects.** The functions that create or write them are revoked the same way.

Revoking a function of ``pg_catalog`` needs a superuser (or the owner); without one the migration
goes on and warns for each function the analyst can still run (docs/analytics.md).

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "recsys_analyst"
ADVISORY_LOCKS = tuple(
    f"{name}({args})"
    for name in (
        "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
        "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
        "pg_try_advisory_xact_lock_shared",
    )
    for args in ("bigint", "integer, integer")
)
LARGE_OBJECTS = (
    "lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)", "lo_import(text)", "lo_import(text, oid)",
    "lo_put(oid, bigint, bytea)", "lowrite(integer, bytea)", "lo_truncate(integer, integer)",
    "lo_truncate64(integer, bigint)", "lo_unlink(oid)",
)


def upgrade() -> None:
    op.create_table(
        "notify_keys",
        sa.Column("id", sa.SmallInteger, autoincrement=False, nullable=False),
        sa.Column("inner_pad", sa.LargeBinary, nullable=False),
        sa.Column("outer_pad", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_notify_keys_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_keys")),
        comment="HMAC key of the application's notifications, as SHA-256's inner and outer pads; one row, "
        "readable by the application's role only",
    )
    op.execute("REVOKE ALL ON notify_keys FROM PUBLIC")
    op.execute(
        """
        CREATE FUNCTION recsys_notify_key() RETURNS notify_keys LANGUAGE plpgsql AS $$
        DECLARE
            k notify_keys;
            raw bytea;
        BEGIN
            SELECT * INTO k FROM notify_keys WHERE id = 1;
            IF FOUND THEN
                RETURN k;
            END IF;
            -- 64 bytes from the server's strong random source (gen_random_uuid: 122 random bits each);
            -- an emptied table (TRUNCATE) gets a new key rather than silencing every announcement.
            raw := uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())
                || uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid());
            k := ROW(1, raw, raw, now());
            FOR i IN 0..63 LOOP
                k.inner_pad := set_byte(k.inner_pad, i, get_byte(raw, i) # 54);  -- 0x36, HMAC's ipad
                k.outer_pad := set_byte(k.outer_pad, i, get_byte(raw, i) # 92);  -- 0x5c, HMAC's opad
            END LOOP;
            INSERT INTO notify_keys VALUES (k.*) ON CONFLICT (id) DO NOTHING;
            SELECT * INTO STRICT k FROM notify_keys WHERE id = 1;
            RETURN k;
        END
        $$
        """
    )
    op.execute("REVOKE EXECUTE ON FUNCTION recsys_notify_key() FROM PUBLIC")
    op.execute("SELECT recsys_notify_key()")
    op.execute(
        """
        CREATE FUNCTION recsys_notify(channel text, payload text) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE
            k notify_keys;
            stamp text := floor(extract(epoch FROM statement_timestamp()) * 1000000)::bigint::text;
        BEGIN
            k := recsys_notify_key();
            PERFORM pg_notify(channel, stamp || '.' || encode(sha256(k.outer_pad || sha256(
                k.inner_pad || convert_to(concat_ws('.', channel, pg_backend_pid(), stamp, payload), 'UTF8'))), 'hex')
                || '.' || payload);
        END
        $$
        """
    )
    op.execute("REVOKE EXECUTE ON FUNCTION recsys_notify(text, text) FROM PUBLIC")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION recsys_notify_catalogue() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM recsys_notify('recsys_catalogue', TG_OP);
            RETURN NULL;
        END
        $$
        """
    )
    for function in ADVISORY_LOCKS + LARGE_OBJECTS:
        _revoke(function)


def downgrade() -> None:
    for function in ADVISORY_LOCKS + LARGE_OBJECTS:
        if function.startswith("lo_import"):
            continue  # never granted to PUBLIC by PostgreSQL itself
        op.execute(
            f"DO $$ BEGIN GRANT EXECUTE ON FUNCTION {function} TO PUBLIC; "
            "EXCEPTION WHEN insufficient_privilege THEN NULL; END $$"
        )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION recsys_notify_catalogue() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('recsys_catalogue', TG_OP);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute("DROP FUNCTION IF EXISTS recsys_notify(text, text)")
    op.execute("DROP FUNCTION IF EXISTS recsys_notify_key()")
    op.drop_table("notify_keys")


def _revoke(function: str) -> None:
    """Take ``function`` from PUBLIC and give it back to the migrating role; warn if the analyst can
    still run it (REVOKE by a role that does not own the function only warns, it does not fail)."""
    op.execute(
        "DO $$ BEGIN "
        f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC; "
        f"EXECUTE format('GRANT EXECUTE ON FUNCTION {function} TO %I', current_user); "
        "EXCEPTION WHEN insufficient_privilege THEN NULL; END $$"
    )
    op.execute(
        "DO $$ BEGIN "
        f"IF has_function_privilege('{ROLE}', '{function}', 'EXECUTE') THEN "
        f"RAISE WARNING '{ROLE} can still run {function}: revoking it from PUBLIC needs a superuser'; "
        "END IF; END $$"
    )
