"""How each engine spells the requests: pure functions from neutral data to request bodies.

Everything that differs between Elasticsearch 8/9 and OpenSearch 2/3 (k-NN plugin) in what we send lives here,
so each can be unit-tested as plain dicts:

| | Elasticsearch | OpenSearch |
|---|---|---|
| index settings | — | ``index.knn: true`` |
| vector field | ``dense_vector`` (``dims``, ``similarity``, ``index_options.type: hnsw``) | ``knn_vector`` (``dimension``, ``method``: hnsw / **lucene** engine) |
| kNN | top-level ``knn`` list (``query_vector``, ``k``, ``num_candidates``, ``filter``, ``boost``) | ``knn`` query clause (``vector``, ``k``, ``filter``, ``boost``) |

Several vectors per document (every photo of a product): a vector field named ``<object>.<field>`` is rendered
inside a ``nested`` object; Elasticsearch's ``knn`` takes the dotted field as it is, OpenSearch wraps its ``knn``
clause in a ``nested`` query with ``score_mode: max``. Both return ``k`` documents, each scored by its best nested
vector, and both apply a filter on top-level fields as a pre-filter.

OpenSearch vector fields always use the Lucene HNSW engine: the FAISS and NMSLIB engines need native libraries
that a Maven-assembled node does not have, and fail at the first flush. :func:`opensearch_index_body` guarantees
it and a unit test pins it.
"""

from __future__ import annotations

import copy
from typing import Any

from hybrid_search.engine.definition import IndexDefinition, VectorField, nested_path
from hybrid_search.engine.request import KnnClause, SearchRequest

OPENSEARCH_SPACE = {"cosine": "cosinesimil", "dot_product": "innerproduct", "l2": "l2"}
ELASTICSEARCH_SIMILARITY = {"cosine": "cosine", "dot_product": "dot_product", "l2": "l2_norm"}


def _base_settings(definition: IndexDefinition) -> dict[str, Any]:
    return {
        "number_of_shards": definition.shards,
        "number_of_replicas": definition.replicas,
        "analysis": copy.deepcopy(dict(definition.analysis)),
    }


def _mappings(definition: IndexDefinition, vector_props: dict[str, Any]) -> dict[str, Any]:
    properties = copy.deepcopy(dict(definition.properties))
    for name, prop in vector_props.items():
        path = nested_path(name)
        if path is None:
            properties[name] = prop
        else:  # photos.image_vector -> a nested object "photos" holding "image_vector"
            nested = properties.setdefault(path, {"type": "nested", "properties": {}})
            nested["properties"][name[len(path) + 1 :]] = prop
    return {"dynamic": definition.dynamic, "_meta": definition.meta(), "properties": properties}


# --- OpenSearch ------------------------------------------------------------------------------------------


def opensearch_vector_field(vector: VectorField, definition: IndexDefinition) -> dict[str, Any]:
    return {
        "type": "knn_vector",
        "dimension": vector.dim,
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": OPENSEARCH_SPACE[vector.similarity],
            "parameters": {"m": definition.hnsw.m, "ef_construction": definition.hnsw.ef_construction},
        },
    }


def opensearch_index_body(definition: IndexDefinition) -> dict[str, Any]:
    settings = _base_settings(definition)
    settings["knn"] = True
    vectors = {v.name: opensearch_vector_field(v, definition) for v in definition.vectors}
    return {"settings": {"index": settings}, "mappings": _mappings(definition, vectors)}


def opensearch_knn_clause(clause: KnnClause, filters: list[dict[str, Any]]) -> dict[str, Any]:
    # The Lucene engine searches with `k` as its beam and returns `k` neighbours per shard; OpenSearch has no
    # separate candidate pool for it (method_parameters.ef_search raises the number of hits as well), so
    # `num_candidates` is not sent: ask for a larger `k` for more recall.
    body: dict[str, Any] = {"vector": list(clause.vector), "k": clause.k}
    if filters:
        body["filter"] = filters[0] if len(filters) == 1 else {"bool": {"filter": filters}}
    path = nested_path(clause.field)
    if path is None:
        if clause.boost != 1.0:
            body["boost"] = clause.boost
        return {"knn": {clause.field: body}}
    # a nested vector field: the knn query runs on the nested objects, k counts documents (Lucene diversifies
    # by parent), the filter on top-level fields still pre-filters, and a document scores its best object
    nested: dict[str, Any] = {"path": path, "score_mode": "max", "query": {"knn": {clause.field: body}}}
    if clause.boost != 1.0:
        nested["boost"] = clause.boost
    return {"nested": nested}


def opensearch_search_body(request: SearchRequest) -> dict[str, Any]:
    filters = [dict(f) for f in request.filter]
    knn = [opensearch_knn_clause(c, filters) for c in request.knn]
    should: list[dict[str, Any]] = []
    if request.query is not None:
        should.append(copy.deepcopy(dict(request.query)))
    should.extend(knn)
    query: dict[str, Any]
    if not should:
        query = {"bool": {"filter": filters}} if filters else {"match_all": {}}
    elif len(should) == 1 and not filters:
        query = should[0]
    elif len(should) == 1 and request.query is None:
        query = should[0]  # the kNN clause carries the filter itself (Lucene efficient filtering)
    else:
        query = {"bool": {"should": should, "minimum_should_match": 1}}
        if filters:
            query["bool"]["filter"] = filters
    return _common(request, {"query": query})


# --- Elasticsearch ---------------------------------------------------------------------------------------


def elasticsearch_vector_field(vector: VectorField, definition: IndexDefinition) -> dict[str, Any]:
    return {
        "type": "dense_vector",
        "dims": vector.dim,
        "index": True,
        "similarity": ELASTICSEARCH_SIMILARITY[vector.similarity],
        "index_options": {
            "type": "hnsw",
            "m": definition.hnsw.m,
            "ef_construction": definition.hnsw.ef_construction,
        },
    }


def elasticsearch_index_body(definition: IndexDefinition) -> dict[str, Any]:
    vectors = {v.name: elasticsearch_vector_field(v, definition) for v in definition.vectors}
    return {"settings": {"index": _base_settings(definition)}, "mappings": _mappings(definition, vectors)}


def elasticsearch_knn_option(clause: KnnClause, filters: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "field": clause.field,
        "query_vector": list(clause.vector),
        "k": clause.k,
        "num_candidates": clause.candidates,
    }
    if filters:
        body["filter"] = filters[0] if len(filters) == 1 else {"bool": {"filter": filters}}
    if clause.boost != 1.0:
        body["boost"] = clause.boost
    return body


def elasticsearch_search_body(request: SearchRequest) -> dict[str, Any]:
    filters = [dict(f) for f in request.filter]
    body: dict[str, Any] = {}
    if request.query is not None:
        query: dict[str, Any] = copy.deepcopy(dict(request.query))
        body["query"] = {"bool": {"must": [query], "filter": filters}} if filters else query
    elif not request.knn:
        body["query"] = {"bool": {"filter": filters}} if filters else {"match_all": {}}
    if request.knn:
        body["knn"] = [elasticsearch_knn_option(c, filters) for c in request.knn]
    return _common(request, body)


# --- shared ----------------------------------------------------------------------------------------------


def _common(request: SearchRequest, body: dict[str, Any]) -> dict[str, Any]:
    body["size"] = request.size
    if request.from_:
        body["from"] = request.from_
    if request.aggs:
        body["aggs"] = copy.deepcopy(dict(request.aggs))
    body["_source"] = request.source if isinstance(request.source, bool) else list(request.source)
    body["track_total_hits"] = request.track_total_hits
    for key, value in request.extra.items():
        body[key] = copy.deepcopy(value)
    return body


def swap_alias_actions(alias: str, current: list[str], target: str) -> dict[str, Any]:
    """One atomic ``_aliases`` body: the alias leaves every index it points to and points at ``target``."""
    actions: list[dict[str, Any]] = [
        {"remove": {"index": name, "alias": alias}} for name in current if name != target
    ]
    actions.append({"add": {"index": target, "alias": alias, "is_write_index": True}})
    return {"actions": actions}


__all__ = [
    "elasticsearch_index_body",
    "elasticsearch_knn_option",
    "elasticsearch_search_body",
    "elasticsearch_vector_field",
    "opensearch_index_body",
    "opensearch_knn_clause",
    "opensearch_search_body",
    "opensearch_vector_field",
    "swap_alias_actions",
]
