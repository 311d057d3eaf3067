"""Query bodies as data: pure functions from user input to engine-neutral requests.

The query text is only ever a *value* inside ``multi_match`` (never ``query_string``), so no user input is
interpreted as query syntax.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_search.engine.request import KnnClause, SearchRequest

BM25_FIELDS: tuple[str, ...] = (
    "title^3",
    "title.cjk^2",
    "brand^2",
    "category_path^1.5",
    "colour^1.5",
    "material",
    "attributes_text",
    "description",
    "description.cjk",
)
DISPLAY_FIELDS: tuple[str, ...] = (
    "id",
    "title",
    "brand",
    "category_path",
    "colour",
    "price",
    "currency",
    "image_url",
)


def bm25_query(text: str, fields: Sequence[str] = BM25_FIELDS) -> dict[str, Any]:
    """A ``multi_match`` over the product text fields; ``text`` is a plain value, never query syntax."""
    return {"multi_match": {"query": text, "fields": list(fields), "type": "most_fields", "operator": "or"}}


def bm25_request(text: str, *, size: int, filters: Sequence[Mapping[str, Any]] = ()) -> SearchRequest:
    return SearchRequest(
        query=bm25_query(text), filter=tuple(filters), size=size, source=list(DISPLAY_FIELDS)
    )


def knn_request(
    field: str, vector: Sequence[float], *, size: int, filters: Sequence[Mapping[str, Any]] = ()
) -> SearchRequest:
    clause = KnnClause(field, tuple(float(x) for x in vector), k=size)
    return SearchRequest(knn=(clause,), filter=tuple(filters), size=size, source=list(DISPLAY_FIELDS))


def native_hybrid_request(
    text: str,
    field: str,
    vector: Sequence[float],
    *,
    size: int,
    bm25_boost: float = 1.0,
    knn_boost: float = 1.0,
    filters: Sequence[Mapping[str, Any]] = (),
) -> SearchRequest:
    """One request whose score is the engine's own sum of boosted BM25 and kNN scores."""
    query = bm25_query(text)
    if bm25_boost != 1.0:
        query["multi_match"]["boost"] = bm25_boost
    clause = KnnClause(field, tuple(float(x) for x in vector), k=size, boost=knn_boost)
    return SearchRequest(
        query=query, knn=(clause,), filter=tuple(filters), size=size, source=list(DISPLAY_FIELDS)
    )


__all__ = [
    "BM25_FIELDS",
    "DISPLAY_FIELDS",
    "bm25_query",
    "bm25_request",
    "knn_request",
    "native_hybrid_request",
]
