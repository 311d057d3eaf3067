"""Who may call what: API keys on the endpoints that change or reveal ingestion state, optionally on search,
and CORS for browsers on other origins. Everything here runs before any route reads the request body.

Every request falls in one of three classes (:func:`access_of`):

- ``write``: every method but GET/HEAD/OPTIONS (``POST /products``; a new state-changing endpoint is a write
  unless listed as a search) and ``GET /tasks/{id}`` (ingestion progress and dead letters, which quote products).
  With ``api_keys`` set, a write needs one of them; with none set, writes are accepted from loopback clients
  only (the server logs a warning at start-up) and refused with 403 from any other address.
- ``search``: ``POST /search``, ``/search/image``, ``/search/voice``, ``GET /facets``,
  ``GET /products/{id}/image``. Open unless ``api_auth_search`` is set; then they need a key like writes.
- ``open``: everything else: ``/health``, the page, ``/static``, ``/docs``, ``/openapi.json``.

A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. The server keeps only the SHA-256
digests of its keys and compares the digest of the key given with every one of them by
:func:`secrets.compare_digest` (no early exit, no length leak). A missing or wrong key is 401 with
``WWW-Authenticate``; keys are never logged and never repeated in a response.

CORS: without ``cors_origins`` no response carries CORS headers, so browsers keep their same-origin rule;
with it, only those origins (or ``*``) get them, for GET and POST with the headers above.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import SecretStr

from hybrid_search.api.errors import error_body
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)

Access = Literal["open", "search", "write"]
KEY_HEADER = "X-API-Key"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SEARCH_POSTS = frozenset({"/search", "/search/image", "/search/voice"})
CHALLENGE = 'Bearer realm="hybrid-search"'
CORS_HEADERS = ("Content-Type", KEY_HEADER, "Authorization")


def access_of(method: str, path: str) -> Access:
    """The class of a request (or of an OpenAPI path template): ``open``, ``search`` or ``write``."""
    method = method.upper()
    if method not in SAFE_METHODS:
        return "search" if method == "POST" and path in SEARCH_POSTS else "write"
    if path == "/tasks" or path.startswith("/tasks/"):
        return "write"
    if path == "/facets" or path.startswith("/products/"):
        return "search"
    return "open"


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class KeyRing:
    """The configured API keys, kept as SHA-256 digests only."""

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._digests = tuple(_digest(k.get_secret_value()) for k in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._digests)} keys)"

    def matches(self, given: bytes) -> bool:
        """Whether ``given`` is one of the keys: compared with every key, in constant time each."""
        candidate = _digest(given)
        found = False
        for digest in self._digests:
            found |= secrets.compare_digest(candidate, digest)
        return found


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries: ``X-API-Key``, else ``Authorization: Bearer``; None when it has neither."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip() or None
        if name == b"authorization" and bearer is None:
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                bearer = token.strip()
    return bearer


def is_remote(client: tuple[str, int] | list[Any] | None) -> bool:
    """Whether the peer is a network address other than loopback (a Unix socket or in-process client is not)."""
    if not client:
        return False
    try:
        address = ipaddress.ip_address(str(client[0]))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_loopback


async def _refuse(send: Any, status: int, code: str, message: str, challenge: str | None = None) -> None:
    body = json.dumps(error_body(status, code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]  # fmt: skip
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGuard:
    """ASGI middleware: refuses a request its class does not allow, before the route reads its body."""

    def __init__(self, app: Any, *, keys: Iterable[SecretStr], protect_search: bool) -> None:
        self.app = app
        self.keys = KeyRing(keys)
        self.protect_search = protect_search

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        access = access_of(scope["method"], scope["path"])
        if access == "open" or (access == "search" and not self.protect_search):
            await self.app(scope, receive, send)
            return
        what = f"{scope['method']} {scope['path']}"
        if not self.keys:  # writes without keys: loopback clients only
            if is_remote(scope.get("client")):
                message = (f"{what} is accepted only from this machine while the server has no API keys; "
                           "the operator must set HYBRID_SEARCH_API_KEYS to allow it from elsewhere")  # fmt: skip
                await _refuse(send, 403, "forbidden", message)
                return
            await self.app(scope, receive, send)
            return
        given = presented_key(scope.get("headers") or [])
        if given is None:
            message = (f"{what} needs an API key: send it in the {KEY_HEADER} header "
                       "or as 'Authorization: Bearer <key>'")  # fmt: skip
            await _refuse(send, 401, "unauthorized", message, CHALLENGE)
            return
        if not self.keys.matches(given):
            await _refuse(send, 401, "unauthorized", f"{what}: the API key is not valid",
                          CHALLENGE + ', error="invalid_token"')  # fmt: skip
            return
        await self.app(scope, receive, send)


def _needs_key(settings: Settings, access: Access) -> bool:
    return bool(settings.api_keys) and (
        access == "write" or (access == "search" and settings.api_auth_search)
    )


def _document(app: FastAPI, settings: Settings) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the key schemes and, per operation, whether it needs a key (401) or loopback (403)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        if settings.api_keys:
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
                "Bearer": {"type": "http", "scheme": "bearer"},
            }
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                access = access_of(method, path)
                if _needs_key(settings, access):
                    operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
                    operation.setdefault("responses", {})["401"] = {
                        "description": "Missing or invalid API key.", "content": error}  # fmt: skip
                elif access == "write" and not settings.api_keys:
                    operation.setdefault("responses", {})["403"] = {
                        "description": "No API keys set: accepted from loopback only.", "content": error}  # fmt: skip
        return schema

    return openapi


def install_security(app: FastAPI, settings: Settings) -> None:
    """The key guard and, when origins are set, CORS (outermost, so preflights and refusals get its headers)."""
    if not settings.api_keys:
        log.warning(
            "no API keys are set (HYBRID_SEARCH_API_KEYS): POST /products and GET /tasks/{id} are "
            "unauthenticated and accepted from loopback clients only; set keys before exposing the API"
        )
    app.add_middleware(ApiKeyGuard, keys=settings.api_keys, protect_search=settings.api_auth_search)
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        origins = ["*"] if "*" in settings.cors_origins else list(settings.cors_origins)
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=list(CORS_HEADERS), allow_credentials=False, max_age=600)  # fmt: skip
    app.openapi = _document(app, settings)  # type: ignore[method-assign]


__all__ = [
    "KEY_HEADER",
    "ApiKeyGuard",
    "KeyRing",
    "access_of",
    "install_security",
    "is_remote",
    "presented_key",
]
