"""What the PUT endpoints share: partial records in, the import's validation and upsert, counts out."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta

from recsys.db import records as db
from recsys.db.imports import ImportResult
from recsys.errors import InputError

MAX_BATCH = 10_000


def batch_of(kind: type) -> object:
    """``list[kind]`` as the OpenAPI document gives a PUT batch: 1 to :data:`MAX_BATCH` records."""
    return Annotated[list[kind], Meta(extra_json_schema={"minItems": 1, "maxItems": MAX_BATCH})]


class PutResult(msgspec.Struct):
    inserted: int
    updated: int
    unchanged: int

    @classmethod
    def of(cls, result: ImportResult) -> PutResult:
        return cls(result.inserted, result.updated, result.unchanged)


def given_fields(record: msgspec.Struct) -> dict:
    """The fields a request actually sent (``UNSET`` ones left out): a PUT changes only those."""
    return {name: value for name in record.__struct_fields__ if (value := getattr(record, name)) is not UNSET}


def path_record(key: str, identifier: str, record: msgspec.Struct) -> dict:
    """The record of a ``PUT .../{id}``: the id comes from the path (the body has no id field)."""
    return {key: identifier, **given_fields(record)}


def batch_records(records: list, source: str) -> list[dict]:
    if len(records) > MAX_BATCH:
        raise InputError(source, f"{len(records):,} records; at most {MAX_BATCH:,} per request")
    return [given_fields(r) for r in records]


def put_records(engine, kind: str, records: list[dict], source: str, *, batch: bool) -> PutResult:
    """``put_records``, its errors about the JSON body: a batch names the record's 0-based ``index``
    (the import's 1-based file ``row`` is for files), a single record only the ``field``."""
    try:
        return PutResult.of(db.put_records(engine, kind, records, source))
    except InputError as exc:
        raise exc.in_json_array(batch) from exc
