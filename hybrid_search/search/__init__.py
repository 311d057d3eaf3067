"""Hybrid search: one entry point over BM25 and kNN retrievers, fused client-side or by the engine.

    from hybrid_search.search import Filters, SearchQuery, SearchService

    service = SearchService.from_settings(settings)
    response = service.search(SearchQuery(text="red long coat", filters=Filters(price_max=100), explain=True))
    response.to_dict()   # hits (id, score, display fields, explain), facets, total, timings

A search is a pipeline of named stages. Each is a module with one job that takes the previous stage's value
and returns its own; :meth:`SearchService.search` runs them top to bottom and a query passes each once::

    SearchQuery                          what was typed, validated when built (.query)
      -> understand  -> StructuredQuery  every parameter resolved: query, tuned configuration, settings (.understand)
      -> plan        -> Plan             the retrievers, the encoder roles, the ranking configuration (.plan)
      -> encode      -> QueryVectors     one vector per kNN retriever, each encoder run once (.encode)
      -> retrieve    -> Retrieved        one _msearch (native: one search) through hybrid_search.engine (.retrieve)
      -> rank        -> Ranking          the one Ranker the configuration picks (hybrid_search.ranking.rankers)
      -> present     -> SearchResponse   the page, explain, display fields, facets, totals (.present)

Request bodies are data built by :mod:`.bodies` over the field names of the index's
:class:`~hybrid_search.catalog.schema.FieldSchema` (``SearchService(schema=...)``, carried by the
``StructuredQuery``); display fields read once per product revision are kept by :mod:`.display`;
:mod:`.response` is what comes back; :mod:`.console` renders it for the CLI.
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
