"""What a search returns: :class:`SearchResponse` with :class:`SearchHit` s, facets, the total and timings.

``SearchResponse.to_dict()`` is the JSON shape the CLI prints (``--json``) and the HTTP API returns::

    {"hits": [{"id", "rank", "score", "fields": {...}, "explain": {retriever: {"raw_score", "rank",
               "normalised", "weighted"}} | null}],
     "total": int, "total_relation": "eq" | "gte", "page", "size", "available",
     "fusion": {"method", "normaliser", "rank_constant", "rank_window", "weights": {retriever: w}},
     "retrievers": {retriever: {"field", "weight", "hits", "took_ms"}},
     "facets": {"category" | "brand" | "colour": [{"value", "count"}],
                "price": [{"value", "from", "to", "count"}]} | null,
     "timings": {"encode": {role: ms}, "encode_ms", "engine_ms", "fusion_ms", "total_ms"}}

``fusion`` adds ``learned`` (True when the learned model ranked; the reason when it could not and linear fusion
did), ``adaptive`` (True: the weights are the ones the adaptive model predicted for this query) and
``photo_kind`` (the kind term of photo fusion, whose weight is also listed in ``weights``).

``fields``: with ``search_display = "source"`` the stored ``id``, ``title``, ``brand``, ``category_path``,
``colour``, ``price``, ``currency`` and ``image_url``; with ``"docvalues"`` the same from doc values, with
``categories`` instead of ``category_path`` and colours lowercased. These keys are the same on every index:
the index's :class:`~hybrid_search.catalog.schema.FieldSchema` says which of its fields fills each.
``timings`` may add ``display_ms`` (the ``_mget`` of the page) and ``facets_took_ms``.

``explain`` (when asked for): for linear and RRF fusion, one entry per retriever with a non-empty list, where
``score == math.fsum(e["weighted"] for e in explain.values())`` (see :mod:`hybrid_search.ranking.fusion`); a document
a retriever did not return has ``raw_score`` and ``rank`` null. For ``native`` the engine sums the clauses
itself and does not report the parts, so each retriever is asked again for the page's products: ``raw_score``
is its score (null: it did not score the product; a kNN retriever scores its top ``rank_window``), ``weighted``
its weight times that score, and the parts add up to the engine's score to float32 rounding.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.search.bodies import PRICE_RANGES, facet_names


@dataclass(frozen=True)
class SearchHit:
    """One product of the page: ``rank`` counts from 1 over the whole result, not the page."""

    id: str
    rank: int
    score: float
    fields: dict[str, Any]
    explain: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rank": self.rank,
            "score": self.score,
            "fields": self.fields,
            "explain": self.explain,
        }


@dataclass(frozen=True)
class SearchResponse:
    """The page of hits and what produced it (module docstring for the fields)."""

    hits: list[SearchHit]
    total: int
    total_relation: str
    page: int
    size: int
    available: int
    fusion: dict[str, Any]
    retrievers: dict[str, dict[str, Any]]
    facets: dict[str, list[dict[str, Any]]] | None
    timings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hits": [h.to_dict() for h in self.hits],
            "total": self.total,
            "total_relation": self.total_relation,
            "page": self.page,
            "size": self.size,
            "available": self.available,
            "fusion": self.fusion,
            "retrievers": self.retrievers,
            "facets": self.facets,
            "timings": self.timings,
        }


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a :func:`time.perf_counter` reading), as every timing is reported."""
    return round((time.perf_counter() - start) * 1000.0, 3)


def parse_total(response: Mapping[str, Any]) -> tuple[int, str]:
    """``hits.total`` as ``(value, relation)``; both engines send ``{"value", "relation"}`` or an int."""
    total = response.get("hits", {}).get("total", 0)
    if isinstance(total, Mapping):
        return int(total.get("value", 0)), str(total.get("relation", "eq"))
    return int(total or 0), "eq"


def parse_facets(
    aggregations: Mapping[str, Any] | None, schema: FieldSchema = DEFAULT_SCHEMA
) -> dict[str, list[dict[str, Any]]]:
    """The facet aggregations of :func:`hybrid_search.search.bodies.facet_aggs` as plain lists: one per facet
    the schema's index has (``price`` when it has a price field)."""
    aggregations = aggregations or {}
    facets: dict[str, list[dict[str, Any]]] = {}
    for name in facet_names(schema):
        buckets = aggregations.get(name, {}).get("buckets", [])
        facets[name] = [{"value": b["key"], "count": int(b["doc_count"])} for b in buckets]
    if schema.price is None:
        return facets
    bounds = {key: (low, high) for key, low, high in PRICE_RANGES}
    facets["price"] = [
        {
            "value": b["key"],
            "from": bounds.get(b["key"], (b.get("from"), None))[0],
            "to": bounds.get(b["key"], (None, b.get("to")))[1],
            "count": int(b["doc_count"]),
        }
        for b in aggregations.get("price", {}).get("buckets", [])
    ]
    return facets


__all__ = ["SearchHit", "SearchResponse", "elapsed_ms", "parse_facets", "parse_total"]
