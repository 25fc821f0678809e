"""Import files and batches: read CSV or Parquet, check every value, hand back a typed frame.

The public format is docs/import-format.md: one row per player, slot or play session, with the
API's JSON field names as columns. This module knows no SQL; ``recsys.db.imports`` writes what it
returns. The same checks serve a file (``load_file``) and an HTTP batch (``validate_records``), so
a row is accepted or refused for the same reason wherever it comes from.

Every check is vectorized over the whole column; only the message for the first bad row is built
in Python. Rows are numbered from 1 as data rows: the header line of a CSV file is not counted.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.constants import (
    BET,
    CONTROL_CHARACTERS,
    ID_LENGTH,
    MARKET_LENGTH,
    SESSION_TOTAL,
    VOLATILITIES,
    numeric_limit,
)
from recsys.errors import InputError

log = logging.getLogger(__name__)

KINDS = ("players", "slots", "sessions")
MARKETS_SEPARATOR = "|"
"""Separates the markets of a slot inside one CSV cell: ``GB|SE|NL``."""

SUFFIXES = (".csv", ".csv.gz", ".parquet")
PROGRESS_ROWS = 100_000  # inputs at least this large log each step with its rows/s

MAX_MARKETS = 100
"""Markets one slot may list. The list is stored in the partial index ``ix_slots_hidden``, whose rows
PostgreSQL bounds at 2,704 bytes: 100 codes of 16 characters (20 bytes each in an array) fit with room
to spare (issue 22: 100,000 made a 9,208-byte row, and a 503). A slot offered nearly everywhere lists
no markets (every market)."""

MARKET_PATTERN = rf"[A-Za-z0-9_-]{{1,{MARKET_LENGTH}}}"
"""A market code: ISO country codes (GB), regions (US-NJ, CA_ON); letters, digits, ``-`` and ``_``."""

# ISO 8601 date and time; the zone (Z or an offset) is a separate group so a naive value can be named.
_DATETIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?"
_ZONE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
_DATE = r"\d{4}-\d{2}-\d{2}"
_TRUE = ("true", "1")
_FALSE = ("false", "0")
_INT32_MAX = 2**31 - 1
EMPTY_NOT_NULL = "empty (leave the column out to keep current values)"

SESSION_EARLIEST = pd.Timestamp("2000-01-01T00:00:00Z")
"""Play sessions start and end no earlier than this: older history has no place in a slot catalogue."""
SESSION_MAX_FUTURE = timedelta(days=1)
"""...and no later than this after the importing machine's clock (time zones and clock skew)."""
TIMESTAMP_RANGE = (pd.Timestamp("1900-01-01T00:00:00Z"), pd.Timestamp("9999-01-01T00:00:00Z"))
"""Any other timestamp (a registration, a self-exclusion end) lies in this range."""


@dataclass(frozen=True)
class Column:
    """One column of an import format.

    ``required``: the column must be present and every cell filled. ``nullable``: when the column is
    present, a cell may be empty (the database stores NULL); a column that is neither must have a
    value in every row where it is given, and is left out to keep the current values.
    """

    name: str
    type: str
    required: bool = False
    nullable: bool = True
    limit: float | None = None  # numbers: exclusive upper bound (from the column's precision)


@dataclass(frozen=True)
class Format:
    kind: str
    key: str  # the natural id, unique within a file and in the table
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


FORMATS: dict[str, Format] = {
    "players": Format(
        "players",
        "player_id",
        (
            Column("player_id", "id", required=True, nullable=False),
            Column("market", "market"),
            Column("registered_at", "timestamp"),
            Column("self_excluded_until", "timestamp"),
            Column("cooling_off_until", "timestamp"),
            Column("marketing_consent", "bool", nullable=False),
            Column("risk_flag", "bool", nullable=False),
        ),
    ),
    "slots": Format(
        "slots",
        "slot_id",
        (
            Column("slot_id", "id", required=True, nullable=False),
            Column("name", "text", required=True, nullable=False),
            Column("provider", "text", required=True, nullable=False),
            Column("theme", "text", required=True, nullable=False),
            Column("volatility", "volatility", required=True, nullable=False),
            Column("rtp", "percent", required=True, nullable=False),
            Column("min_bet", "amount", required=True, nullable=False, limit=numeric_limit(BET)),
            Column("max_bet", "amount", required=True, nullable=False, limit=numeric_limit(BET)),
            Column("release_date", "date"),
            Column("active", "bool", nullable=False),
            Column("markets", "markets"),
        ),
    ),
    "sessions": Format(
        "sessions",
        "session_id",
        (
            Column("session_id", "id", required=True, nullable=False),
            Column("player_id", "id", required=True, nullable=False),
            Column("slot_id", "id", required=True, nullable=False),
            Column("started_at", "timestamp", required=True, nullable=False),
            Column("ended_at", "timestamp"),
            Column("spins", "count", nullable=False),
            Column("total_bet", "amount", nullable=False, limit=numeric_limit(SESSION_TOTAL)),
            Column("total_win", "amount", nullable=False, limit=numeric_limit(SESSION_TOTAL)),
            Column("bonus", "bool", nullable=False),
        ),
    ),
}


def format_of(kind: str) -> Format:
    try:
        return FORMATS[kind]
    except KeyError:
        raise ValueError(f"unknown import kind {kind!r}; expected one of {', '.join(KINDS)}") from None


# --- reading -------------------------------------------------------------------------------------


def load_file(path: Path | str, kind: str) -> pd.DataFrame:
    """Read and validate one import file: ``read_file`` then ``validate_frame``.

    Returns the validated frame (see ``validate_frame``); raises ``InputError`` naming the file,
    the 1-based data row and the field of the first bad value.
    """
    source = str(path)
    started = time.perf_counter()
    raw = read_file(path, kind)
    read_s = time.perf_counter() - started
    level = progress_level(len(raw))
    log.log(level, "%s: read %s rows in %.1f s (%s rows/s)", source, f"{len(raw):,}", read_s, _rate(len(raw), read_s))
    started = time.perf_counter()
    frame = validate_frame(raw, kind, source)
    check_s = time.perf_counter() - started
    log.log(level, "%s: checked %s rows in %.1f s (%s rows/s)", source, f"{len(raw):,}", check_s,
            _rate(len(raw), check_s))
    return frame


def progress_level(rows: int) -> int:
    """Progress of a large input is worth an INFO line; a small one's is DEBUG."""
    return logging.INFO if rows >= PROGRESS_ROWS else logging.DEBUG


def read_file(path: Path | str, kind: str) -> pd.DataFrame:
    """The file's cells as a frame, one column per column of the file, without any check of values.

    CSV (``.csv``, ``.csv.gz``): UTF-8, comma-separated, a header line; every cell is read as text
    and an empty cell is missing. Parquet (``.parquet``): columns keep their Parquet types.
    """
    fmt = format_of(kind)
    path = Path(path)
    source = str(path)
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise InputError(source, f"unknown file type; expected one of {', '.join(SUFFIXES)}")
    if not path.exists():
        raise InputError(source, "no such file")
    if not path.is_file():
        raise InputError(source, "not a file")
    if path.stat().st_size == 0:
        raise InputError(source, "the file is empty")
    if name.endswith(".parquet"):
        return _read_parquet(path, source)
    return _read_csv(path, source, fmt)


def _read_csv(path: Path, source: str, fmt: Format) -> pd.DataFrame:
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in fmt.names},
        # Only an empty cell is missing: "NA" is Namibia's market code, "null" may be a slot's name.
        null_values=[""],
        strings_can_be_null=True,
    )
    try:
        table = pacsv.read_csv(path, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, source, convert, exc) from exc
    except OSError as exc:
        raise InputError(source, f"cannot read the file ({exc})") from exc
    return _to_pandas(table)


def _csv_error(path: Path, source: str, convert, exc: Exception) -> InputError:
    """Locate a malformed line: read again on one thread, where pyarrow knows line numbers."""
    import pyarrow.csv as pacsv

    bad = []

    def remember(row) -> str:
        bad.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowInvalid, OSError):
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=remember),
            convert_options=convert,
        )
    if bad and bad[0].number is not None:
        row = bad[0]
        return InputError(
            source,
            f"line {row.number} has {row.actual_columns} fields, the header has {row.expected_columns}",
            row=row.number - 1,
        )
    if "invalid UTF8" in str(exc):
        return InputError(source, "the file is not UTF-8 text (save it as UTF-8)")
    return InputError(source, f"not a valid CSV file ({exc})")


def _read_parquet(path: Path, source: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(source, f"not a valid Parquet file ({exc})") from exc
    return _to_pandas(table)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Lists (a slot's markets) stay Arrow lists; everything else takes pandas' usual types.
    def mapper(arrow_type):
        return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) else None

    return table.to_pandas(types_mapper=mapper)


# --- validating ----------------------------------------------------------------------------------


def validate_records(records: Iterable[Mapping[str, object]], kind: str, source: str = "request") -> pd.DataFrame:
    """Validate a batch of JSON-like records (an HTTP PUT body) exactly like the rows of a file.

    ``records[i]`` is row ``i + 1`` in error messages. A field absent from every record is an omitted
    column (existing rows keep their values); a field absent from only some records is empty there.
    Values may be what JSON gives (strings, numbers, booleans, lists, None) or ``datetime``/``date``.
    """
    frame = pd.DataFrame.from_records(list(records))
    return validate_frame(frame, kind, source)


def validate_frame(frame: pd.DataFrame, kind: str, source: str) -> pd.DataFrame:
    """Check every value of ``frame`` against the ``kind`` format and return the typed frame.

    The result has the same rows in the same order and the format's columns that ``frame`` has, in
    the format's order, typed: ids and text ``str``; timestamps ``datetime64[us, UTC]``; dates
    ``datetime64`` at midnight; booleans ``boolean``; counts ``Int64``; amounts and percentages
    ``float64``; markets Arrow ``list<string>``. Missing cells are NA. Raises ``InputError`` (with
    ``row`` and ``field``) for the first bad value, counting the others in the message.
    """
    fmt = format_of(kind)
    if len(frame) == 0:
        raise InputError(source, "no data rows")
    _check_columns(frame, fmt, source)
    frame = frame.reset_index(drop=True)
    problems = _Problems(source, fmt)
    values: dict[str, pd.Series] = {}
    for column in fmt.columns:
        if column.name not in frame.columns:
            continue
        raw = frame[column.name]
        missing = raw.isna().to_numpy()
        if not column.nullable:
            message = "a value is required" if column.required else EMPTY_NOT_NULL
            problems.add(column.name, missing, lambda _pos, message=message: message)
        present = raw[~missing]
        parsed, bad, describe = PARSERS[column.type](present, column)
        problems.add(column.name, _spread(bad, missing), lambda pos, raw=raw, describe=describe: describe(raw[pos]))
        values[column.name] = _reindex(parsed, len(frame))
    _check_rows(values, fmt, problems)
    problems.raise_first()
    return pd.DataFrame(values)


def _check_columns(frame: pd.DataFrame, fmt: Format, source: str) -> None:
    names = [str(c) for c in frame.columns]
    duplicated = pd.Index(names)[pd.Index(names).duplicated()]
    if len(duplicated):
        raise InputError(source, "the column appears twice", field=duplicated[0])
    unknown = [n for n in names if n not in fmt.names]
    if unknown:
        raise InputError(source, f"unknown column; {fmt.kind} columns are {', '.join(fmt.names)}", field=unknown[0])
    for column in fmt.columns:
        if column.required and column.name not in names:
            raise InputError(source, "required column is missing", field=column.name)


def _check_rows(values: dict[str, pd.Series], fmt: Format, problems: _Problems) -> None:
    key = values[fmt.key]
    repeated = key.duplicated(keep="first").to_numpy() & key.notna().to_numpy()

    def first_of(pos: int) -> str:
        first = int(np.flatnonzero((key == key[pos]).to_numpy())[0])
        return f"duplicate {fmt.key} {key[pos]!r} (first in row {first + 1})"

    problems.add(fmt.key, repeated, first_of)
    if fmt.kind == "slots":
        low, high = values["min_bet"], values["max_bet"]
        problems.add(
            "max_bet",
            (high < low).fillna(False).to_numpy(dtype=bool),
            lambda pos: f"max_bet {high[pos]:g} is below min_bet {low[pos]:g}",
        )
    if fmt.kind == "sessions":
        earliest, latest = SESSION_EARLIEST, pd.Timestamp(datetime.now(UTC) + SESSION_MAX_FUTURE)
        for name in ("started_at", "ended_at"):
            if name in values and isinstance(values[name].dtype, pd.DatetimeTZDtype):
                times = values[name]
                problems.add(
                    name,
                    ((times < earliest) | (times > latest)).fillna(False).to_numpy(dtype=bool),
                    lambda pos, times=times: f"{times[pos].isoformat()} is outside the accepted session times "
                    f"{earliest.isoformat()} .. {latest.isoformat(timespec='seconds')}",
                )
    if fmt.kind == "sessions" and "ended_at" in values:
        start, end = values["started_at"], values["ended_at"]
        problems.add(
            "ended_at",
            (end < start).fillna(False).to_numpy(dtype=bool),
            lambda pos: f"ended_at {end[pos].isoformat()} is before started_at {start[pos].isoformat()} "
            f"(negative duration)",
        )


class _Problems:
    """Bad cells found so far; raises for the first one in file order (row, then column order)."""

    def __init__(self, source: str, fmt: Format) -> None:
        self.source = source
        self.order = {name: i for i, name in enumerate(fmt.names)}
        self.found: list[tuple[int, int, str, Callable[[int], str]]] = []
        self.count = 0

    def add(self, field: str, bad: np.ndarray, describe: Callable[[int], str]) -> None:
        if bad.any():
            self.count += int(bad.sum())
            self.found.append((int(bad.argmax()), self.order[field], field, describe))

    def raise_first(self) -> None:
        if not self.found:
            return
        pos, _, field, describe = min(self.found, key=lambda f: (f[0], f[1]))
        message = describe(pos)
        if self.count > 1:
            others = self.count - 1
            message += f" ({others} more bad value{'s' if others > 1 else ''} in this input)"
        raise InputError(self.source, message, row=pos + 1, field=field)


def _spread(bad: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """A mask over the present cells -> a mask over all rows."""
    full = np.zeros(len(missing), dtype=bool)
    full[~missing] = bad
    return full


def _reindex(parsed: pd.Series, n: int) -> pd.Series:
    return parsed.reindex(pd.RangeIndex(n))


# --- parsers: present cells (a Series keeping row positions as index) -> (values, bad, describe) ---

Parsed = tuple[pd.Series, np.ndarray, Callable[[object], str]]


def _text(values: pd.Series) -> pd.Series:
    """Cells as ``str``; ``datetime``/``date`` objects (from an API batch) in ISO form."""
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        return values
    if pd.api.types.is_object_dtype(values.dtype):
        values = values.map(lambda v: v.isoformat() if isinstance(v, date | datetime) else v)
    return values.astype(str)


def _parse_id(values: pd.Series, column: Column) -> Parsed:
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(str), np.ones(len(values), dtype=bool), lambda raw: f"{_shown(raw)} is not a text id"
    text = _text(values)
    length = text.str.len().to_numpy()
    blank = text.str.strip().str.len().to_numpy() == 0
    control = text.str.contains(CONTROL_CHARACTERS, regex=True).to_numpy(dtype=bool)
    bad = blank | (length > ID_LENGTH) | control

    def describe(raw) -> str:
        if len(str(raw)) > ID_LENGTH:
            return f"the id is {len(str(raw))} characters long; at most {ID_LENGTH}"
        if pd.Series([str(raw)]).str.contains(CONTROL_CHARACTERS, regex=True).iloc[0]:
            return "the id contains control characters"
        return "the id is blank"

    return text, bad, describe


def _parse_text(values: pd.Series, column: Column) -> Parsed:
    text = _text(values)
    blank = text.str.strip().str.len().to_numpy() == 0
    control = text.str.contains(CONTROL_CHARACTERS, regex=True).to_numpy(dtype=bool)

    def describe(raw) -> str:
        return "a value is required (the cell is blank)" if not str(raw).strip() else "contains control characters"

    return text, blank | control, describe


def _parse_choice(values: pd.Series, column: Column) -> Parsed:
    text = _text(values)
    bad = ~text.isin(VOLATILITIES).to_numpy()
    return text, bad, lambda raw: f"{_shown(raw)} is not one of {', '.join(VOLATILITIES)}"


def _parse_market(values: pd.Series, column: Column) -> Parsed:
    text = _text(values)
    bad = ~text.str.fullmatch(MARKET_PATTERN).to_numpy(dtype=bool)
    return text, bad, lambda raw: f"{_shown(raw)} is not a market code (1-{MARKET_LENGTH} letters, digits, - or _)"


def _parse_markets(values: pd.Series, column: Column) -> Parsed:
    """``GB|SE`` (a CSV cell) or a list of codes (Parquet, JSON) -> Arrow ``list<string>``."""
    if isinstance(values.dtype, pd.ArrowDtype) and pa.types.is_list(values.dtype.pyarrow_dtype):
        lists = pa.array(values)
    elif pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(values.dtype):
        lists = pc.split_pattern(pa.array(values, type=pa.string()), MARKETS_SEPARATOR)
    else:
        try:
            # An API batch: lists of strings, or the CSV form as one string.
            cells = [v.split(MARKETS_SEPARATOR) if isinstance(v, str) else list(v) for v in values]
            lists = pa.array(cells, type=pa.list_(pa.string()))
        except (TypeError, pa.ArrowException):
            bad = np.ones(len(values), dtype=bool)
            return values, bad, lambda raw: f"{_shown(raw)} is not a list of market codes"
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    lists = lists.cast(pa.list_(pa.string()))
    # Only present cells arrive here, so no list is null and offsets and flatten() line up.
    codes = pc.utf8_trim_whitespace(lists.flatten())
    wrong = pc.invert(pc.fill_null(pc.match_substring_regex(codes, f"^{MARKET_PATTERN}$"), False))
    parents = pc.list_parent_indices(lists).to_numpy()
    lengths = pc.list_value_length(lists)
    bad = pc.greater(lengths, MAX_MARKETS).to_numpy(zero_copy_only=False)
    bad[parents[wrong.to_numpy(zero_copy_only=False)]] = True
    offsets = pc.subtract(lists.offsets, lists.offsets[0])
    # An empty list is every market, as an empty cell: NULL, never '{}' (which no market lists).
    cleaned = pa.ListArray.from_arrays(offsets, codes, mask=pc.equal(lengths, 0))
    parsed = pd.Series(cleaned, index=values.index, dtype=pd.ArrowDtype(cleaned.type))

    def describe(raw) -> str:
        count = len(raw.split(MARKETS_SEPARATOR)) if isinstance(raw, str) else _length(raw)
        if count is not None and count > MAX_MARKETS:
            return f"{count:,} markets; at most {MAX_MARKETS} (list none for every market)"
        return (
            f"{_shown(raw)} is not a list of market codes separated by {MARKETS_SEPARATOR!r} "
            f"(each 1-{MARKET_LENGTH} letters, digits, - or _)"
        )

    return parsed, bad, describe


def _length(raw) -> int | None:
    try:
        return len(raw)
    except TypeError:
        return None


def _parse_timestamp(values: pd.Series, column: Column) -> Parsed:
    """ISO 8601 with a zone -> UTC. A value without a zone is refused: its instant is unknown."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        return parsed, _out_of_range(parsed), _range_message
    if pd.api.types.is_datetime64_dtype(dtype):
        bad = np.ones(len(values), dtype=bool)
        return values, bad, lambda raw: f"{raw} has no time zone (the column holds naive timestamps)"
    text = _text(values).str.strip()
    zoned = text.str.fullmatch(_DATETIME + _ZONE).to_numpy(dtype=bool)
    parsed = None
    if zoned.all():
        # Arrow's ISO 8601 parser is ~8x faster than pandas' and agrees with it on these forms;
        # it refuses a whole column for one bad value (2024-02-30), and pandas then finds which.
        with contextlib.suppress(pa.ArrowInvalid):
            cast = pc.cast(pa.array(text, type=pa.string()), pa.timestamp("us", "UTC"))
            parsed = cast.to_pandas().set_axis(values.index)
    if parsed is None:
        parsed = pd.to_datetime(text.where(zoned), format="ISO8601", utc=True, errors="coerce")
    parsed = parsed.astype("datetime64[us, UTC]")
    invalid = ~zoned | parsed.isna().to_numpy()
    outside = _out_of_range(parsed) & ~invalid
    bad = invalid | outside

    def describe(raw) -> str:
        text = str(raw).strip()
        if pd.Series([text]).str.fullmatch(_DATETIME + _ZONE).iloc[0]:
            with contextlib.suppress(pa.ArrowInvalid):
                pc.cast(pa.array([text], type=pa.string()), pa.timestamp("us", "UTC"))
                return _range_message(raw)
        if pd.Series([str(raw).strip()]).str.fullmatch(_DATETIME).iloc[0]:
            return f"{_shown(raw)} has no time zone (write e.g. 2024-05-01T18:30:00Z or 2024-05-01T20:30:00+02:00)"
        return f"{_shown(raw)} is not an ISO 8601 timestamp (e.g. 2024-05-01T18:30:00Z)"

    return parsed, bad, describe


def _out_of_range(parsed: pd.Series) -> np.ndarray:
    low, high = TIMESTAMP_RANGE
    return ((parsed < low) | (parsed >= high)).fillna(False).to_numpy(dtype=bool)


def _range_message(raw) -> str:
    low, high = TIMESTAMP_RANGE
    return f"{_shown(raw)} is outside the accepted times {low.isoformat()} .. {high.isoformat()}"


def _parse_date(values: pd.Series, column: Column) -> Parsed:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values.dt.tz_localize(None) if isinstance(values.dtype, pd.DatetimeTZDtype) else values
        parsed = parsed.dt.normalize()
    else:
        text = _text(values).str.strip()
        ok = text.str.fullmatch(_DATE).to_numpy(dtype=bool)
        parsed = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
    bad = parsed.isna().to_numpy()
    return parsed.astype("datetime64[s]"), bad, lambda raw: f"{_shown(raw)} is not a date (YYYY-MM-DD)"


def _parse_bool(values: pd.Series, column: Column) -> Parsed:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool), str
    if pd.api.types.is_numeric_dtype(values.dtype):
        text = values.astype("float64").map({1.0: "1", 0.0: "0"}).astype("str")
    else:
        text = _text(values).str.strip().str.lower()
    truthy = text.isin(_TRUE).to_numpy()
    bad = ~(truthy | text.isin(_FALSE).to_numpy())
    parsed = pd.Series(truthy, index=values.index, dtype="boolean")
    return parsed, bad, lambda raw: f"{_shown(raw)} is not a boolean (true, false, 1 or 0)"


def _numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Cells as float64 and a mask of those that are not finite numbers."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("float64"), np.ones(len(values), dtype=bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.astype("float64")
    else:
        text = _text(values).str.strip()
        numbers = None
        # Arrow parses ~4x faster than pandas, to the same doubles; pandas finds the bad cells.
        with contextlib.suppress(pa.ArrowInvalid):
            cast = pc.cast(pa.array(text, type=pa.string()), pa.float64())
            numbers = cast.to_pandas().set_axis(values.index)
        if numbers is None:
            numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    return numbers, ~np.isfinite(numbers.to_numpy())


def _parse_amount(values: pd.Series, column: Column) -> Parsed:
    numbers, invalid = _numbers(values)
    x = numbers.to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        negative = x < 0
        too_large = np.round(x, 2) >= column.limit
    bad = invalid | negative | too_large

    def describe(raw) -> str:
        number = pd.to_numeric(pd.Series([raw]), errors="coerce").iloc[0]
        if isinstance(raw, bool | np.bool_) or pd.isna(number) or not np.isfinite(number):
            return f"{_shown(raw)} is not a number"
        if number < 0:
            return f"{_shown(raw)} is negative"
        return f"{_shown(raw)} is too large (below {column.limit:.0f})"

    return numbers, bad, describe


def _parse_percent(values: pd.Series, column: Column) -> Parsed:
    numbers, invalid = _numbers(values)
    x = numbers.to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        outside = (np.round(x, 2) <= 0) | (x > 100)
    bad = invalid | outside

    def describe(raw) -> str:
        number = pd.to_numeric(pd.Series([raw]), errors="coerce").iloc[0]
        if isinstance(raw, bool | np.bool_) or pd.isna(number) or not np.isfinite(number):
            return f"{_shown(raw)} is not a number"
        return f"{_shown(raw)} is not a percentage in (0, 100]"

    return numbers, bad, describe


def _parse_count(values: pd.Series, column: Column) -> Parsed:
    numbers, invalid = _numbers(values)
    x = numbers.to_numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        bad = invalid | (x < 0) | (x > _INT32_MAX) | (x != np.floor(x))
    counts = numbers.where(~bad).astype("Int64")
    return counts, bad, lambda raw: f"{_shown(raw)} is not a whole number from 0 to {_INT32_MAX}"


PARSERS: dict[str, Callable[[pd.Series, Column], Parsed]] = {
    "id": _parse_id,
    "text": _parse_text,
    "volatility": _parse_choice,
    "market": _parse_market,
    "markets": _parse_markets,
    "timestamp": _parse_timestamp,
    "date": _parse_date,
    "bool": _parse_bool,
    "amount": _parse_amount,
    "percent": _parse_percent,
    "count": _parse_count,
}


def _shown(raw) -> str:
    """A cell as the message quotes it: numpy scalars as the Python values they hold."""
    return repr(raw.item() if isinstance(raw, np.generic) else raw)


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"
