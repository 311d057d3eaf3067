"""How each engine spells the requests: pure functions from neutral data to request bodies.

Everything that differs between Elasticsearch 8/9 and OpenSearch 2/3 (k-NN plugin) in what we send lives here,
so each can be unit-tested as plain dicts:

| | Elasticsearch | OpenSearch |
|---|---|---|
| index settings | — | ``index.knn: true`` |
| vector field | ``dense_vector`` (``dims``, ``similarity``, ``index_options.type: hnsw``) | ``knn_vector`` (``dimension``, ``method``: hnsw / **lucene** engine) |
| kNN | top-level ``knn`` list (``query_vector``, ``k``, ``num_candidates``, ``filter``, ``boost``) | ``knn`` query clause (``vector``, ``k``, ``filter``, ``boost``) |
| exact kNN | ``script_score`` with painless ``cosineSimilarity``/``dotProduct``/``l2norm`` | ``script_score`` with the k-NN ``knn_score`` script (``lang: knn``) |

Exact kNN (``KnnClause.exact``) scores every document that passes the filters and has the field (its
``script_score`` query is the filters plus ``exists``: a document without the vector would otherwise score 0 and
come back). Measured on OpenSearch 2.19.1, ``knn_score`` scores cosinesimil as ``(1 + cos) / 2`` (1.0, 0.8, 0.5
for cos 1, 0.6, 0), the same scale as the Lucene HNSW ``knn`` query, on a field with or without an HNSW graph;
innerproduct ``1 + dot`` for ``dot >= 0``; l2 ``1 / (1 + d²)``. The Elasticsearch scripts are written to give
the ``knn`` option's scale (cosine ``(1 + cos) / 2``, dot_product ``(1 + dot) / 2``, l2 ``1 / (1 + d²)``);
they need painless, which the local Elasticsearch node lacks.

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

from hybrid_search.engine.definition import HnswParams, IndexDefinition, VectorField, nested_path
from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ConfigurationError

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


def _check_vector(dim: int, similarity: str, spaces: dict[str, str]) -> str:
    if not 1 <= dim <= 4096:
        raise ConfigurationError(f"vector dimension {dim} is outside 1..4096")
    if similarity not in spaces:
        raise ConfigurationError(f"vector similarity {similarity!r} is not one of {', '.join(spaces)}")
    return spaces[similarity]


def opensearch_vector_mapping(
    dim: int, similarity: str, *, approximate: bool, hnsw: HnswParams | None = None
) -> dict[str, Any]:
    """A ``knn_vector`` field: with the Lucene HNSW ``method`` when ``approximate`` (the index needs
    ``index.knn: true``), else the bare field that an index without ``index.knn`` accepts (exact scoring only)."""
    space = _check_vector(dim, similarity, OPENSEARCH_SPACE)
    if not approximate:
        return {"type": "knn_vector", "dimension": dim}
    params = hnsw or HnswParams()
    return {
        "type": "knn_vector",
        "dimension": dim,
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": space,
            "parameters": {"m": params.m, "ef_construction": params.ef_construction},
        },
    }


def opensearch_vector_field(vector: VectorField, definition: IndexDefinition) -> dict[str, Any]:
    return opensearch_vector_mapping(vector.dim, vector.similarity, approximate=True, hnsw=definition.hnsw)


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


def _exact_filter(clause: KnnClause, filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"bool": {"filter": [*copy.deepcopy(filters), {"exists": {"field": clause.field}}]}}


def opensearch_exact_knn(clause: KnnClause, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact kNN: ``script_score`` with the k-NN plugin's ``knn_score`` script over the filtered documents
    that have the field (works with or without ``index.knn`` and an HNSW graph)."""
    script_score: dict[str, Any] = {
        "query": _exact_filter(clause, filters),
        "script": {
            "source": "knn_score",
            "lang": "knn",
            "params": {
                "field": clause.field,
                "query_value": list(clause.vector),
                "space_type": OPENSEARCH_SPACE[clause.similarity],
            },
        },
    }
    if clause.boost != 1.0:
        script_score["boost"] = clause.boost
    return {"script_score": script_score}


def opensearch_search_body(request: SearchRequest) -> dict[str, Any]:
    filters = [dict(f) for f in request.filter]
    knn = [
        opensearch_exact_knn(c, filters) if c.exact else opensearch_knn_clause(c, filters)
        for c in request.knn
    ]
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


def elasticsearch_vector_mapping(
    dim: int, similarity: str, *, hnsw: HnswParams | None = None
) -> dict[str, Any]:
    """A ``dense_vector`` field, indexed with float HNSW (addable to any existing index)."""
    params = hnsw or HnswParams()
    return {
        "type": "dense_vector",
        "dims": dim,
        "index": True,
        "similarity": _check_vector(dim, similarity, ELASTICSEARCH_SIMILARITY),
        "index_options": {"type": "hnsw", "m": params.m, "ef_construction": params.ef_construction},
    }


def elasticsearch_vector_field(vector: VectorField, definition: IndexDefinition) -> dict[str, Any]:
    return elasticsearch_vector_mapping(vector.dim, vector.similarity, hnsw=definition.hnsw)


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


ELASTICSEARCH_EXACT = {  # painless, on the scale of the knn option's score for that similarity
    "cosine": "(cosineSimilarity(params.query_vector, params.field) + 1.0) / 2.0",
    "dot_product": "(dotProduct(params.query_vector, params.field) + 1.0) / 2.0",
    "l2": "1.0 / (1.0 + Math.pow(l2norm(params.query_vector, params.field), 2))",
}


def elasticsearch_exact_knn(clause: KnnClause, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact kNN: a painless ``script_score`` over the filtered documents that have the field."""
    script_score: dict[str, Any] = {
        "query": _exact_filter(clause, filters),
        "script": {
            "source": ELASTICSEARCH_EXACT[clause.similarity],
            "params": {"query_vector": list(clause.vector), "field": clause.field},
        },
    }
    if clause.boost != 1.0:
        script_score["boost"] = clause.boost
    return {"script_score": script_score}


def elasticsearch_search_body(request: SearchRequest) -> dict[str, Any]:
    filters = [dict(f) for f in request.filter]
    exact = [elasticsearch_exact_knn(c, filters) for c in request.knn if c.exact]
    approximate = [c for c in request.knn if not c.exact]
    if exact:
        return _elasticsearch_with_exact(request, filters, exact, approximate)
    body: dict[str, Any] = {}
    if request.query is not None:
        query: dict[str, Any] = copy.deepcopy(dict(request.query))
        body["query"] = {"bool": {"must": [query], "filter": filters}} if filters else query
    elif not request.knn:
        body["query"] = {"bool": {"filter": filters}} if filters else {"match_all": {}}
    if request.knn:
        body["knn"] = [elasticsearch_knn_option(c, filters) for c in request.knn]
    return _common(request, body)


def _elasticsearch_with_exact(
    request: SearchRequest,
    filters: list[dict[str, Any]],
    exact: list[dict[str, Any]],
    approximate: list[KnnClause],
) -> dict[str, Any]:
    should = [copy.deepcopy(dict(request.query))] if request.query is not None else []
    should.extend(exact)
    query: dict[str, Any]
    if len(should) == 1 and request.query is None:
        query = should[0]  # the script_score query carries the filters
    else:
        query = {"bool": {"should": should, "minimum_should_match": 1}}
        if filters:
            query["bool"]["filter"] = filters
    body: dict[str, Any] = {"query": query}
    if approximate:
        body["knn"] = [elasticsearch_knn_option(c, filters) for c in approximate]
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
    "elasticsearch_exact_knn",
    "elasticsearch_index_body",
    "elasticsearch_knn_option",
    "elasticsearch_search_body",
    "elasticsearch_vector_field",
    "elasticsearch_vector_mapping",
    "opensearch_exact_knn",
    "opensearch_index_body",
    "opensearch_knn_clause",
    "opensearch_search_body",
    "opensearch_vector_field",
    "opensearch_vector_mapping",
    "swap_alias_actions",
]
