"""Hybrid search: one entry point over BM25 and kNN retrievers, fused client-side or by the engine.

    from hybrid_search.search import Filters, SearchQuery, SearchService, search_encoders

    service = SearchService(settings, engine, search_encoders(settings))
    response = service.search(SearchQuery(text="red long coat", filters=Filters(price_max=100), explain=True))
    response.to_dict()   # hits (id, score, display fields, explain), facets, total, timings

:mod:`.query` validates what is asked, :mod:`.plan` picks the retrievers and builds their requests (pure),
:mod:`.service` encodes, sends one ``_msearch`` and fuses, :mod:`.response` is what comes back.
"""

from hybrid_search.search.plan import SPECS, Retriever, RetrieverSpec
from hybrid_search.search.query import (
    FUSION_METHODS,
    MAX_PAGE_SIZE,
    MAX_RANK_WINDOW,
    RETRIEVERS,
    Filters,
    SearchQuery,
)
from hybrid_search.search.response import SearchHit, SearchResponse
from hybrid_search.search.service import SearchService, apply_search_threads, search_encoders

__all__ = [
    "FUSION_METHODS",
    "MAX_PAGE_SIZE",
    "MAX_RANK_WINDOW",
    "RETRIEVERS",
    "SPECS",
    "Filters",
    "Retriever",
    "RetrieverSpec",
    "SearchHit",
    "SearchQuery",
    "SearchResponse",
    "SearchService",
    "apply_search_threads",
    "search_encoders",
]
