"""The OpenAPI document, completed, and ``/schema`` without any CDN.

Litestar derives paths, parameters and success responses from the handlers. What it cannot see is
added here, on the document it generates: the request body of every endpoint that decodes its body
itself (``api/bodies.py``: every body, for one strict decoder), the bearer security scheme of
guarded endpoints, and every problem response (RFC 9457, ``application/problem+json``) an
operation can give. ``tests/api/test_schemathesis.py`` checks the server against the result.

Parameters get the patterns and lengths the API checks (:data:`PARAMETERS`), bodies theirs from the
Structs' ``Meta`` (``api/bodies.py``), so what the document allows the API takes (issue 22: ST202).
:func:`allow_options` answers ``OPTIONS`` with every method of a path (ST205: Litestar 2.25 lists only
the first handler's when two serve one path).

``/schema`` serves a small HTML page of its own (no script, no stylesheet from elsewhere) listing
the operations and linking the raw document: ``/schema/openapi.json`` and ``/schema/openapi.yaml``.
"""

from __future__ import annotations

import copy
import html
from collections import defaultdict
from typing import Any

import msgspec
from litestar import Request, Response
from litestar import route as route_handler
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.routes import HTTPRoute

from api.bodies import ID_SCHEMA, NAME_SCHEMA, PLAIN_SCHEMA, REQUEST_BODIES

PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details (docs/api.md, Errors).",
    "required": ["status", "title"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string", "description": "the field or parameter that was wrong"},
        "index": {"type": "integer", "description": "0-based position of the record in a JSON array"},
        "row": {"type": "integer", "description": "1-based data row of a file"},
        "errors": {"type": "array", "items": {}},
    },
    "additionalProperties": True,
}
_REF = {"$ref": "#/components/schemas/Problem"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
DESCRIPTIONS = {
    "400": "The body cannot be decoded, or a parameter has the wrong type or range.",
    "401": "No API key, or an unknown or revoked one.",
    "403": "The API key lacks the scope this endpoint needs.",
    "404": "Unknown player, slot, model version or experiment.",
    "409": "The model version cannot be activated (training, failed, or refused by the quality gate), or the "
           "experiment cannot do that (another one runs, it is not running, an arm's version cannot serve).",
    "413": "The body is larger than the server accepts.",
    "422": "A value is wrong: `field` names it, `index` the record of a JSON array.",
    "503": "The database cannot be reached or is busy, or nothing is loaded yet; retry after `Retry-After`.",
}
UNGUARDED = {"/healthz", "/readyz", "/metrics"}
"""Operations that need no database: no 503 from them (``/readyz`` documents its own 503)."""
NOT_FOUND = ("{player_id}", "{slot_id}", "{version}", "{name}")
PARAMETERS = {"player_id": ID_SCHEMA, "slot_id": ID_SCHEMA, "context_slot": PLAIN_SCHEMA, "market": PLAIN_SCHEMA,
              "name": NAME_SCHEMA, "promote": NAME_SCHEMA}
"""Path and query parameters by name: what the API takes of them (no control characters, which are a
422 before any handler: ``api.bodies.refuse_control_characters``)."""


def complete(schema: dict[str, Any], routes) -> dict[str, Any]:
    """``schema`` (Litestar's document as a dict) with bodies, security and problem responses added."""
    schema = copy.deepcopy(schema)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: rsk_<8 hex>_<secret> (docs/api.md)."}
    }
    kinds = [kind for name, (several, _) in REQUEST_BODIES.items() for kind in several]
    refs, definitions = msgspec.json.schema_components(kinds, ref_template="#/components/schemas/{name}")
    schemas.update(definitions)
    of_kind = dict(zip(map(_name, kinds), refs, strict=True))
    body_refs = {}
    for name, (several, _) in REQUEST_BODIES.items():
        options = [of_kind[_name(kind)] for kind in several]
        body_refs[name] = options[0] if len(options) == 1 else {"oneOf": options}
    for route in routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if operation is not None:
                    _complete_operation(operation, route.path_format, handler, body_refs)
    return schema


def _constrain(schema: dict, constraints: dict) -> None:
    """Add ``constraints`` to the string schema, or to the string branch of a ``oneOf``."""
    for branch in schema.get("oneOf", [schema]):
        if branch.get("type") == "string":
            branch.update(constraints)


def allow_options(handlers: list) -> list[HTTPRouteHandler]:
    """An ``OPTIONS`` handler for each path two or more of ``handlers`` serve, whose ``Allow`` lists
    them all; put them before ``handlers``, so Litestar makes none of its own."""
    methods: dict[str, set[str]] = defaultdict(set)
    for handler in handlers:
        if isinstance(handler, HTTPRouteHandler):
            for path in handler.paths:
                methods[path] |= set(handler.http_methods)
    return [_options(path, ", ".join(sorted(served | {"OPTIONS"})))
            for path, served in methods.items() if len(served) > 1]


def _options(path: str, allow: str) -> HTTPRouteHandler:
    def options() -> Response:
        return Response(content=None, status_code=204, headers={"Allow": allow})

    return route_handler(path, http_method=["OPTIONS"], include_in_schema=False, sync_to_thread=False,
                 name=f"options {path}")(options)


def _name(kind) -> str:
    return repr(kind)


def _complete_operation(operation: dict, path: str, handler: HTTPRouteHandler, body_refs: dict) -> None:
    responses = operation.setdefault("responses", {})
    for parameter in operation.get("parameters", []):
        if parameter["name"] in PARAMETERS:
            _constrain(parameter["schema"], PARAMETERS[parameter["name"]])
    statuses = []
    if handler.handler_name in body_refs:
        _, description = REQUEST_BODIES[handler.handler_name]
        operation["requestBody"] = {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": body_refs[handler.handler_name]}},
        }
        statuses += ["400", "413", "422"]
    if operation.get("parameters"):
        statuses += ["400", "422"]
    if handler.guards:
        operation["security"] = [{"bearer": []}]
        statuses += ["401", "403"]
    if any(part in path for part in NOT_FOUND):
        statuses.append("404")
    if path.endswith("/activate") or (path.startswith("/v1/experiments") and "POST" in handler.http_methods):
        statuses.append("409")
    if path not in UNGUARDED and not path.startswith("/schema"):
        statuses.append("503")
    if path == "/readyz":  # its 503 is a Readiness body, like its 200
        responses["503"] = {"description": "Not ready: the database does not answer or nothing is loaded.",
                            "content": copy.deepcopy(responses["200"]["content"])}
    for status in sorted(set(statuses)):
        response = {"description": DESCRIPTIONS[status], "content": {"application/problem+json": {"schema": _REF}}}
        if status == "503":
            response["headers"] = _RETRY_AFTER
        responses[status] = response


class _Completed:
    """Render plugins serve the completed document, built once per application."""

    _done: dict[str, Any] | None = None

    def completed(self, request: Request, openapi_schema: dict[str, Any]) -> dict[str, Any]:
        if self._done is None:
            self._done = complete(openapi_schema, request.app.routes)
        return self._done


class JsonDocument(_Completed, JsonRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, self.completed(request, openapi_schema))


class YamlDocument(_Completed, YamlRenderPlugin):
    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.completed(request, openapi_schema))


class IndexPage(_Completed, OpenAPIRenderPlugin):
    """``/schema``: the operations and links to the raw document; nothing loaded from elsewhere."""

    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        schema = self.completed(request, openapi_schema)
        rows = "".join(
            f"<tr><td>{html.escape(method.upper())}</td><td><code>{html.escape(path)}</code></td>"
            f"<td>{html.escape(operation.get('summary', ''))}</td></tr>"
            for path, item in schema.get("paths", {}).items()
            for method, operation in item.items()
            if isinstance(operation, dict)
        )
        title = html.escape(schema.get("info", {}).get("title", "API"))
        base = html.escape(request.url.path.rstrip("/"))
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{title} API</title></head><body>"
            f"<h1>{title} API</h1><p>The OpenAPI document: <a href='{base}/openapi.json'>openapi.json</a>, "
            f"<a href='{base}/openapi.yaml'>openapi.yaml</a>. Its prose is docs/api.md.</p>"
            f"<table><tr><th>method</th><th>path</th><th>summary</th></tr>{rows}</table></body></html>"
        ).encode()


def render_plugins() -> list[OpenAPIRenderPlugin]:
    return [IndexPage(), JsonDocument(), YamlDocument()]

