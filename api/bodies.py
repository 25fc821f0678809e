"""Request bodies: one strict JSON decoder for every endpoint, and the 400/422 rule (docs/api.md).

- **400**: the body cannot be decoded: not JSON, not UTF-8, or nested deeper than :data:`MAX_DEPTH`
  arrays and objects (issue 22: 1,000 levels overflowed the decoder's recursion, a 500).
- **422**: it decodes, but a value is wrong: a wrong type (strictly: ``1`` is not ``true``, ``0`` is
  not a time), a missing or unknown field, a value out of range. The problem names the ``field``
  and, for a record of a JSON array, its 0-based ``index``.

Every endpoint with a body takes it raw (``RawBody``) and decodes it here with ``msgspec``'s strict
rules, so a PUT coerces exactly as little as ``POST /v1/events`` does. The OpenAPI document gets
each body's schema from :data:`REQUEST_BODIES` (``api/openapi.py``).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, TypeVar

import msgspec
import numpy as np
from litestar import Request
from litestar.exceptions import ValidationException
from msgspec import Meta

from recsys.constants import BET, CONTROL_CHARACTERS, ID_LENGTH, numeric_limit
from recsys.errors import InputError
from recsys.experiments import NAME_SHAPE
from recsys.importing import MARKET_PATTERN, MAX_MARKETS

T = TypeVar("T")
_AT = re.compile(r" - at `\$(?:\.(?P<key>\w+))?(?:\[(?P<index>\d+)\])?(?:\.(?P<field>\w+))?")
_NAMED = re.compile(r"field `(?P<field>[^`]+)`")

_CONTROL = re.compile(CONTROL_CHARACTERS)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
MAX_DEPTH = 32
"""Arrays and objects a body may nest (docs/api.md): the deepest body the API takes has 3 levels
(a batch, its list, a record) plus a slot's list of markets."""

# --- what the OpenAPI document says a value may be -------------------------------------------------
# The checks themselves stay where they are (``recsys.importing``, ``recsys.events``, the handlers),
# with their own messages; these only document them, so a value the schema allows is one the API
# takes (issue 22: schemathesis' ST202 found blank ids, control characters and times the API refused).

_PLAIN = r"[^\x00-\x1f\x7f]"
NOT_BLANK = rf"^{_PLAIN}*[^\s\x00-\x1f\x7f]{_PLAIN}*$"
"""At least one character that is not white space, and no control character (``recsys.importing``)."""
_YEAR = r"(?:190[1-9]|19[1-9]\d|[2-8]\d{3}|9[0-8]\d{2})"  # 1901..9899: inside the import's range in any zone
_MONTH_DAY = (r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
              r"|02-(?:0[1-9]|1\d|2[0-8]))")
_OFFSET = r"(?:Z|[+-](?:0\d|1[0-5]):[0-5]\d)"  # recsys.events.MAX_UTC_OFFSET
RFC3339 = rf"^{_YEAR}-{_MONTH_DAY}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{{1,6}})?{_OFFSET}$"
"""RFC 3339 date-times every endpoint reads (a subset: 29 February, ``t``, a space and offsets past
15:59 are left out, though some are read); an event's or feedback's window is checked besides."""
ID_SCHEMA = {"minLength": 1, "maxLength": ID_LENGTH, "pattern": NOT_BLANK}
NAME_SCHEMA = {"minLength": 1, "maxLength": 64, "pattern": f"^{NAME_SHAPE.pattern}$"}
MARKET_SCHEMA = {"pattern": f"^{MARKET_PATTERN}$"}
PLAIN_SCHEMA = {"pattern": f"^{_PLAIN}*$"}
"""A query parameter the handler takes as it comes, control characters aside (a ``market`` to filter by)."""
AMOUNT_MAX = round(numeric_limit(BET) - 0.01, 2)

Id = Annotated[str, Meta(extra_json_schema=ID_SCHEMA)]
Text = Annotated[str, Meta(extra_json_schema={"minLength": 1, "pattern": NOT_BLANK})]
Name = Annotated[str, Meta(extra_json_schema=NAME_SCHEMA)]
Market = Annotated[str, Meta(extra_json_schema=MARKET_SCHEMA)]
Markets = Annotated[list[Market], Meta(extra_json_schema={"maxItems": MAX_MARKETS})]
Timestamp = Annotated[datetime, Meta(extra_json_schema={"format": "date-time", "pattern": RFC3339})]
Day = Annotated[date, Meta(extra_json_schema={"format": "date", "pattern": rf"^[1-9]\d{{3}}-{_MONTH_DAY}$"})]
Amount = Annotated[float, Meta(extra_json_schema={"minimum": 0, "maximum": AMOUNT_MAX})]
Uuid = Annotated[str, Meta(extra_json_schema={
    "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"})]


def one_of(*values: str) -> Meta:
    return Meta(extra_json_schema={"enum": list(values)})


REQUEST_BODIES: dict[str, tuple[tuple[type, ...], str]] = {}
"""Route handler name -> (body types, one of which the body is; description): what ``api/openapi.py``
documents."""


def documented(handler_name: str, description: str, *kinds: type) -> None:
    REQUEST_BODIES[handler_name] = (kinds, description)


def decode(body: bytes, kind: type[T], source: str, *, key: str | None = None) -> T:
    """Decode JSON ``body`` into ``kind`` strictly; see the module docstring for the statuses.

    ``key``: the body is ``{key: [records]}`` (errors name the record's index); without it the body
    is a record or a top-level array of records.
    """
    if kind is object:  # decoded without a type, so nothing stops the recursion but the limit
        _shallow(body)
    try:
        return msgspec.json.decode(body, type=kind, strict=True)
    except msgspec.ValidationError as exc:
        _decodable(body)  # a type error found before a syntax error further on is still a 400
        raise validation_error(exc, key, source) from exc
    except msgspec.DecodeError as exc:
        raise ValidationException(f"the body is not JSON: {exc}") from exc


def _decodable(body: bytes) -> None:
    _shallow(body)
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ValidationException(f"the body is not JSON: {exc}") from exc


def nesting_depth(body: bytes) -> int:
    """How deep ``body``'s arrays and objects nest (``[]`` is 1), brackets inside strings not counted;
    about as long as decoding it (25 ms for 770 kB of events), and only bodies decoded without a type
    or already refused pay it."""
    codes = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    return int(np.cumsum(_STEPS[codes], dtype=np.int32).max(initial=0))


_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[list(b"[{")], _STEPS[list(b"]}")] = 1, -1


def _shallow(body: bytes) -> None:
    """A 400 for a body nested deeper than :data:`MAX_DEPTH`, before an untyped decode recurses into it."""
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise ValidationException(f"the body is nested deeper than {MAX_DEPTH} arrays and objects ({depth})")


def validation_error(exc: msgspec.ValidationError, key: str | None, source: str) -> InputError:
    """``msgspec``'s "Expected `str`, got `int` - at `$.events[3].slot_id`" as an ``InputError``."""
    message = str(exc)
    text = message.split(" - at ", 1)[0]
    at = _AT.search(message)
    named = _NAMED.search(text)  # missing required / unknown field `x`: the path stops at the record
    if at is None:
        return InputError(source, text, field=named["field"] if named else None)
    if at["key"] is not None and at["key"] != key:
        # ``$.field`` of a single record, or a top-level field of the body other than ``key``
        field = at["key"] if at["index"] is None and at["field"] is None else at["field"]
        return InputError(source, text, field=field or (named["field"] if named else None))
    index = int(at["index"]) if at["index"] is not None else None
    field = at["field"] or (named["field"] if named else None)
    return InputError(source, text, index=index, field=field)


async def refuse_control_characters(request: Request) -> None:
    """``before_request``: a path or query parameter holding a control character (a NUL, a newline)
    is a 422 naming it, before any handler or SQL sees it (PostgreSQL refuses NUL in text)."""
    source = f"{request.method} {request.scope.get('path_template', '')}"
    params = [*request.path_params.items(), *request.query_params.items()]
    for name, value in params:
        if isinstance(value, str) and _CONTROL.search(value):
            raise InputError(source, "must not contain control characters", field=name)
