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
from typing import TypeVar

import msgspec
import numpy as np
from litestar import Request
from litestar.exceptions import ValidationException

from recsys.constants import CONTROL_CHARACTERS
from recsys.errors import InputError

T = TypeVar("T")
_AT = re.compile(r" - at `\$(?:\.(?P<key>\w+))?(?:\[(?P<index>\d+)\])?(?:\.(?P<field>\w+))?")
_NAMED = re.compile(r"field `(?P<field>[^`]+)`")

_CONTROL = re.compile(CONTROL_CHARACTERS)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
MAX_DEPTH = 32
"""Arrays and objects a body may nest (docs/api.md): the deepest body the API takes has 3 levels
(a batch, its list, a record) plus a slot's list of markets."""

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
