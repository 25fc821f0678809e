"""Write validated import frames: COPY into a temporary staging table, check, then one upsert.

The frames come from ``recsys.importing`` (a file or an HTTP batch), already checked value by
value. What only the database can tell is checked here, before anything is written: that the
players and slots a session names exist, and that a session keeps a non-negative duration against
the end already recorded when the file leaves ``ended_at`` out.

The upsert is ``INSERT ... SELECT ... ON CONFLICT (natural id) DO UPDATE ... WHERE the row differs``:
rows equal to what is stored are not touched at all (not even ``updated_at``), so importing the same
file twice changes nothing. A changed row gets ``updated_at = now()``; consolidation finds late or
corrected sessions through ``play_sessions.updated_at``. A column the frame does not have is not
written: new rows take the schema default, existing rows keep their value.
"""

from __future__ import annotations

import io
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from recsys.db.bulk import deferred_maintenance, raw_connection
from recsys.db.schema import play_sessions, players, slots
from recsys.errors import InputError
from recsys.importing import format_of, progress_level

log = logging.getLogger(__name__)

CHUNK_ROWS = 200_000
DEFERRED_INDEX_ROWS = 100_000  # sessions batches at least this large defer indexes (into an empty table, or offline)
ANALYZE_ROWS = 10_000  # above this, staging statistics are worth their cost: the planner picks hash joins

# Where each format column lives in the database (its type is the staging column's type).
_TABLES = {"players": players, "slots": slots, "sessions": play_sessions}
_FOREIGN = {"player_id": players.c.player_id, "slot_id": slots.c.slot_id}

# Timestamps travel as integer microseconds since the epoch: Arrow formats a timestamp column as CSV
# ~50x slower than an integer one (1 s per 10^6 values, measured), and PostgreSQL parses integers faster.
_MICROSECONDS = "bigint"


@dataclass(frozen=True)
class ImportResult:
    """What an import did: ``rows`` = ``inserted`` + ``updated`` + ``unchanged``."""

    kind: str
    rows: int
    inserted: int
    updated: int
    seconds: float

    @property
    def unchanged(self) -> int:
        return self.rows - self.inserted - self.updated


def import_frame(
    engine: sa.Engine, kind: str, frame: pd.DataFrame, *, source: str, offline: bool = False
) -> ImportResult:
    """``upsert_frame`` in a transaction of its own: all rows are written, or none."""
    with engine.begin() as conn:
        return upsert_frame(conn, kind, frame, source=source, offline=offline)


def upsert_frame(
    conn: sa.Connection, kind: str, frame: pd.DataFrame, *, source: str, offline: bool = False
) -> ImportResult:
    """Insert or update the rows of a validated frame inside ``conn``'s transaction.

    ``frame`` is what ``recsys.importing.validate_frame`` (or ``validate_records``/``load_file``)
    returns; row ``i`` of it is reported as row ``i + 1``. Raises ``InputError`` naming ``source``,
    the row and the field when a session names an unknown player or slot, or would end before it
    starts; nothing has been written then (the caller's transaction must be rolled back, which
    ``import_frame`` does).

    A large sessions load builds ``play_sessions``' secondary indexes once afterwards instead of
    row by row, but dropping them takes an exclusive lock until the commit, which stalls every
    request reading sessions (issue 10: 5.3 s of stalled recommendations). So it does that only
    into an empty table or when ``offline`` (``recsys import --offline``: nothing is serving).
    """
    fmt = format_of(kind)
    names = [name for name in fmt.names if name in frame.columns]
    staging = f"import_{kind}"
    level = progress_level(len(frame))
    started = time.perf_counter()
    try:
        _create_staging(conn, kind, staging, names)
        _copy(conn, staging, frame[names], source, _timestamps(kind, names))
        if len(frame) > ANALYZE_ROWS:
            conn.execute(sa.text(f"ANALYZE {staging}"))
        step = time.perf_counter()
        log.log(level, "%s: staged %s rows in %.1f s", source, f"{len(frame):,}", step - started)
        if kind == "sessions":
            _check_sessions(conn, staging, names, source)
            log.log(level, "%s: checked player and slot ids in %.1f s", source, time.perf_counter() - step)
            step = time.perf_counter()
        if kind == "sessions":
            # See the docstring: indexes deferred only where their exclusive lock stalls nobody.
            empty = not conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM play_sessions)")).scalar_one()
            deferred = len(frame) >= DEFERRED_INDEX_ROWS and (empty or offline)
            with deferred_maintenance(conn, play_sessions, keep_unique=True) if deferred else nullcontext():
                inserted, updated = conn.execute(sa.text(_session_upsert(names))).one()
        else:
            inserted, updated = conn.execute(sa.text(_upsert(kind, names, staging))).one()
        log.log(level, "%s: wrote %s rows in %.1f s", source, f"{inserted + updated:,}", time.perf_counter() - step)
        conn.execute(sa.text(f"DROP TABLE {staging}"))
    except (sa.exc.IntegrityError, sa.exc.DataError) as exc:
        # Validation should leave nothing for the database to refuse; if it does (say, a player
        # deleted meanwhile), it is still the input's fault, and still an error with a message.
        raise InputError(source, f"the database refused the data: {_first_line(exc.orig)}") from exc
    return ImportResult(kind, len(frame), int(inserted), int(updated), time.perf_counter() - started)


# --- staging -------------------------------------------------------------------------------------


def _is_timestamp(kind: str, name: str) -> bool:
    return format_of(kind).column(name).type == "timestamp"


def _timestamps(kind: str, names: list[str]) -> set[str]:
    return {name for name in names if _is_timestamp(kind, name)}


def _column_type(kind: str, name: str) -> str:
    if _is_timestamp(kind, name):
        return _MICROSECONDS
    column = _FOREIGN[name] if kind == "sessions" and name in _FOREIGN else _TABLES[kind].c[name]
    return column.type.compile(dialect=postgresql.dialect())


def _value(kind: str, name: str) -> str:
    """The SQL expression of staging column ``name`` (alias ``s``) as the target column's type."""
    if _is_timestamp(kind, name):
        return f"(timestamptz 'epoch' + s.{name} * interval '1 microsecond')"
    return f"s.{name}"


def _create_staging(conn: sa.Connection, kind: str, staging: str, names: list[str]) -> None:
    columns = ", ".join(f"{name} {_column_type(kind, name)}" for name in names)
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {staging}"))
    conn.execute(sa.text(f"CREATE TEMPORARY TABLE {staging} (data_row integer NOT NULL, {columns}) ON COMMIT DROP"))


def _copy(conn: sa.Connection, staging: str, frame: pd.DataFrame, source: str, timestamps: set[str]) -> None:
    """COPY the frame (plus its 1-based ``data_row``) as CSV written by Arrow: no Python per row."""
    table = _arrow(frame, timestamps)
    started = time.perf_counter()
    quoted = ", ".join(table.column_names)
    options = pacsv.WriteOptions(include_header=False)
    cursor = raw_connection(conn).cursor()
    try:
        with cursor.copy(f"COPY {staging} ({quoted}) FROM STDIN (FORMAT csv)") as copy:
            for start in range(0, table.num_rows, CHUNK_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(table.slice(start, CHUNK_ROWS), buffer, options)
                copy.write(buffer.getbuffer())
                done = min(start + CHUNK_ROWS, table.num_rows)
                if table.num_rows > CHUNK_ROWS:
                    elapsed = time.perf_counter() - started
                    log.info(
                        "%s: staged %s/%s rows (%s rows/s)",
                        source,
                        f"{done:,}",
                        f"{table.num_rows:,}",
                        f"{done / elapsed:,.0f}",
                    )
    except psycopg.errors.DataError as exc:
        raise InputError(source, f"the database refused a value: {_first_line(exc)}") from exc


def _arrow(frame: pd.DataFrame, timestamps: set[str]) -> pa.Table:
    """The frame as Arrow columns whose CSV form PostgreSQL reads back as the staging types."""
    columns = {"data_row": pa.array(np.arange(1, len(frame) + 1, dtype=np.int32))}
    for name in frame.columns:
        values = frame[name]
        if name in timestamps:
            micros = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").view(np.int64)
            columns[name] = pa.array(micros, mask=values.isna().to_numpy())
        elif isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_list(values.dtype.pyarrow_dtype):
            columns[name] = _array_literals(pa.array(values))
        elif name == "release_date":
            columns[name] = pa.array(values).cast(pa.date32())
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def _array_literals(lists: pa.Array) -> pa.Array:
    """``["GB", "SE"]`` -> ``{"GB","SE"}``: a PostgreSQL array literal (codes need no escaping)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    joined = pc.binary_join(lists, '","')
    quoted = pc.binary_join_element_wise('{"', joined, '"}', "")
    empty = pc.equal(pc.list_value_length(lists), 0)
    return pc.if_else(empty, pa.scalar("{}"), quoted)


# --- checks only the database can make -----------------------------------------------------------


def _check_sessions(conn: sa.Connection, staging: str, names: list[str], source: str) -> None:
    unknown = conn.execute(
        sa.text(
            f"""
            SELECT s.data_row, s.player_id, s.slot_id, p.id IS NULL AS no_player, count(*) OVER () AS bad
            FROM {staging} s
            LEFT JOIN players p ON p.player_id = s.player_id
            LEFT JOIN slots sl ON sl.slot_id = s.slot_id
            WHERE p.id IS NULL OR sl.id IS NULL
            ORDER BY s.data_row
            LIMIT 1
            """
        )
    ).first()
    if unknown is not None:
        field, kind = ("player_id", "player") if unknown.no_player else ("slot_id", "slot")
        value = unknown.player_id if unknown.no_player else unknown.slot_id
        more = f" ({unknown.bad - 1} more rows name unknown players or slots)" if unknown.bad > 1 else ""
        raise InputError(
            source,
            f"unknown {field} {value!r}: no such {kind} (import the {kind}s first){more}",
            row=unknown.data_row,
            field=field,
        )
    if "ended_at" not in names:
        # The stored end stays; the new start must not move past it.
        late = conn.execute(
            sa.text(
                f"""
                SELECT s.data_row, {_value("sessions", "started_at")} AS started_at, cur.ended_at
                FROM {staging} s JOIN play_sessions cur ON cur.session_id = s.session_id
                WHERE cur.ended_at < {_value("sessions", "started_at")}
                ORDER BY s.data_row
                LIMIT 1
                """
            )
        ).first()
        if late is not None:
            raise InputError(
                source,
                f"started_at {late.started_at.isoformat()} is after the session's recorded ended_at "
                f"{late.ended_at.isoformat()} (negative duration)",
                row=late.data_row,
                field="started_at",
            )


# --- the upserts ---------------------------------------------------------------------------------


def _upsert(kind: str, names: list[str], staging: str) -> str:
    """Players and slots: the staging columns are the table's columns."""
    table, key = _TABLES[kind], format_of(kind).key
    columns = [n for n in names if n != key]
    new = {n: _value(kind, n) for n in names}
    return _statement(table.name, key, f"{staging} s", new, columns, "cur.id")


def _session_upsert(names: list[str]) -> str:
    """Sessions: ids become keys by a join; ``seconds`` and ``last_event_at`` follow from the times."""
    start = _value("sessions", "started_at")
    end = _value("sessions", "ended_at") if "ended_at" in names else "cur.ended_at"
    new = {
        "session_id": "s.session_id",
        "player_key": "p.id",
        "slot_key": "sl.id",
        "started_at": start,
        **({"ended_at": end} if "ended_at" in names else {}),
        "last_event_at": f"COALESCE({end}, {start})",
        "seconds": f"COALESCE(EXTRACT(EPOCH FROM {end} - {start})::float8, 0)",
        **{n: f"s.{n}" for n in ("spins", "total_bet", "total_win", "bonus") if n in names},
    }
    source = "import_sessions s JOIN players p ON p.player_id = s.player_id JOIN slots sl ON sl.slot_id = s.slot_id"
    return _statement("play_sessions", "session_id", source, new, [c for c in new if c != "session_id"], "cur.id")


def _statement(table: str, key: str, source: str, new: dict[str, str], columns: list[str], current: str) -> str:
    """``INSERT ... SELECT`` the rows that are new or differ, ``ON CONFLICT`` update them.

    Unchanged rows are filtered out before the insert (a join on the natural id), so they are not
    even locked; the ``DO UPDATE ... WHERE`` repeats the comparison for rows that another
    transaction wrote in between. Rows are written (and so locked) in key order: two batches
    holding the same ids in different orders queue instead of deadlocking (issue 10: 13 of 24
    concurrent PUTs failed). Returns one row: (inserted, updated).
    """
    if columns:
        stored = ", ".join(f"cur.{c}" for c in columns)
        given = ", ".join(new[c] for c in columns)
        differs = f"{current} IS NULL OR ROW({stored}) IS DISTINCT FROM ROW({given})"
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
        target = ", ".join(f"t.{c}" for c in columns)
        excluded = ", ".join(f"EXCLUDED.{c}" for c in columns)
        conflict = (
            f"DO UPDATE SET {assignments}, updated_at = now() WHERE ROW({target}) IS DISTINCT FROM ROW({excluded})"
        )
    else:
        differs = f"{current} IS NULL"
        conflict = "DO NOTHING"
    return f"""
        WITH written AS (
            INSERT INTO {table} AS t ({", ".join(new)})
            SELECT {", ".join(new.values())}
            FROM {source}
            LEFT JOIN {table} cur ON cur.{key} = s.{key}
            WHERE {differs}
            ORDER BY s.{key}
            ON CONFLICT ({key}) {conflict}
            RETURNING t.xmax = 0 AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
        FROM written
    """


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
