"""``PUT`` of players and slots: partial records through the import's validation and upsert."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from recsys.constants import CONTROL_CHARACTERS, ID_LENGTH
from recsys.db.imports import ImportResult, upsert_frame
from recsys.db.schema import players, slots
from recsys.importing import format_of, validate_records

_TABLES = {"players": players, "slots": slots}
_CONTROL = re.compile(CONTROL_CHARACTERS)
# What a new row gets for a field the request leaves out (the schema's defaults).
_NEW_ROW_DEFAULTS = {"marketing_consent": False, "risk_flag": False, "active": True}


def put_records(engine: sa.Engine, kind: str, records: list[dict[str, Any]], source: str) -> ImportResult:
    """Create or update players or slots from records that may carry only the fields they change.

    A field that a record leaves out keeps its stored value (a new row takes the schema default;
    a new slot must give every required field). The merged records go through the import's own
    validation (``recsys.importing.validate_records``) and upsert (``recsys.db.imports``) in one
    transaction, with the stored rows locked, so a bad record writes nothing.
    """
    fmt = format_of(kind)
    if kind not in _TABLES:
        raise ValueError(f"put_records handles players and slots, not {kind!r}")
    given = {name for record in records for name in record}
    required = {c.name for c in fmt.columns if c.required}
    fields = [name for name in fmt.names if name in given | required] + sorted(given - set(fmt.names))
    table = _TABLES[kind]
    ids = [record.get(fmt.key) for record in records]
    with engine.begin() as conn:
        stored_columns = [name for name in fields if name in table.c]
        stored = {
            row[0]: dict(zip(stored_columns, row, strict=True))
            for row in conn.execute(
                sa.text(
                    f"SELECT {', '.join(stored_columns)} FROM {table.name} "
                    f"WHERE {fmt.key} = ANY(:ids) ORDER BY id FOR UPDATE"
                ),
                # Ids the validation below refuses are not looked up (PostgreSQL refuses NUL in text).
                {"ids": [i for i in ids if isinstance(i, str) and 0 < len(i) <= ID_LENGTH and not _CONTROL.search(i)]},
            )
        }
        merged = [_merge(record, stored.get(record.get(fmt.key)), fields) for record in records]
        frame = validate_records(merged, kind, source)
        return upsert_frame(conn, kind, frame, source=source)


def _merge(record: dict[str, Any], stored: dict[str, Any] | None, fields: list[str]) -> dict[str, Any]:
    out = {}
    for name in fields:
        if name in record:
            out[name] = record[name]
        elif stored is not None and name in stored:
            value = stored[name]
            out[name] = float(value) if isinstance(value, Decimal) else value
        else:
            out[name] = _NEW_ROW_DEFAULTS.get(name)
    return out
