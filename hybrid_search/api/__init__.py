"""The HTTP API and the search page (FastAPI): ``create_app(settings)``; ``hybrid-search serve`` runs it.

    POST /search          text search (JSON)                 POST /products    enqueue products (JSON)
    POST /search/image    photo (+ words) search (multipart) GET  /tasks/{id}  ingestion progress
    POST /search/voice    voice search (multipart audio)     GET  /health      engine, Redis, workers, models
    GET  /facets          the catalogue's facets             GET  /            the search page; /docs: OpenAPI

Errors are JSON ``{"error": {"status", "code", "message", "field"}}``; the status of each error class is in one
table, :data:`hybrid_search.api.errors.STATUS`.
"""

from hybrid_search.api.app import create_app
from hybrid_search.api.state import Services, build_services

__all__ = ["Services", "build_services", "create_app"]
