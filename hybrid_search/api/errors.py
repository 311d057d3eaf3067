"""The one table from errors to HTTP status codes, and the JSON every error response carries.

Every error response, whatever raised it (our error tree, FastAPI's request validation, Starlette's 404/405,
the size limit), has one shape a user or a program can read::

    {"error": {"status": 422, "code": "invalid_input", "message": "empty query: give search text, ...",
               "field": "text"}}

:data:`STATUS` is the table: the first row whose class the error is an instance of decides, so subclasses come
before their bases. Only the user's input, refused by our own checks before any engine call, is a 4xx. A request
the engine refuses (:class:`~hybrid_search.errors.EngineRequestError`) was built by this server, so it is a 502
``engine_error``: the engine's type and reason go to the log, the client gets a message that does not blame its
input. An error outside the tree is a bug: 500 with a generic message (the details go to the log, never to the
client).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid_search.errors import (
    ConfigurationError,
    EncoderError,
    EncoderMismatchError,
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    HybridSearchError,
    IndexNotFoundError,
    ValidationError,
)
from hybrid_search.ingest.tracking import QueueUnavailableError

log = logging.getLogger(__name__)


class NotFoundError(HybridSearchError):
    """The resource the URL names does not exist (a task id, a product photo); ``field`` names the input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.field))


class PayloadTooLargeError(ValidationError):
    """A request body or upload is larger than the limit."""


class UnsupportedMediaError(ValidationError):
    """A request body or upload is not of a type the endpoint accepts."""


class UnavailableError(HybridSearchError):
    """A part the request needs is switched off or not ready (voice disabled, models not loaded)."""


# (error class, HTTP status, code): the first match wins, so subclasses come first
STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (PayloadTooLargeError, 413, "too_large"),
    (UnsupportedMediaError, 415, "unsupported_media_type"),
    (ValidationError, 422, "invalid_input"),
    (NotFoundError, 404, "not_found"),
    (IndexNotFoundError, 503, "no_index"),
    (EngineUnavailableError, 503, "engine_unavailable"),
    (EngineAuthError, 502, "engine_auth"),
    (EngineRequestError, 502, "engine_error"),
    (EngineError, 502, "engine_error"),
    (QueueUnavailableError, 503, "queue_unavailable"),
    (UnavailableError, 503, "unavailable"),
    (EncoderError, 503, "model_unavailable"),
    (EncoderMismatchError, 409, "encoder_mismatch"),
    (ConfigurationError, 500, "configuration"),
    (HybridSearchError, 500, "error"),
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
               415: "unsupported_media_type"}  # fmt: skip


def status_of(exc: BaseException) -> tuple[int, str]:
    """``(status, code)`` of an error from the table; (500, "internal") for anything outside it."""
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal"


def error_body(status: int, code: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message, "field": field}}


def error_response(exc: BaseException) -> JSONResponse:
    status, code = status_of(exc)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc)
    message = str(exc) if isinstance(exc, HybridSearchError) else "internal error; see the server log"
    if isinstance(exc, IndexNotFoundError):
        message = f"no products are indexed yet ({exc}); ingest a catalogue first"
    elif isinstance(exc, EngineRequestError):  # the engine's reason can quote our request: the log has it
        kind = f" ({exc.error_type})" if exc.error_type else ""
        message = (
            f"the search engine refused a request this server built{kind}: a server-side fault, not a problem "
            "with the input; the server log has the engine's reason"
        )
    field = getattr(exc, "field", None)
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(error_body(status, code, message, field), status_code=status, headers=headers)


_TYPE_TAGS = re.compile(r"^(str|int|float|bool|list\[.*\]|dict\[.*\]|[a-z-]+\[.*\])$")


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "filters", "colour", "str")`` -> ``"filters.colour"`` (no places, no union member tags)."""
    parts = [str(p) for p in loc[1:] if not _TYPE_TAGS.match(str(p))] if loc else []
    if loc and loc[0] not in ("body", "query", "path", "form", "header"):
        parts.insert(0, str(loc[0]))
    parts = [p for p in parts if not p.isdigit() or len(parts) > 1]
    return ".".join(parts) or "body"


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    first = exc.errors()[0] if exc.errors() else {}
    where = _location(first.get("loc", ()))
    kind = str(first.get("type", ""))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if kind == "missing":
        message = f"{where} is required"
    elif kind == "extra_forbidden":
        message = f"unknown field {where!r}"
    elif kind == "json_invalid":
        message = "the request body is not valid JSON"
    elif kind == "string_unicode":
        message = f"{where}: not valid Unicode text (it holds a lone surrogate such as \\ud800)"
    elif kind == "model_attributes_type" or kind == "dict_type":
        message = f"{where}: expected a JSON object"
    else:
        message = f"{where}: {message}"
    return message, where


def _body_problem(exc: StarletteHTTPException) -> str | None:
    """Why a JSON body could not be parsed, when FastAPI's generic 400 hides it (its ``__cause__``).

    ``json.loads`` raises ``JSONDecodeError`` (handled as ``json_invalid``) for syntax errors, but
    ``UnicodeDecodeError`` for a body that is not UTF-8, ``RecursionError`` for arrays nested 100,000 deep and
    ``ValueError`` for a 5,000-digit number: FastAPI turns those into "There was an error parsing the body".
    """
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, ValueError | RecursionError):
        return None
    if isinstance(cause, RecursionError):
        reason = "nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        reason = f"not UTF-8 (byte {cause.start})"
    else:
        reason = str(cause)[:200]
    return f"the request body is not valid JSON: {reason}"


def install_error_handlers(app: FastAPI) -> None:
    """Route every error to :func:`error_response` / the common JSON shape."""

    async def hybrid(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    async def validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, where = _validation_message(exc)
        return JSONResponse(error_body(422, "invalid_input", message, where), status_code=422)

    async def http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        unparsable = _body_problem(exc)
        if unparsable is not None:
            return JSONResponse(error_body(422, "invalid_input", unparsable, "body"), status_code=422)
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(exc.status_code, code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(exc)

    app.add_exception_handler(HybridSearchError, hybrid)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)


__all__ = [
    "STATUS",
    "NotFoundError",
    "PayloadTooLargeError",
    "UnavailableError",
    "UnsupportedMediaError",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_of",
]
