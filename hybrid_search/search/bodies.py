"""Query bodies as data: pure functions from user input to engine-neutral requests.

The search stages build every request here: :mod:`.retrieve` each retriever's request (:func:`retriever_request`),
the facet request (:func:`facets_request`) and the ``native`` request (:func:`native_search_request`);
:mod:`.present` the requests that explain a ``native`` score. A :class:`Retriever` is the plan's word for one
retriever that runs (:mod:`.plan` chooses them).

The query text is only ever a *value* inside ``multi_match`` (never ``query_string``), so no user input is
interpreted as query syntax. Filters are plain ``term``/``terms``/``range`` clauses that every retriever gets
unchanged (kNN clauses carry them as a pre-filter, see :mod:`hybrid_search.engine.dialects`).

Facets are aggregations over the same filtered candidate set: :func:`facet_aggs` names them
``category`` (``categories``), ``brand`` (``brand.keyword``), ``colour`` (``colour.keyword``) and ``price``
(the :data:`PRICE_RANGES` buckets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ValidationError

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

# What a hit shows, read from doc values: display name -> field. Retrieval requests ask for these with
# ``stored_fields: _none_``, so the engine never decompresses a hit's stored ``_source`` (which holds every
# vector, far more to read and parse than the doc values of a few display fields).
# Keyword doc values are what the index stores: colour lowercased by the ``facet`` normalizer, categories
# sorted and deduplicated, titles only up to the ``title.raw`` limit (512 characters).
DISPLAY_DOCVALUES: dict[str, str] = {
    "id": "id",
    "title": "title.raw",
    "brand": "brand.keyword",
    "categories": "categories",
    "colour": "colour.keyword",
    "price": "price",
    "currency": "currency",
    "image_url": "image_url",
}
MULTI_VALUED_DISPLAY: frozenset[str] = frozenset({"categories", "colour"})
# a hit's stored revision, carried next to its doc-value fields until the page is displayed (never shown)
REVISION_FIELD = "_revision"
Revision = tuple[str, int, int]  # (concrete index, seq_no, primary_term)

# filter name -> keyword field it matches exactly (the colour and material keywords are lowercased by the
# ``facet`` normalizer, which the engine also applies to the filter value)
KEYWORD_FILTERS: dict[str, str] = {
    "category": "categories",
    "brand": "brand.keyword",
    "colour": "colour.keyword",
    "material": "material.keyword",
    "size": "sizes",
}
ATTRIBUTES_FIELD = "attributes"
PRICE_FIELD = "price"

# facet name -> keyword field of a terms aggregation
FACET_FIELDS: dict[str, str] = {
    "category": "categories",
    "brand": "brand.keyword",
    "colour": "colour.keyword",
}
# price facet buckets: (key, from inclusive, to exclusive); None = unbounded
PRICE_RANGES: tuple[tuple[str, float | None, float | None], ...] = (
    ("under 25", None, 25.0),
    ("25-50", 25.0, 50.0),
    ("50-100", 50.0, 100.0),
    ("100-200", 100.0, 200.0),
    ("200 and up", 200.0, None),
)
FACET_SIZE = 20


def bm25_query(text: str, fields: Sequence[str] = BM25_FIELDS, *, boost: float = 1.0) -> dict[str, Any]:
    """A ``multi_match`` over the product text fields; ``text`` is a plain value, never query syntax."""
    body: dict[str, Any] = {"query": text, "fields": list(fields), "type": "most_fields", "operator": "or"}
    if boost != 1.0:
        body["boost"] = boost
    return {"multi_match": body}


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _term(field: str, value: str | Sequence[str]) -> dict[str, Any]:
    values = _values(value)
    return {"term": {field: values[0]}} if len(values) == 1 else {"terms": {field: values}}


def filter_clauses(
    *,
    keywords: Mapping[str, str | Sequence[str]] | None = None,
    attributes: Mapping[str, str | Sequence[str]] | None = None,
    price_min: float | None = None,
    price_max: float | None = None,
) -> list[dict[str, Any]]:
    """The filter clauses (all must hold) for keyword filters, attributes and a price range.

    ``keywords`` maps a :data:`KEYWORD_FILTERS` name to one value or several (any of them matches);
    ``attributes`` maps an attribute name to its value(s), matched as ``"name=value"`` keywords;
    ``price_min`` / ``price_max`` are inclusive bounds. Names outside :data:`KEYWORD_FILTERS` raise ``KeyError``
    (the query layer validates them first). Clause order follows the arguments, keys in their given order.
    """
    clauses: list[dict[str, Any]] = []
    for name, value in (keywords or {}).items():
        clauses.append(_term(KEYWORD_FILTERS[name], value))
    for name, value in (attributes or {}).items():
        clauses.append(_term(ATTRIBUTES_FIELD, [f"{name}={v}" for v in _values(value)]))
    if price_min is not None or price_max is not None:
        bounds: dict[str, float] = {}
        if price_min is not None:
            bounds["gte"] = price_min
        if price_max is not None:
            bounds["lte"] = price_max
        clauses.append({"range": {PRICE_FIELD: bounds}})
    return clauses


def facet_aggs(size: int = FACET_SIZE) -> dict[str, Any]:
    """Terms aggregations on category, brand and colour, and the price-range buckets."""
    aggs: dict[str, Any] = {
        name: {"terms": {"field": field, "size": size}} for name, field in FACET_FIELDS.items()
    }
    ranges = []
    for key, low, high in PRICE_RANGES:
        bucket: dict[str, Any] = {"key": key}
        if low is not None:
            bucket["from"] = low
        if high is not None:
            bucket["to"] = high
        ranges.append(bucket)
    aggs["price"] = {"range": {"field": PRICE_FIELD, "ranges": ranges}}
    return aggs


def docvalue_options() -> dict[str, Any]:
    """Request options that return :data:`DISPLAY_DOCVALUES` and no stored fields (no ``_id``, no ``_source``),
    with each hit's stored revision (``_seq_no``, ``_primary_term``: :func:`hit_revision`)."""
    return {
        "stored_fields": "_none_",
        "docvalue_fields": list(DISPLAY_DOCVALUES.values()),
        "seq_no_primary_term": True,
    }


def hit_revision(hit: Mapping[str, Any]) -> Revision | None:
    """``(index, seq_no, primary_term)`` of a hit: one stored version of the document (every write to it gives
    a new ``_seq_no``); None when the hit does not carry them."""
    index, seq_no, term = hit.get("_index"), hit.get("_seq_no"), hit.get("_primary_term")
    if not isinstance(index, str) or not isinstance(seq_no, int) or not isinstance(term, int):
        return None
    if isinstance(seq_no, bool) or seq_no < 0 or term < 1:  # unassigned (-2) or unknown: no stable revision
        return None
    return index, seq_no, term


def display_from_docvalues(hit: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(id, display fields)`` of a hit fetched with :func:`docvalue_options` (id: the ``id`` field, else ``_id``).

    The fields also carry the hit's stored revision under :data:`REVISION_FIELD` when it has one: the search
    layer uses it to reuse display fields it read before, and removes it before a hit is shown.
    """
    values = hit.get("fields") or {}
    fields: dict[str, Any] = {}
    for name, source in DISPLAY_DOCVALUES.items():
        found = values.get(source)
        if name in MULTI_VALUED_DISPLAY:
            fields[name] = list(found or [])
        else:
            fields[name] = found[0] if found else None
    doc_id = fields["id"] if fields["id"] is not None else hit.get("_id")
    fields["id"] = doc_id
    revision = hit_revision(hit)
    if revision is not None:
        fields[REVISION_FIELD] = revision
    return str(doc_id), fields


def _display(source: bool | Sequence[str], docvalues: bool) -> tuple[bool | list[str], dict[str, Any]]:
    if docvalues:
        return False, docvalue_options()
    return (source if isinstance(source, bool) else list(source)), {}


def bm25_request(
    text: str,
    *,
    size: int,
    filters: Sequence[Mapping[str, Any]] = (),
    source: bool | Sequence[str] = DISPLAY_FIELDS,
    track_total_hits: bool | int = True,
    docvalues: bool = False,
) -> SearchRequest:
    """BM25's top ``size``; ``docvalues``: hits carry :data:`DISPLAY_DOCVALUES` instead of ``_id``/``_source``."""
    shown, extra = _display(source, docvalues)
    return SearchRequest(
        query=bm25_query(text),
        filter=tuple(filters),
        size=size,
        source=shown,
        track_total_hits=track_total_hits,
        extra=extra,
    )


def knn_clause(field: str, vector: Sequence[float], *, k: int, boost: float = 1.0) -> KnnClause:
    return KnnClause(field, tuple(float(x) for x in vector), k=k, boost=boost)


def knn_request(
    field: str,
    vector: Sequence[float],
    *,
    size: int,
    filters: Sequence[Mapping[str, Any]] = (),
    source: bool | Sequence[str] = DISPLAY_FIELDS,
    track_total_hits: bool | int = True,
    docvalues: bool = False,
) -> SearchRequest:
    """``size`` nearest neighbours (``k = size``) of ``vector`` among the documents that pass ``filters``."""
    shown, extra = _display(source, docvalues)
    return SearchRequest(
        knn=(knn_clause(field, vector, k=size),),
        filter=tuple(filters),
        size=size,
        source=shown,
        track_total_hits=track_total_hits,
        extra=extra,
    )


def candidates_request(
    text: str | None,
    knn: Sequence[KnnClause],
    *,
    filters: Sequence[Mapping[str, Any]] = (),
    aggs: Mapping[str, Any] | None = None,
) -> SearchRequest:
    """Size 0: the filtered candidate set (BM25 matches or any kNN clause's top ``k``), counted and faceted."""
    return SearchRequest(
        query=bm25_query(text) if text is not None else None,
        knn=tuple(knn),
        filter=tuple(filters),
        size=0,
        aggs=aggs,
        source=False,
        track_total_hits=True,
    )


def native_request(
    text: str | None,
    knn: Sequence[KnnClause],
    *,
    size: int,
    from_: int = 0,
    bm25_boost: float = 1.0,
    filters: Sequence[Mapping[str, Any]] = (),
    aggs: Mapping[str, Any] | None = None,
    source: bool | Sequence[str] = DISPLAY_FIELDS,
    docvalues: bool = False,
) -> SearchRequest:
    """One request whose score is the engine's own sum of the boosted BM25 and kNN scores.

    Each kNN clause carries its own boost; ``text=None`` leaves BM25 out.
    """
    shown, extra = _display(source, docvalues)
    return SearchRequest(
        query=bm25_query(text, boost=bm25_boost) if text is not None else None,
        knn=tuple(knn),
        filter=tuple(filters),
        size=size,
        from_=from_,
        aggs=aggs,
        source=shown,
        track_total_hits=True,
        extra=extra,
    )


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
    """BM25 plus one kNN clause (``k = size``) summed by the engine (:func:`native_request` for one field)."""
    clause = knn_clause(field, vector, k=size, boost=knn_boost)
    return native_request(text, (clause,), size=size, bm25_boost=bm25_boost, filters=filters)


@dataclass(frozen=True)
class Retriever:
    """A retriever that runs: its weight and the vector field it searches (None for BM25)."""

    name: str
    weight: float
    field: str | None


def retriever_request(
    retriever: Retriever,
    *,
    text: str | None,
    vector: Sequence[float] | None,
    window: int,
    filters: Sequence[Mapping[str, Any]],
) -> SearchRequest:
    """One retriever's top ``window`` hits under ``filters`` (kNN: pre-filtered, ``k = window``).

    Hits carry the display fields from doc values, not ``_source`` (:func:`docvalue_options`).
    """
    if retriever.field is None:
        if text is None:
            raise ValidationError("bm25 needs query text", field="text")
        return bm25_request(text, size=window, filters=filters, track_total_hits=False, docvalues=True)
    if vector is None:
        raise ValidationError(f"{retriever.name} needs a query vector", field="weights")
    return knn_request(
        retriever.field, vector, size=window, filters=filters, track_total_hits=False, docvalues=True
    )


def knn_clauses(
    retrievers: Sequence[Retriever], vectors: Mapping[str, Sequence[float]], *, k: int, boosted: bool
) -> tuple[KnnClause, ...]:
    """The kNN clauses of ``retrievers`` (BM25 skipped); ``boosted``: each clause's boost is its weight."""
    return tuple(
        knn_clause(r.field, vectors[r.name], k=k, boost=r.weight if boosted else 1.0)
        for r in retrievers
        if r.field is not None
    )


def facets_request(
    retrievers: Sequence[Retriever],
    *,
    text: str | None,
    vectors: Mapping[str, Sequence[float]],
    window: int,
    filters: Sequence[Mapping[str, Any]],
) -> SearchRequest:
    """Size 0: count and facet the filtered candidate set (BM25 matches or any kNN retriever's top ``window``)."""
    use_text = text if any(r.field is None for r in retrievers) else None
    return candidates_request(
        use_text,
        knn_clauses(retrievers, vectors, k=window, boosted=False),
        filters=filters,
        aggs=facet_aggs(),
    )


def native_search_request(
    retrievers: Sequence[Retriever],
    *,
    text: str | None,
    vectors: Mapping[str, Sequence[float]],
    window: int,
    page: int,
    size: int,
    filters: Sequence[Mapping[str, Any]],
    facets: bool,
) -> SearchRequest:
    """``native``: one request, score = the engine's sum of weight * BM25 and weight * kNN (``k = window``)."""
    bm25 = next((r for r in retrievers if r.field is None), None)
    return native_request(
        text if bm25 is not None else None,
        knn_clauses(retrievers, vectors, k=window, boosted=True),
        size=size,
        from_=(page - 1) * size,
        bm25_boost=bm25.weight if bm25 is not None else 1.0,
        filters=filters,
        aggs=facet_aggs() if facets else None,
        docvalues=True,
    )


__all__ = [
    "ATTRIBUTES_FIELD",
    "BM25_FIELDS",
    "DISPLAY_DOCVALUES",
    "DISPLAY_FIELDS",
    "FACET_FIELDS",
    "FACET_SIZE",
    "KEYWORD_FILTERS",
    "MULTI_VALUED_DISPLAY",
    "PRICE_FIELD",
    "PRICE_RANGES",
    "REVISION_FIELD",
    "Retriever",
    "Revision",
    "bm25_query",
    "bm25_request",
    "candidates_request",
    "display_from_docvalues",
    "docvalue_options",
    "facet_aggs",
    "facets_request",
    "filter_clauses",
    "hit_revision",
    "knn_clause",
    "knn_clauses",
    "knn_request",
    "native_hybrid_request",
    "native_request",
    "native_search_request",
    "retriever_request",
]
