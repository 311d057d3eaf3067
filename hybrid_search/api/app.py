"""The FastAPI application: :func:`create_app` builds it; every client and model is made in its lifespan.

    from hybrid_search.api import create_app
    app = create_app(settings)            # nothing is loaded or connected yet
    uvicorn.run(app, host=..., port=...)  # start-up: engine client, encoders (warmed), speech model, Celery, Redis

Importing this module creates nothing. :class:`~hybrid_search.api.state.Services` is what the lifespan builds
and the routes use (:mod:`hybrid_search.api.state`); a test or an embedding application may pass its own
``services`` factory.

The modules of the API import one way: ``app`` (this factory) -> ``routes`` (the endpoints) -> ``ingest`` and
``state`` (what the endpoints use) -> ``errors``, ``schemas``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from hybrid_search.api.attached import CHANGED_PATH
from hybrid_search.api.attached import router as attached_router
from hybrid_search.api.errors import error_body, install_error_handlers
from hybrid_search.api.limits import BodySizeLimit
from hybrid_search.api.routes import STATIC, router
from hybrid_search.api.security import install_security
from hybrid_search.api.state import Services, build_services
from hybrid_search.settings import Settings, get_settings

# POST path -> the content type its body must have (checked before any body is parsed)
BODY_TYPES = {
    "/search": "application/json",
    "/products": "application/json",
    "/search/image": "multipart/form-data",
    "/search/voice": "multipart/form-data",
    CHANGED_PATH: "application/json",
}


def body_type(path: str) -> str | None:
    """The content type a POST to ``path`` must have: :data:`BODY_TYPES`, whose keys may hold ``{param}``
    segments (one path segment each)."""
    if path in BODY_TYPES:
        return BODY_TYPES[path]
    parts = path.split("/")
    for template, kind in BODY_TYPES.items():
        pattern = template.split("/")
        if "{" not in template or len(pattern) != len(parts):
            continue
        if all(
            p == q or (p.startswith("{") and p.endswith("}") and q)
            for p, q in zip(pattern, parts, strict=True)
        ):
            return kind
    return None


def create_app(
    settings: Settings | None = None, *, services: Callable[[Settings], Services] | None = None
) -> FastAPI:
    """The application. ``services`` builds what the routes use (default :func:`build_services`), at start-up."""
    resolved = settings or get_settings()
    factory = services or build_services

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = factory(resolved)
        app.state.services = built
        try:
            yield
        finally:
            built.close()

    app = FastAPI(
        title="hybrid-search",
        version="0.1.0",
        summary="Multimodal hybrid product search: text, photo and voice queries over BM25 + kNN.",
        lifespan=lifespan,
    )
    app.state.settings = resolved
    install_error_handlers(app)

    @app.middleware("http")
    async def content_type(request: Any, call_next: Any) -> Any:
        expected = body_type(request.url.path) if request.method == "POST" else None
        if expected is not None:
            given = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if given != expected:
                what = "a JSON body" if expected == "application/json" else "a multipart form (file upload)"
                message = f"{request.url.path} takes {what} ({expected}), not {given or 'no content type'}"
                return JSONResponse(error_body(415, "unsupported_media_type", message), status_code=415)
        return await call_next(request)

    app.add_middleware(BodySizeLimit, max_bytes=resolved.api_max_request_bytes)
    install_security(app, resolved)  # outside the size limit: key checks and CORS come first
    app.include_router(router)
    app.include_router(attached_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


__all__ = ["BODY_TYPES", "body_type", "create_app"]
