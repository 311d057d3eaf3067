"""The FastAPI application: :func:`create_app` builds it; every client and model is made in its lifespan.

    from hybrid_search.api import create_app
    app = create_app(settings)            # nothing is loaded or connected yet
    uvicorn.run(app, host=..., port=...)  # start-up: engine client, encoders (warmed), speech model, Celery, Redis

Importing this module creates nothing. :class:`Services` is what the lifespan builds and the routes use
(``request.app.state.services``); a test or an embedding application may pass its own ``services`` factory.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from hybrid_search.api.errors import error_body, install_error_handlers
from hybrid_search.api.limits import BodySizeLimit
from hybrid_search.api.security import install_security
from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, get_settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"

# POST path -> the content type its body must have (checked before any body is parsed)
BODY_TYPES = {
    "/search": "application/json",
    "/products": "application/json",
    "/search/image": "multipart/form-data",
    "/search/voice": "multipart/form-data",
}


@dataclass
class Services:
    """Everything the routes use; built once per process by the lifespan."""

    settings: Settings
    engine: Any  # hybrid_search.engine.SearchEngine
    search: Any  # hybrid_search.search.SearchService
    transcriber: Any = None  # hybrid_search.voice.recognition.Transcriber or Ensemble, None when voice is off
    vocabulary: Any = None  # hybrid_search.voice.recognition.VocabularyCache
    celery: Any = None
    tracker: Any = None  # hybrid_search.ingest.tracking.Tracker
    problems: dict[str, str] = field(default_factory=dict)  # component -> why it is not ready

    def close(self) -> None:
        if self.celery is not None:
            self.celery.close()
        if self.tracker is not None:
            self.tracker.redis.close()
        self.engine.close()


def _warm(services: Services) -> None:
    """Load every model now (the first query should not pay for it); failures are kept for /health."""
    from PIL import Image

    photo = Image.new("RGB", (64, 64), (200, 30, 30))
    for role, encoder in services.search.encoders.items():
        try:
            encoder.embed_query(photo if encoder.modality == "image" else "warm up")
        except HybridSearchError as exc:
            services.problems[f"encoder {role}"] = str(exc)
    if services.transcriber is not None:
        try:
            services.transcriber.load()
        except HybridSearchError as exc:
            services.problems["speech model"] = str(exc)


def build_services(settings: Settings) -> Services:
    """The engine adapter, the search service and its encoders, the speech model, Celery and Redis clients."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.queue import make_celery
    from hybrid_search.ingest.tracking import Tracker, connect
    from hybrid_search.search import SearchService, apply_search_threads, search_encoders

    apply_search_threads(settings)  # torch threads for query encoding: once, before any model runs
    engine = create_engine(settings)
    services = Services(
        settings=settings,
        engine=engine,
        search=SearchService(settings, engine, search_encoders(settings)),
        celery=make_celery(settings),
        tracker=Tracker(connect(settings.redis_url)),
    )
    if settings.voice_enabled:
        try:
            from hybrid_search.voice.recognition import VocabularyCache, recogniser

            services.transcriber = recogniser(settings)
            services.vocabulary = VocabularyCache(engine, words=settings.voice_vocabulary_words)
        except ImportError as exc:  # pragma: no cover - numpy ships with the workers extra
            services.problems["speech model"] = f"voice search needs the voice extra ({exc})"
    if settings.api_preload_models:
        _warm(services)
    return services


def create_app(
    settings: Settings | None = None, *, services: Callable[[Settings], Services] | None = None
) -> FastAPI:
    """The application. ``services`` builds what the routes use (default :func:`build_services`), at start-up."""
    from hybrid_search.api.routes import router

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
        expected = BODY_TYPES.get(request.url.path) if request.method == "POST" else None
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
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


__all__ = ["BODY_TYPES", "Services", "build_services", "create_app"]
