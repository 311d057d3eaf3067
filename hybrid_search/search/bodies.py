"""Query bodies as data: pure functions from user input to engine-neutral requests.

The search stages build every request here: :mod:`.retrieve` each retriever's request (:func:`retriever_request`),
the facet request (:func:`facets_request`) and the ``native`` request (:func:`native_search_request`);
:mod:`.present` the requests that explain a ``native`` score. A :class:`Retriever` is the plan's word for one
retriever that runs (:mod:`.plan` chooses them).

The query text is only ever a *value* inside ``multi_match`` (never ``query_string``), so no user input is
interpreted as query syntax. Filters are plain ``term``/``terms``/``range`` clauses that every retriever gets
unchanged (kNN clauses carry them as a pre-filter, see :mod:`hybrid_search.engine.dialects`).

Facets are aggregations over the same filtered candidate set: :func:`facet_aggs` names them by role,
``category``, ``brand``, ``colour`` and ``price`` (the :data:`PRICE_RANGES` buckets).

Field names come from a :class:`~hybrid_search.catalog.schema.FieldSchema` (every builder takes ``schema``,
default :data:`~hybrid_search.catalog.schema.DEFAULT_SCHEMA`, the own index): BM25 matches its text fields,
filters and facets read its keyword fields, and hits are shown under the same keys (:data:`DISPLAY_ROLES`)
whatever the index calls the fields that fill them.

An attached index (a shop's own: :mod:`hybrid_search.search.profile`) brings its own BM25 clause (``lexical``:
the shop's query for this text, used instead of :func:`bm25_query`), may search its vectors exactly
(:attr:`Retriever.exact`), and its hits carry only their ``_id`` and stored revision (``ids_only``): the page's
display fields are read from ``_source`` once it is ranked, and shown under the shop's id (:func:`hit_display`,
:func:`attached_display`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_search.catalog.attachment import AttachConfig, image_ref, source_value
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ValidationError

# A hit's display fields: key in the hit's ``fields`` -> the role that fills it. The keys are the same on every
# index (the API, the CLI and the page read them); the schema says which engine field holds each role.
DISPLAY_ROLES: dict[str, str] = {
    "id": "id",
    "title": "title",
    "brand": "brand",
    "category_path": "category",
    "colour": "colour",
    "price": "price",
    "currency": "currency",
    "image_url": "image",
}
# What a hit shows when read from doc values, key -> role. Retrieval requests ask for the roles' keyword fields
# with ``stored_fields: _none_``, so the engine never decompresses a hit's stored ``_source`` (which holds every
# vector, far more to read and parse than the doc values of a few display fields). Doc values are what the
# index stores (:data:`hybrid_search.catalog.schema.DEFAULT_SCHEMA` says what that is for the own index), and the
# category is its names one by one (``categories``), not the readable path.
DOCVALUE_ROLES: dict[str, str] = {
    "id": "id",
    "title": "title",
    "brand": "brand",
    "categories": "category",
    "colour": "colour",
    "price": "price",
    "currency": "currency",
    "image_url": "image",
}
MULTI_VALUED_DISPLAY: frozenset[str] = frozenset({"categories", "colour"})
# a hit's stored revision, carried next to its doc-value fields until the page is displayed (never shown)
REVISION_FIELD = "_revision"
Revision = tuple[str, int, int]  # (concrete index, seq_no, primary_term)

# the roles a keyword filter names, each matched exactly on the role's keyword field (the own index's colour and
# material keywords are lowercased by the ``facet`` normalizer, which the engine also applies to the filter value)
KEYWORD_FILTERS: tuple[str, ...] = ("category", "brand", "colour", "material", "size")
# the roles faceted by a terms aggregation, each facet named by its role
FACET_ROLES: tuple[str, ...] = ("category", "brand", "colour")
# price facet buckets: (key, from inclusive, to exclusive); None = unbounded
PRICE_RANGES: tuple[tuple[str, float | None, float | None], ...] = (
    ("under 25", None, 25.0),
    ("25-50", 25.0, 50.0),
    ("50-100", 50.0, 100.0),
    ("100-200", 100.0, 200.0),
    ("200 and up", 200.0, None),
)
FACET_SIZE = 20


def bm25_query(text: str, *, boost: float = 1.0, schema: FieldSchema = DEFAULT_SCHEMA) -> dict[str, Any]:
    """A ``multi_match`` over the schema's text fields (:meth:`~FieldSchema.match_fields`); ``text`` is a plain
    value, never query syntax."""
    fields = list(schema.match_fields())
    body: dict[str, Any] = {"query": text, "fields": fields, "type": "most_fields", "operator": "or"}
    if boost != 1.0:
        body["boost"] = boost
    return {"multi_match": body}


def lexical_query(
    text: str, lexical: Mapping[str, Any] | None, *, boost: float = 1.0, schema: FieldSchema = DEFAULT_SCHEMA
) -> dict[str, Any]:
    """The BM25 clause of ``text``: the index's own ``lexical`` clause when it has one (a shop's query, already
    built for this text; a boost wraps it in a ``bool``), else :func:`bm25_query` over the schema."""
    if lexical is None:
        return bm25_query(text, boost=boost, schema=schema)
    if boost == 1.0:
        return dict(lexical)
    return {"bool": {"must": [dict(lexical)], "boost": boost}}


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
    schema: FieldSchema = DEFAULT_SCHEMA,
) -> list[dict[str, Any]]:
    """The filter clauses (all must hold) for keyword filters, attributes and a price range.

    ``keywords`` maps a :data:`KEYWORD_FILTERS` role to one value or several (any of them matches), matched on
    the role's keyword field; ``attributes`` maps an attribute name to its value(s), matched as ``"name=value"``
    keywords of the schema's ``attributes`` field; ``price_min`` / ``price_max`` are inclusive bounds on the
    price field. Names outside :data:`KEYWORD_FILTERS` raise ``KeyError`` (the query layer validates them
    first); a filter on a field the index does not have is a ``ValidationError``. Clause order follows the
    arguments, keys in their given order.
    """
    clauses: list[dict[str, Any]] = []
    for name, value in (keywords or {}).items():
        if name not in KEYWORD_FILTERS:
            raise KeyError(name)
        clauses.append(_term(schema.filter_field(name), value))
    for name, value in (attributes or {}).items():
        if schema.attributes is None:
            raise ValidationError("this index has no attributes to filter on", field="filters.attributes")
        clauses.append(_term(schema.attributes, [f"{name}={v}" for v in _values(value)]))
    if price_min is not None or price_max is not None:
        bounds: dict[str, float] = {}
        if price_min is not None:
            bounds["gte"] = price_min
        if price_max is not None:
            bounds["lte"] = price_max
        price = schema.keyword_field("price")
        if price is None:
            where = "filters.price_min" if price_min is not None else "filters.price_max"
            raise ValidationError("this index has no price field to filter on", field=where)
        clauses.append({"range": {price: bounds}})
    return clauses


def facet_aggs(size: int = FACET_SIZE, *, schema: FieldSchema = DEFAULT_SCHEMA) -> dict[str, Any]:
    """Terms aggregations on the :data:`FACET_ROLES` and the extra facet fields the index has, and the
    price-range buckets (each facet named by its role, an extra one by its field)."""
    terms = {role: schema.keyword_field(role) for role in FACET_ROLES}
    terms.update({name: name for name in schema.extra_facets})
    aggs: dict[str, Any] = {
        name: {"terms": {"field": field, "size": size}} for name, field in terms.items() if field is not None
    }
    price = schema.keyword_field("price")
    if price is None:
        return aggs
    ranges = []
    for key, low, high in PRICE_RANGES:
        bucket: dict[str, Any] = {"key": key}
        if low is not None:
            bucket["from"] = low
        if high is not None:
            bucket["to"] = high
        ranges.append(bucket)
    aggs["price"] = {"range": {"field": price, "ranges": ranges}}
    return aggs


def facet_names(schema: FieldSchema = DEFAULT_SCHEMA) -> tuple[str, ...]:
    """The terms facets :func:`facet_aggs` asks for, in its order (the price ranges not included)."""
    roles = tuple(role for role in FACET_ROLES if schema.keyword_field(role) is not None)
    return roles + schema.extra_facets


def display_fields(schema: FieldSchema = DEFAULT_SCHEMA) -> list[str]:
    """The ``_source`` fields that hold the :data:`DISPLAY_ROLES` (those the index has), in that order."""
    return [f for role in DISPLAY_ROLES.values() if (f := schema.value_field(role)) is not None]


def display_from_source(
    doc_id: str, source: Mapping[str, Any], schema: FieldSchema = DEFAULT_SCHEMA
) -> dict[str, Any]:
    """A hit's display fields, :data:`DISPLAY_ROLES` keys, from the stored fields of :func:`display_fields`."""
    fields = {
        key: source.get(f) if (f := schema.value_field(role)) is not None else None
        for key, role in DISPLAY_ROLES.items()
    }
    fields["id"] = doc_id
    return fields


def attached_display(doc_id: str, source: Mapping[str, Any], config: AttachConfig) -> dict[str, Any]:
    """A hit's display fields (:data:`DISPLAY_ROLES` keys) from an attached index's ``_source``: each role's
    field read through objects (``a.b``), ``id`` the shop's id (the id role's value, else ``doc_id``, the
    ``_id``), ``image_url`` the photo's path or URL as the attachment's image source locates it."""
    schema = config.schema
    fields: dict[str, Any] = {
        key: source_value(source, f) if (f := schema.value_field(role)) is not None else None
        for key, role in DISPLAY_ROLES.items()
    }
    shop_id = fields["id"]
    if isinstance(shop_id, list):
        shop_id = shop_id[0] if shop_id else None
    fields["id"] = str(shop_id) if shop_id is not None and str(shop_id) else doc_id
    fields["image_url"] = image_ref(source, schema, config.images)
    return fields


def hit_display(
    hit: Mapping[str, Any], schema: FieldSchema = DEFAULT_SCHEMA, attached: AttachConfig | None = None
) -> tuple[str, dict[str, Any]]:
    """``(id the hit is ranked by, its fields)``: :func:`display_from_docvalues` on the own index; on an
    ``attached`` one (hits fetched ``ids_only``) the ``_id``, and the stored revision under
    :data:`REVISION_FIELD` when the hit has one (the page's display fields are read after ranking:
    :func:`attached_display`)."""
    if attached is None:
        return display_from_docvalues(hit, schema)
    revision = hit_revision(hit)
    return str(hit.get("_id")), {} if revision is None else {REVISION_FIELD: revision}


def docvalue_fields(schema: FieldSchema = DEFAULT_SCHEMA) -> list[str]:
    """The keyword fields that hold the :data:`DOCVALUE_ROLES` (those the index has), in that order."""
    return [f for role in DOCVALUE_ROLES.values() if (f := schema.keyword_field(role)) is not None]


def docvalue_options(schema: FieldSchema = DEFAULT_SCHEMA) -> dict[str, Any]:
    """Request options that return :func:`docvalue_fields` and no stored fields (no ``_id``, no ``_source``),
    with each hit's stored revision (``_seq_no``, ``_primary_term``: :func:`hit_revision`)."""
    return {
        "stored_fields": "_none_",
        "docvalue_fields": docvalue_fields(schema),
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


_DOCVALUE_SOURCES: dict[int, tuple[FieldSchema, tuple[tuple[str, str | None, bool], ...]]] = {}


def _docvalue_sources(schema: FieldSchema) -> tuple[tuple[str, str | None, bool], ...]:
    """``(display key, keyword field or None, multi-valued)`` per :data:`DOCVALUE_ROLES` entry.

    Every hit of every retriever list is parsed with it, so it is worked out once per schema object (keyed by
    identity: hashing a schema costs more than the lookups it saves; the entry keeps its schema alive).
    """
    cached = _DOCVALUE_SOURCES.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    sources = tuple(
        (name, schema.keyword_field(role), name in MULTI_VALUED_DISPLAY)
        for name, role in DOCVALUE_ROLES.items()
    )
    if len(_DOCVALUE_SOURCES) < 64:  # a process serves a handful of schemas; never grow without bound
        _DOCVALUE_SOURCES[id(schema)] = (schema, sources)
    return sources


def display_from_docvalues(
    hit: Mapping[str, Any], schema: FieldSchema = DEFAULT_SCHEMA
) -> tuple[str, dict[str, Any]]:
    """``(id, display fields)`` of a hit fetched with :func:`docvalue_options`: :data:`DOCVALUE_ROLES` keys,
    filled from each role's keyword field (id: the id role's field, else ``_id``).

    The fields also carry the hit's stored revision under :data:`REVISION_FIELD` when it has one: the search
    layer uses it to reuse display fields it read before, and removes it before a hit is shown.
    """
    values = hit.get("fields") or {}
    fields: dict[str, Any] = {}
    for name, source, multi in _docvalue_sources(schema):
        found = values.get(source) if source is not None else None
        if multi:
            fields[name] = list(found or [])
        else:
            fields[name] = found[0] if found else None
    doc_id = fields["id"] if fields["id"] is not None else hit.get("_id")
    fields["id"] = doc_id
    revision = hit_revision(hit)
    if revision is not None:
        fields[REVISION_FIELD] = revision
    return str(doc_id), fields


ID_OPTIONS: dict[str, Any] = {
    "seq_no_primary_term": True
}  # ids_only: the _id and the stored revision, no fields


def _display(
    source: bool | Sequence[str] | None, docvalues: bool, schema: FieldSchema, ids_only: bool = False
) -> tuple[bool | list[str], dict[str, Any]]:
    if ids_only:
        return False, dict(ID_OPTIONS)
    if docvalues:
        return False, docvalue_options(schema)
    if source is None:
        return display_fields(schema), {}
    return (source if isinstance(source, bool) else list(source)), {}


def bm25_request(
    text: str,
    *,
    size: int,
    filters: Sequence[Mapping[str, Any]] = (),
    source: bool | Sequence[str] | None = None,
    track_total_hits: bool | int = True,
    docvalues: bool = False,
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
    ids_only: bool = False,
) -> SearchRequest:
    """BM25's top ``size``; ``source`` None: the :func:`display_fields`; ``docvalues``: hits carry
    :func:`docvalue_fields` instead of ``_id``/``_source``; ``ids_only``: hits carry their ``_id`` and stored
    revision only; ``lexical``: the index's own clause (:func:`lexical_query`)."""
    shown, extra = _display(source, docvalues, schema, ids_only)
    return SearchRequest(
        query=lexical_query(text, lexical, schema=schema),
        filter=tuple(filters),
        size=size,
        source=shown,
        track_total_hits=track_total_hits,
        extra=extra,
    )


def knn_clause(
    field: str,
    vector: Sequence[float],
    *,
    k: int,
    boost: float = 1.0,
    exact: bool = False,
    similarity: str | None = None,
) -> KnnClause:
    """``k`` nearest neighbours of ``vector`` on ``field``; ``exact``: every pre-filtered document scored by
    ``similarity`` (the field's), no HNSW graph."""
    values = tuple(float(x) for x in vector)
    if exact:
        return KnnClause(field, values, k=k, boost=boost, exact=True, similarity=similarity or "cosine")
    return KnnClause(field, values, k=k, boost=boost)


def knn_request(
    field: str,
    vector: Sequence[float],
    *,
    size: int,
    filters: Sequence[Mapping[str, Any]] = (),
    source: bool | Sequence[str] | None = None,
    track_total_hits: bool | int = True,
    docvalues: bool = False,
    schema: FieldSchema = DEFAULT_SCHEMA,
    exact: bool = False,
    similarity: str | None = None,
    ids_only: bool = False,
) -> SearchRequest:
    """``size`` nearest neighbours (``k = size``) of ``vector`` among the documents that pass ``filters``
    (``exact``: :func:`knn_clause`; ``ids_only``: :func:`bm25_request`)."""
    shown, extra = _display(source, docvalues, schema, ids_only)
    return SearchRequest(
        knn=(knn_clause(field, vector, k=size, exact=exact, similarity=similarity),),
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
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
) -> SearchRequest:
    """Size 0: the filtered candidate set (BM25 matches or any kNN clause's top ``k``), counted and faceted."""
    return SearchRequest(
        query=lexical_query(text, lexical, schema=schema) if text is not None else None,
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
    source: bool | Sequence[str] | None = None,
    docvalues: bool = False,
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
    ids_only: bool = False,
) -> SearchRequest:
    """One request whose score is the engine's own sum of the boosted BM25 and kNN scores.

    Each kNN clause carries its own boost; ``text=None`` leaves BM25 out; ``ids_only``: :func:`bm25_request`.
    """
    shown, extra = _display(source, docvalues, schema, ids_only)
    return SearchRequest(
        query=lexical_query(text, lexical, boost=bm25_boost, schema=schema) if text is not None else None,
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
    schema: FieldSchema = DEFAULT_SCHEMA,
) -> SearchRequest:
    """BM25 plus one kNN clause (``k = size``) summed by the engine (:func:`native_request` for one field)."""
    clause = knn_clause(field, vector, k=size, boost=knn_boost)
    return native_request(text, (clause,), size=size, bm25_boost=bm25_boost, filters=filters, schema=schema)


@dataclass(frozen=True)
class Retriever:
    """A retriever that runs: its weight and the vector field it searches (None for BM25).

    ``exact``: the field is searched exactly (every pre-filtered document scored by ``similarity``), not
    through an HNSW graph: an attached index without a k-NN setting.
    """

    name: str
    weight: float
    field: str | None
    exact: bool = False
    similarity: str | None = None


def retriever_request(
    retriever: Retriever,
    *,
    text: str | None,
    vector: Sequence[float] | None,
    window: int,
    filters: Sequence[Mapping[str, Any]],
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
    ids_only: bool = False,
) -> SearchRequest:
    """One retriever's top ``window`` hits under ``filters`` (kNN: pre-filtered, ``k = window``).

    Hits carry the display fields from doc values, not ``_source`` (:func:`docvalue_options`); with
    ``ids_only`` (an attached index, whose text fields have no doc values) their ``_id`` and stored revision
    only: the page's fields are read once it is ranked. BM25 is ``lexical`` when the index has its own clause
    (:func:`lexical_query`).
    """
    if retriever.field is None:
        if text is None:
            raise ValidationError("bm25 needs query text", field="text")
        return bm25_request(
            text, size=window, filters=filters, track_total_hits=False, docvalues=not ids_only,
            schema=schema, lexical=lexical, ids_only=ids_only,
        )  # fmt: skip
    if vector is None:
        raise ValidationError(f"{retriever.name} needs a query vector", field="weights")
    return knn_request(
        retriever.field,
        vector,
        size=window,
        filters=filters,
        track_total_hits=False,
        docvalues=not ids_only,
        schema=schema,
        exact=retriever.exact,
        similarity=retriever.similarity,
        ids_only=ids_only,
    )


def knn_clauses(
    retrievers: Sequence[Retriever], vectors: Mapping[str, Sequence[float]], *, k: int, boosted: bool
) -> tuple[KnnClause, ...]:
    """The kNN clauses of ``retrievers`` (BM25 skipped); ``boosted``: each clause's boost is its weight."""
    return tuple(
        knn_clause(
            r.field,
            vectors[r.name],
            k=k,
            boost=r.weight if boosted else 1.0,
            exact=r.exact,
            similarity=r.similarity,
        )
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
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
) -> SearchRequest:
    """Size 0: count and facet the filtered candidate set (BM25 matches or any kNN retriever's top ``window``;
    an exact kNN clause matches every pre-filtered document that has the vector)."""
    use_text = text if any(r.field is None for r in retrievers) else None
    return candidates_request(
        use_text,
        knn_clauses(retrievers, vectors, k=window, boosted=False),
        filters=filters,
        aggs=facet_aggs(schema=schema),
        schema=schema,
        lexical=lexical,
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
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
    ids_only: bool = False,
) -> SearchRequest:
    """``native``: one request, score = the engine's sum of weight * BM25 and weight * kNN (``k = window``);
    ``lexical`` and ``ids_only``: :func:`retriever_request`."""
    bm25 = next((r for r in retrievers if r.field is None), None)
    return native_request(
        text if bm25 is not None else None,
        knn_clauses(retrievers, vectors, k=window, boosted=True),
        size=size,
        from_=(page - 1) * size,
        bm25_boost=bm25.weight if bm25 is not None else 1.0,
        filters=filters,
        aggs=facet_aggs(schema=schema) if facets else None,
        docvalues=not ids_only,
        schema=schema,
        lexical=lexical,
        ids_only=ids_only,
    )


__all__ = [
    "DISPLAY_ROLES",
    "DOCVALUE_ROLES",
    "FACET_ROLES",
    "FACET_SIZE",
    "ID_OPTIONS",
    "KEYWORD_FILTERS",
    "MULTI_VALUED_DISPLAY",
    "PRICE_RANGES",
    "REVISION_FIELD",
    "Retriever",
    "Revision",
    "attached_display",
    "bm25_query",
    "bm25_request",
    "candidates_request",
    "display_fields",
    "display_from_docvalues",
    "display_from_source",
    "docvalue_fields",
    "docvalue_options",
    "facet_aggs",
    "facet_names",
    "facets_request",
    "filter_clauses",
    "hit_display",
    "hit_revision",
    "knn_clause",
    "knn_clauses",
    "knn_request",
    "lexical_query",
    "native_hybrid_request",
    "native_request",
    "native_search_request",
    "retriever_request",
]
