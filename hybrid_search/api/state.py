"""What the endpoints use: :class:`Services`, built once per process, and the dependency that hands it to them.

    services = build_services(settings)   # engine client, search service and encoders, speech model, Celery, Redis
    def endpoint(services: ServicesDep) -> ...: ...   # FastAPI passes the process's Services

The application's lifespan (:func:`hybrid_search.api.app.create_app`) builds the :class:`Services` and keeps
it on ``app.state.services``; :func:`get_services` reads it back for each request. Importing this module
creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings

if TYPE_CHECKING:
    from hybrid_search.engine import SearchEngine
    from hybrid_search.search import SearchService


@dataclass
class Services:
    """Everything the routes use; built once per process by the lifespan."""

    settings: Settings
    engine: SearchEngine
    search: SearchService
    transcriber: Any = None  # hybrid_search.voice.Transcriber or Ensemble, None when voice is off
    vocabulary: Any = None  # hybrid_search.voice.VocabularyCache
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
    from hybrid_search.ingest.queue import make_celery
    from hybrid_search.ingest.tracking import Tracker, connect
    from hybrid_search.search import SearchService, apply_search_threads

    apply_search_threads(settings)  # torch threads for query encoding: once, before any model runs
    search = SearchService.from_settings(settings)
    engine = search.engine
    services = Services(
        settings=settings,
        engine=engine,
        search=search,
        celery=make_celery(settings),
        tracker=Tracker(connect(settings.redis_url)),
    )
    if settings.voice_enabled:
        try:
            from hybrid_search.voice import VocabularyCache, recogniser

            services.transcriber = recogniser(settings)
            services.vocabulary = VocabularyCache(engine, words=settings.voice_vocabulary_words)
        except ImportError as exc:  # pragma: no cover - numpy ships with the workers extra
            services.problems["speech model"] = f"voice search needs the voice extra ({exc})"
    if settings.api_preload_models:
        _warm(services)
    return services


async def get_services(request: Request) -> Services:
    """The :class:`Services` the lifespan built (a dependency: async, so no thread is taken to read it)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

__all__ = ["Services", "ServicesDep", "build_services", "get_services"]
