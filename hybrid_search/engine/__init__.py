"""The one place that talks to the search engine.

from hybrid_search.engine import create_engine
engine = create_engine(settings)      # OpenSearchEngine or ElasticsearchEngine
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybrid_search.engine.base import (
    BulkResult,
    ClusterHealth,
    ConditionalResult,
    ConditionalUpdate,
    IndexState,
    SearchEngine,
    VersionedDoc,
)
from hybrid_search.engine.definition import (
    EncoderRef,
    HnswParams,
    IndexDefinition,
    VectorField,
    load_definition,
)
from hybrid_search.engine.request import KnnClause, SearchRequest

if TYPE_CHECKING:
    from hybrid_search.settings import Settings


def create_engine(settings: Settings) -> SearchEngine:
    """The adapter for the configured engine (no request is sent until first use)."""
    kwargs = {
        "username": settings.engine_username,
        "password": settings.engine_password.get_secret_value() if settings.engine_password else None,
        "api_key": settings.engine_api_key.get_secret_value() if settings.engine_api_key else None,
        "ca_certs": str(settings.engine_ca_certs) if settings.engine_ca_certs else None,
        "verify_certs": settings.engine_verify_certs,
        "timeout_s": settings.engine_timeout_s,
        "max_retries": settings.engine_max_retries,
    }
    if settings.engine == "elasticsearch":
        from hybrid_search.engine.elasticsearch import ElasticsearchEngine

        return ElasticsearchEngine(settings.engine_url, **kwargs)  # type: ignore[arg-type]
    from hybrid_search.engine.opensearch import OpenSearchEngine

    return OpenSearchEngine(settings.engine_url, **kwargs)  # type: ignore[arg-type]


def definition_from_settings(
    settings: Settings, encoders: dict[str, tuple[EncoderRef, int]]
) -> IndexDefinition:
    """The products index definition with the settings' shards, replicas and HNSW parameters."""
    return load_definition(
        encoders,
        mappings_dir=settings.mappings_dir,
        shards=settings.index_shards,
        replicas=settings.index_replicas,
        hnsw=HnswParams(m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction),
    )


__all__ = [
    "BulkResult",
    "ClusterHealth",
    "ConditionalResult",
    "ConditionalUpdate",
    "EncoderRef",
    "HnswParams",
    "IndexDefinition",
    "IndexState",
    "KnnClause",
    "SearchEngine",
    "SearchRequest",
    "VectorField",
    "VersionedDoc",
    "create_engine",
    "definition_from_settings",
    "load_definition",
]
