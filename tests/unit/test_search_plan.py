"""Which retrievers run, and the request bodies they send, pinned as plain dicts for both engines."""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_search.engine.dialects import elasticsearch_search_body, opensearch_search_body
from hybrid_search.errors import ValidationError
from hybrid_search.search.bodies import (
    Retriever,
    facet_aggs,
    facets_request,
    native_search_request,
    retriever_request,
)
from hybrid_search.search.plan import choose_retrievers

pytestmark = pytest.mark.unit

DEFAULTS = {
    "bm25": 0.5,
    "text_knn": 0.5,
    "image_knn": 0.5,
    "colour_knn": 0.5,
    "fused_knn": 0.5,
    "text_to_image": 0.5,
    "image_to_text": 0.5,
}
ENCODERS = ["text", "image", "colour"]
FIELDS = {"text": "text_vector", "image": "image_vector", "colour": "colour_vector", "fused": "fused_vector"}
FILTERS = [{"term": {"categories": "Jackets"}}, {"range": {"price": {"lte": 80.0}}}]
# retrieval reads doc values only: no _id, no stored _source (which holds the vectors)
DOCVALUES = {
    "_source": False,
    "stored_fields": "_none_",
    "docvalue_fields": [
        "id",
        "title.raw",
        "brand.keyword",
        "categories",
        "colour.keyword",
        "price",
        "currency",
        "image_url",
    ],
    "seq_no_primary_term": True,  # each hit's stored revision, for the display cache
}
BM25_FIELDS = [
    "title^3", "title.cjk^2", "brand^2", "category_path^1.5", "colour^1.5", "material", "attributes_text",
    "description", "description.cjk",
]  # fmt: skip
MULTI_MATCH = {
    "multi_match": {"query": "red coat", "fields": BM25_FIELDS, "type": "most_fields", "operator": "or"}
}


def names(**kwargs: Any) -> list[str]:
    options: dict[str, Any] = {"defaults": DEFAULTS, "weights": None, "encoders": ENCODERS, "fields": FIELDS}
    options.update(kwargs)
    return [r.name for r in choose_retrievers(**options)]


def refused(**kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        names(**kwargs)
    assert info.value.field in ("weights", "image")
    return str(info.value)


def test_retrievers_follow_the_query_inputs() -> None:
    assert names(has_text=True, has_image=False) == ["bm25", "text_knn"]
    assert names(has_text=False, has_image=True) == ["image_knn", "colour_knn"]
    assert names(has_text=True, has_image=True) == [
        "bm25",
        "text_knn",
        "image_knn",
        "colour_knn",
        "fused_knn",
    ]


def test_cross_modal_retrievers_only_with_clip_towers() -> None:
    clip = [*ENCODERS, "image_text", "text_image"]
    assert names(has_text=True, has_image=False, encoders=clip) == ["bm25", "text_knn", "text_to_image"]
    assert names(has_text=False, has_image=True, encoders=clip) == [
        "image_knn",
        "colour_knn",
        "image_to_text",
    ]
    message = refused(has_text=True, has_image=False, weights={"text_to_image": 1.0})
    assert "text_to_image cannot run" in message and "CLIP" in message


def test_weight_zero_turns_a_retriever_off_and_weights_override_defaults() -> None:
    chosen = choose_retrievers(
        has_text=True, has_image=False, defaults=DEFAULTS, weights={"bm25": 0.0, "text_knn": 2.0},
        encoders=ENCODERS, fields=FIELDS,
    )  # fmt: skip
    assert chosen == [Retriever("text_knn", 2.0, "text_vector")]


def test_a_retriever_asked_for_without_its_input_is_refused() -> None:
    assert "needs a query image" in refused(has_text=True, has_image=False, weights={"image_knn": 1.0})
    assert "needs a query text and image" in refused(has_text=True, has_image=False, weights={"fused_knn": 1})
    # weight 0 for an inapplicable retriever is harmless
    assert names(has_text=True, has_image=False, weights={"image_knn": 0.0}) == ["bm25", "text_knn"]


def test_missing_vector_fields_skip_defaults_but_refuse_explicit_weights() -> None:
    text_only = {"text": "text_vector"}
    assert names(has_text=True, has_image=False, fields=text_only) == ["bm25", "text_knn"]
    assert "no image vector field" in refused(
        has_text=False, has_image=True, fields=text_only, weights={"image_knn": 1}
    )
    assert "no retriever can answer" in refused(has_text=False, has_image=True, fields=text_only)


def test_all_zero_weights_of_the_applicable_retrievers_are_refused() -> None:
    assert "all weights" in refused(has_text=True, has_image=False, weights={"bm25": 0, "text_knn": 0})


# ---- request bodies -----------------------------------------------------------------------------------


def test_bm25_retriever_body() -> None:
    request = retriever_request(
        Retriever("bm25", 0.5, None), text="red coat", vector=None, window=100, filters=FILTERS
    )
    expected = {
        "query": {"bool": {"should": [MULTI_MATCH], "minimum_should_match": 1, "filter": FILTERS}},
        "size": 100,
        "track_total_hits": False,
        **DOCVALUES,
    }
    assert opensearch_search_body(request) == expected
    assert elasticsearch_search_body(request) == {
        "query": {"bool": {"must": [MULTI_MATCH], "filter": FILTERS}},
        "size": 100,
        "track_total_hits": False,
        **DOCVALUES,
    }


def test_knn_retriever_body_carries_the_filter_as_a_pre_filter() -> None:
    request = retriever_request(
        Retriever("text_knn", 0.5, "text_vector"),
        text="red coat",
        vector=[0.6, 0.8],
        window=40,
        filters=FILTERS,
    )
    prefilter = {"bool": {"filter": FILTERS}}
    assert opensearch_search_body(request) == {
        "query": {"knn": {"text_vector": {"vector": [0.6, 0.8], "k": 40, "filter": prefilter}}},
        "size": 40,
        "track_total_hits": False,
        **DOCVALUES,
    }
    assert elasticsearch_search_body(request) == {
        "knn": [
            {
                "field": "text_vector",
                "query_vector": [0.6, 0.8],
                "k": 40,
                "num_candidates": 100,
                "filter": prefilter,
            }
        ],
        "size": 40,
        "track_total_hits": False,
        **DOCVALUES,
    }


RETRIEVERS = [
    Retriever("bm25", 0.7, None),
    Retriever("text_knn", 0.3, "text_vector"),
    Retriever("image_knn", 0.2, "image_vector"),
]
VECTORS = {"text_knn": [1.0, 0.0], "image_knn": [0.0, 1.0]}


def test_facets_request_counts_and_facets_the_filtered_candidate_set() -> None:
    request = facets_request(RETRIEVERS, text="red coat", vectors=VECTORS, window=50, filters=FILTERS)
    prefilter = {"bool": {"filter": FILTERS}}
    assert opensearch_search_body(request) == {
        "query": {
            "bool": {
                "should": [
                    MULTI_MATCH,
                    {"knn": {"text_vector": {"vector": [1.0, 0.0], "k": 50, "filter": prefilter}}},
                    {"knn": {"image_vector": {"vector": [0.0, 1.0], "k": 50, "filter": prefilter}}},
                ],
                "minimum_should_match": 1,
                "filter": FILTERS,
            }
        },
        "size": 0,
        "aggs": facet_aggs(),
        "_source": False,
        "track_total_hits": True,
    }
    # without BM25 among the retrievers the text is not matched
    knn_only = facets_request(RETRIEVERS[1:], text="red coat", vectors=VECTORS, window=50, filters=())
    assert "multi_match" not in str(opensearch_search_body(knn_only))


def test_facet_aggregations() -> None:
    assert facet_aggs() == {
        "category": {"terms": {"field": "categories", "size": 20}},
        "brand": {"terms": {"field": "brand.keyword", "size": 20}},
        "colour": {"terms": {"field": "colour.keyword", "size": 20}},
        "price": {
            "range": {
                "field": "price",
                "ranges": [
                    {"key": "under 25", "to": 25.0},
                    {"key": "25-50", "from": 25.0, "to": 50.0},
                    {"key": "50-100", "from": 50.0, "to": 100.0},
                    {"key": "100-200", "from": 100.0, "to": 200.0},
                    {"key": "200 and up", "from": 200.0},
                ],
            }
        },
    }


def test_native_request_sums_boosted_clauses_and_pages_in_the_engine() -> None:
    request = native_search_request(
        RETRIEVERS,
        text="red coat",
        vectors=VECTORS,
        window=60,
        page=3,
        size=10,
        filters=FILTERS,
        facets=False,
    )
    prefilter = {"bool": {"filter": FILTERS}}
    boosted = {"multi_match": {**MULTI_MATCH["multi_match"], "boost": 0.7}}
    assert opensearch_search_body(request) == {
        "query": {
            "bool": {
                "should": [
                    boosted,
                    {
                        "knn": {
                            "text_vector": {"vector": [1.0, 0.0], "k": 60, "filter": prefilter, "boost": 0.3}
                        }
                    },
                    {
                        "knn": {
                            "image_vector": {"vector": [0.0, 1.0], "k": 60, "filter": prefilter, "boost": 0.2}
                        }
                    },
                ],
                "minimum_should_match": 1,
                "filter": FILTERS,
            }
        },
        "size": 10,
        "from": 20,
        "track_total_hits": True,
        **DOCVALUES,
    }
    es = elasticsearch_search_body(request)
    assert es["query"] == {"bool": {"must": [boosted], "filter": FILTERS}}
    assert [(k["field"], k["boost"], k["k"]) for k in es["knn"]] == [
        ("text_vector", 0.3, 60),
        ("image_vector", 0.2, 60),
    ]
    with_facets = native_search_request(
        RETRIEVERS[1:], text=None, vectors=VECTORS, window=60, page=1, size=10, filters=(), facets=True
    )
    body = opensearch_search_body(with_facets)
    assert body["aggs"] == facet_aggs()
    assert "multi_match" not in str(body) and "from" not in body
