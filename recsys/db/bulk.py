"""Bulk loading through ``COPY ... FROM STDIN``: the fastest way to move a data frame into PostgreSQL."""

from __future__ import annotations

import io

import pandas as pd
import sqlalchemy as sa

CHUNK_ROWS = 200_000


def raw_connection(conn: sa.Connection):
    """The psycopg connection under a SQLAlchemy connection (same transaction)."""
    return conn.connection.driver_connection


def copy_frame(conn: sa.Connection, table: str, frame: pd.DataFrame, columns: list[str] | None = None) -> int:
    """COPY ``frame`` into ``table`` in CSV chunks; returns the number of rows written.

    Columns are written in ``columns`` order (default: the frame's). Missing values become NULL;
    Python lists become PostgreSQL array literals. Runs inside ``conn``'s transaction.
    """
    columns = list(frame.columns) if columns is None else columns
    frame = frame[columns]
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = raw_connection(conn).cursor()
    with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
        for start in range(0, len(frame), CHUNK_ROWS):
            buffer = io.StringIO()
            frame.iloc[start : start + CHUNK_ROWS].to_csv(buffer, header=False, index=False, na_rep="\\N")
            copy.write(buffer.getvalue())
    return len(frame)


def array_literal(values) -> str | None:
    """A PostgreSQL text-array literal (``{"GB","SE"}``) for COPY, or None for a missing value."""
    if values is None:
        return None
    escaped = (str(v).replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in escaped) + "}"
