"""Every error becomes an RFC 9457 problem details response, here and only here.

Domain errors carry their data; this module decides their status and wording. Litestar's own HTTP
errors (bad query parameters, malformed JSON, unknown routes, 401/403) get the same shape, and an
unexpected error is a bare 500 whose details stay in the log.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from recsys.db.apikeys import ApiKeyError
from recsys.db.engine import DatabaseUnavailable
from recsys.db.experiments import ExperimentError
from recsys.db.versions import VersionError
from recsys.errors import InputError, NotFound, NotReady
from recsys.logs import escape

log = logging.getLogger(__name__)

TYPE_BASE = "https://recsys.dev/problems/"
"""Problem types are documented in docs/api.md under these names."""


def not_found(exc: NotFound) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=404,
        type_=TYPE_BASE + "not-found",
        title=f"Unknown {exc.entity}",
        detail=str(exc),
        extra={exc.entity.replace(" ", "_"): exc.identifier},
    )


def invalid_input(exc: InputError) -> ProblemDetailsException:
    pairs = (("row", exc.row), ("index", exc.index), ("field", exc.field))
    extra = {key: value for key, value in pairs if value is not None}
    return ProblemDetailsException(
        status_code=422, type_=TYPE_BASE + "invalid-input", title="Invalid input", detail=str(exc), extra=extra
    )


def _conflict(kind: str, exc: Exception, key: str, value: object) -> ProblemDetailsException:
    """409: the named ``kind`` (``model version``, ``experiment``) cannot do what was asked now."""
    return ProblemDetailsException(
        status_code=409,
        type_=TYPE_BASE + f"{kind.split()[-1]}-conflict",
        title=f"The {kind} cannot do that",
        detail=str(exc),
        extra={key: value},
    )


def version_conflict(exc: VersionError) -> ProblemDetailsException:
    return _conflict("model version", exc, "version", exc.version_id)


def experiment_conflict(exc: ExperimentError) -> ProblemDetailsException:
    return _conflict("experiment", exc, "experiment", exc.name)


def api_key_error(exc: ApiKeyError) -> ProblemDetailsException:
    return ProblemDetailsException(status_code=422, type_=TYPE_BASE + "invalid-input", title="Invalid input",
                                   detail=str(exc))


def not_ready(exc: NotReady) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=503, type_=TYPE_BASE + "not-ready", title="Not ready", detail=str(exc),
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


RETRY_AFTER_SECONDS = 5


def database_unavailable(exc: DatabaseUnavailable) -> ProblemDetailsException:
    log.warning("answering 503: %s", exc.reason)
    return ProblemDetailsException(
        status_code=503,
        type_=TYPE_BASE + "database-unavailable",
        title="Service unavailable",
        detail="the database cannot be reached or is busy; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def http_error(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors. A validation error lists what was wrong under ``errors``."""
    extra: dict | None = None
    detail = exc.detail
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else []
        extra = {"errors": errors}
        detail = "; ".join(_describe(e) for e in errors) or exc.detail
    return ProblemDetailsException(
        status_code=exc.status_code,
        title=_TITLES.get(exc.status_code, "Error"),
        detail=detail,
        extra=extra,
        headers=exc.headers,
    )


def _describe(error) -> str:
    if not isinstance(error, dict):
        return str(error)
    source = error.get("source", "request")
    source = getattr(source, "value", source)  # Litestar's ParamType enum
    where = f"{source} {error['key']!r}: " if error.get("key") else ""
    return where + str(error.get("message", ""))


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error in %s %s", request.method, escape(request.url.path), exc_info=exc)
    return ProblemDetailsException(
        status_code=HTTP_500_INTERNAL_SERVER_ERROR, title=_TITLES[500], detail="see the server log"
    ).to_response(request)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={
                NotFound: not_found,
                InputError: invalid_input,
                VersionError: version_conflict,
                ExperimentError: experiment_conflict,
                ApiKeyError: api_key_error,
                NotReady: not_ready,
                DatabaseUnavailable: database_unavailable,
                HTTPException: http_error,
            }
        )
    )


EXCEPTION_HANDLERS = {HTTP_500_INTERNAL_SERVER_ERROR: internal_error}
