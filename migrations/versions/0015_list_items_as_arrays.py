"""a served list's items as arrays of its ``recommendations`` row; ``recommendation_items`` a view

Logging a list wrote one row to ``recommendations`` and one per item to ``recommendation_items``
(partitioned, four indexes, a foreign key per item). One row with the items as arrays costs
PostgreSQL 0.31 ms of CPU per list of ten against 0.41 ms (issue 21, ``bench/bench_log_layout.py``). So ``recommendations`` gains ``slot_keys``, ``scores``,
``reasons`` and ``explored`` (one element per item, best first: an item's rank is its position),
checked to be aligned and the reasons known; the items move into them, and
``recommendation_items`` becomes a view with the table's columns, one row per item, that the
analytics views, the analyst and the dashboard read as before.

What the table had and the arrays do not: a foreign key from each item to ``slots`` and the key
``(recommendation_id, slot_key)``. The serving code never lists a slot twice nor one it does not
hold (tests/serving), and slots are never deleted (they are disabled).

Views reading ``recommendation_items`` are dropped and made again unchanged, with the analyst
role's SELECT. The downgrade moves the items back into the partitioned table, with its indexes.

Revision ID: 0015
Revises: 0014
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYST_ROLE = "recsys_analyst"
REASONS = ("similar", "personal", "explore", "popular", "cold_start")
ARRAYS = ("slot_keys", "scores", "reasons", "explored")

ITEMS_VIEW = """
    SELECT r.id AS recommendation_id, CAST(i.rank AS smallint) AS rank, i.slot_key, i.score, i.reason, i.explored,
           r.created_at
    FROM recommendations r
    CROSS JOIN LATERAL unnest(r.slot_keys, r.scores, r.reasons, r.explored)
        WITH ORDINALITY AS i(slot_key, score, reason, explored, rank)
"""


def _dependent_views() -> list[tuple[str, str]]:
    """The views that read ``recommendation_items``, directly or through another view, oldest first,
    with their definitions."""
    rows = op.get_bind().execute(sa.text("""
        WITH RECURSIVE dependent(oid) AS (
            SELECT DISTINCT v.oid FROM pg_depend d
            JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
            WHERE d.refobjid = 'recommendation_items'::regclass AND v.oid <> d.refobjid
            UNION
            SELECT v.oid FROM dependent t JOIN pg_depend d ON d.refobjid = t.oid
            JOIN pg_rewrite w ON w.oid = d.objid JOIN pg_class v ON v.oid = w.ev_class
            WHERE v.oid <> d.refobjid
        )
        SELECT c.relname, pg_get_viewdef(c.oid) FROM dependent t JOIN pg_class c ON c.oid = t.oid ORDER BY c.oid
    """)).all()
    return [(name, definition) for name, definition in rows]


def _recreate(views: list[tuple[str, str]]) -> None:
    for name, definition in views:
        op.execute(f"CREATE VIEW {name} AS {definition}")
    op.execute(f"GRANT SELECT ON {', '.join(['recommendation_items', *(name for name, _ in views)])} TO {ANALYST_ROLE}")


def upgrade() -> None:
    views = _dependent_views()
    for name, _ in reversed(views):
        op.execute(f"DROP VIEW {name}")
    kinds = (sa.Integer(), sa.Float(), sa.String(length=16), sa.Boolean())
    for column, kind in zip(ARRAYS, kinds, strict=True):
        op.add_column("recommendations", sa.Column(
            column, postgresql.ARRAY(kind), server_default=sa.text("'{}'"), nullable=False,
            comment="the items' slots, best first (rank = position, from 1); empty for a suppressed list"
            if column == "slot_keys" else None,
        ))
    op.execute("""
        UPDATE recommendations r
        SET slot_keys = i.slot_keys, scores = i.scores, reasons = i.reasons, explored = i.explored
        FROM (SELECT recommendation_id, created_at, array_agg(slot_key ORDER BY rank) AS slot_keys,
                     array_agg(score ORDER BY rank) AS scores, array_agg(reason ORDER BY rank) AS reasons,
                     array_agg(explored ORDER BY rank) AS explored
              FROM recommendation_items GROUP BY recommendation_id, created_at) i
        WHERE r.id = i.recommendation_id AND r.created_at = i.created_at
    """)
    aligned = " AND ".join(f"cardinality({column}) = cardinality(slot_keys)" for column in ARRAYS[1:])
    op.create_check_constraint("ck_recommendations_items", "recommendations", aligned)
    op.create_check_constraint("ck_recommendations_reasons", "recommendations",
                               f"reasons <@ ARRAY[{', '.join(repr(r) for r in REASONS)}]::varchar[]")
    op.execute("DROP TABLE recommendation_items")  # with its monthly partitions
    op.execute(f"CREATE VIEW recommendation_items AS {ITEMS_VIEW}")
    _recreate(views)


def downgrade() -> None:
    views = _dependent_views()
    for name, _ in reversed(views):
        op.execute(f"DROP VIEW {name}")
    op.execute("CREATE TABLE recommendation_items_copy AS TABLE recommendation_items")
    op.execute("DROP VIEW recommendation_items")
    op.create_table(
        "recommendation_items",
        sa.Column("recommendation_id", sa.UUID(), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False, comment="1-based"),
        sa.Column("slot_key", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("explored", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False,
                  comment="the list's created_at (the partition key)"),
        sa.CheckConstraint(f"reason IN ({', '.join(repr(r) for r in REASONS)})", name="ck_recommendation_items_reason"),
        sa.ForeignKeyConstraint(["slot_key"], ["slots.id"], name="fk_recommendation_items_slot_key_slots"),
        sa.PrimaryKeyConstraint("recommendation_id", "rank", "created_at", name="pk_recommendation_items"),
        sa.UniqueConstraint("recommendation_id", "slot_key", "created_at",
                            name="uq_recommendation_items_recommendation_id_slot_key_created_at"),
        postgresql_partition_by="RANGE (created_at)",
    )
    op.create_index("ix_recommendation_items_slot_key", "recommendation_items", ["slot_key"])
    op.create_index("ix_recommendation_items_created_at", "recommendation_items", ["created_at"])
    bind = op.get_bind()
    partitions = bind.execute(sa.text(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'recommendations'::regclass ORDER BY 1"
    )).all()
    for name, bound in partitions:  # the same months as the lists'
        op.execute(f"CREATE TABLE {name.replace('recommendations', 'recommendation_items', 1)} "
                   f"PARTITION OF recommendation_items {bound}")
    op.execute("INSERT INTO recommendation_items SELECT * FROM recommendation_items_copy")
    op.execute("DROP TABLE recommendation_items_copy")
    op.drop_constraint("ck_recommendations_reasons", "recommendations", type_="check")
    op.drop_constraint("ck_recommendations_items", "recommendations", type_="check")
    for column in reversed(ARRAYS):
        op.drop_column("recommendations", column)
    _recreate(views)
