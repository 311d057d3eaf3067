"""Request bodies each engine dialect sends, pinned as plain dicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybrid_search.engine.definition import EncoderRef, HnswParams, load_definition
from hybrid_search.engine.dialects import (
    elasticsearch_index_body,
    elasticsearch_search_body,
    opensearch_index_body,
    opensearch_search_body,
    swap_alias_actions,
)
from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ValidationError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ENCODERS = {
    "text": (EncoderRef("minilm", "abc123"), 384),
    "image": (EncoderRef("efficientnet-lite0", "def456"), 1280),
    "colour": (EncoderRef("colour-hsv-888", "1"), 512),
    "fused": (EncoderRef("fused:minilm+efficientnet-lite0:0.5", "abc123+def456"), 1664),
}
FILTER = {"term": {"categories": "Jackets"}}


def definition(**kwargs: Any) -> Any:
    return load_definition(ENCODERS, hnsw=HnswParams(m=24, ef_construction=200), **kwargs)


def test_opensearch_index_body_uses_only_the_lucene_engine() -> None:
    """Guard: FAISS/NMSLIB need native libraries the Maven-assembled node lacks (they fail at first flush)."""
    body = opensearch_index_body(definition(replicas=1, shards=2))
    assert body["settings"]["index"]["knn"] is True
    assert body["settings"]["index"]["number_of_shards"] == 2
    assert body["settings"]["index"]["number_of_replicas"] == 1
    vectors = {k: v for k, v in body["mappings"]["properties"].items() if v.get("type") == "knn_vector"}
    assert set(vectors) == {"text_vector", "image_vector", "colour_vector", "fused_vector"}
    for name, field in vectors.items():
        assert field["method"]["engine"] == "lucene", name
        assert field["method"]["name"] == "hnsw"
        assert not {"mode", "compression_level", "model_id"} & set(field), name
    assert vectors["text_vector"] == {
        "type": "knn_vector",
        "dimension": 384,
        "method": {
            "name": "hnsw",
            "engine": "lucene",
            "space_type": "cosinesimil",
            "parameters": {"m": 24, "ef_construction": 200},
        },
    }
    text = json.dumps(body).lower()
    assert "faiss" not in text and "nmslib" not in text


def test_mapping_files_name_no_native_engine() -> None:
    for path in (REPO / "mappings").glob("*.json"):
        text = path.read_text().lower()
        assert "faiss" not in text and "nmslib" not in text, path


def test_meta_records_each_vector_encoder() -> None:
    meta = opensearch_index_body(definition())["mappings"]["_meta"]
    assert meta["hybrid_search"]["vectors"]["image_vector"] == {
        "encoder": "efficientnet-lite0",
        "version": "def456",
        "dim": 1280,
        "similarity": "cosine",
    }
    assert elasticsearch_index_body(definition())["mappings"]["_meta"] == meta


def test_text_fields_have_english_and_cjk_analysis() -> None:
    props = opensearch_index_body(definition())["mappings"]["properties"]
    for name in ("title", "description", "brand", "category_path", "colour", "material", "attributes_text"):
        assert props[name]["analyzer"] == "english", name
        assert props[name]["fields"]["cjk"]["analyzer"] == "cjk", name
    assert props["price"]["type"] == "double"
    assert props["categories"]["type"] == "keyword"


def test_only_roles_with_an_encoder_get_a_vector_field() -> None:
    d = load_definition({"text": ENCODERS["text"]})
    assert [v.name for v in d.vectors] == ["text_vector"]


def test_elasticsearch_index_body_uses_dense_vector() -> None:
    body = elasticsearch_index_body(definition())
    assert "knn" not in body["settings"]["index"]
    assert body["mappings"]["properties"]["image_vector"] == {
        "type": "dense_vector",
        "dims": 1280,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": 24, "ef_construction": 200},
    }
    assert body["mappings"]["dynamic"] == "strict"


BM25 = {"multi_match": {"query": "red coat", "fields": ["title^3", "description"]}}


def test_opensearch_bm25_only() -> None:
    body = opensearch_search_body(SearchRequest(query=BM25, size=5))
    assert body == {"query": BM25, "size": 5, "_source": True, "track_total_hits": True}


def test_opensearch_filtered_knn_puts_the_filter_inside_the_clause() -> None:
    req = SearchRequest(
        knn=(KnnClause("text_vector", (0.1, 0.2), k=5, num_candidates=50),), filter=(FILTER,), size=5
    )
    body = opensearch_search_body(req)
    assert body["query"] == {"knn": {"text_vector": {"vector": [0.1, 0.2], "k": 5, "filter": FILTER}}}
    assert body["size"] == 5


def test_opensearch_native_hybrid_is_a_bool_should_sum() -> None:
    req = SearchRequest(
        query=BM25,
        knn=(KnnClause("text_vector", (1.0,), k=10, boost=2.0),),
        filter=(FILTER, {"range": {"price": {"lte": 50}}}),
    )
    body = opensearch_search_body(req)
    both = {"bool": {"filter": [FILTER, {"range": {"price": {"lte": 50}}}]}}
    assert body["query"] == {
        "bool": {
            "should": [
                BM25,
                {"knn": {"text_vector": {"vector": [1.0], "k": 10, "filter": both, "boost": 2.0}}},
            ],
            "minimum_should_match": 1,
            "filter": [FILTER, {"range": {"price": {"lte": 50}}}],
        }
    }


def test_elasticsearch_filtered_knn_is_the_top_level_option() -> None:
    req = SearchRequest(
        knn=(KnnClause("text_vector", (0.1, 0.2), k=5, num_candidates=50),), filter=(FILTER,), size=5
    )
    assert elasticsearch_search_body(req) == {
        "knn": [
            {
                "field": "text_vector",
                "query_vector": [0.1, 0.2],
                "k": 5,
                "num_candidates": 50,
                "filter": FILTER,
            }
        ],
        "size": 5,
        "_source": True,
        "track_total_hits": True,
    }


def test_elasticsearch_native_hybrid_sums_query_and_knn() -> None:
    req = SearchRequest(
        query=BM25, knn=(KnnClause("image_vector", (1.0, 0.0), k=10, boost=0.5),), filter=(FILTER,), size=10,
        from_=10, aggs={"brands": {"terms": {"field": "brand.keyword"}}}, source=["id", "title"],
    )  # fmt: skip
    assert elasticsearch_search_body(req) == {
        "query": {"bool": {"must": [BM25], "filter": [FILTER]}},
        "knn": [
            {"field": "image_vector", "query_vector": [1.0, 0.0], "k": 10, "num_candidates": 100, "filter": FILTER,
             "boost": 0.5}
        ],
        "size": 10,
        "from": 10,
        "aggs": {"brands": {"terms": {"field": "brand.keyword"}}},
        "_source": ["id", "title"],
        "track_total_hits": True,
    }  # fmt: skip


def test_filter_only_request_on_both_engines() -> None:
    req = SearchRequest(filter=(FILTER,), size=0, aggs={"n": {"value_count": {"field": "id"}}})
    for render in (opensearch_search_body, elasticsearch_search_body):
        body = render(req)
        assert body["query"] == {"bool": {"filter": [FILTER]}}
        assert body["size"] == 0


def test_swap_alias_is_one_atomic_action_list() -> None:
    assert swap_alias_actions("products", ["products-v1", "products-v2"], "products-v3") == {
        "actions": [
            {"remove": {"index": "products-v1", "alias": "products"}},
            {"remove": {"index": "products-v2", "alias": "products"}},
            {"add": {"index": "products-v3", "alias": "products", "is_write_index": True}},
        ]
    }


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"k": 0}, "k"), ({"k": 10, "num_candidates": 5}, "num_candidates"), ({"k": 1, "boost": -1.0}, "boost")],
)
def test_knn_clause_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        KnnClause("text_vector", (1.0,), **kwargs)
    assert info.value.field == field


def test_candidate_pool_default() -> None:
    assert KnnClause("v", (1.0,), k=10).candidates == 100
    assert KnnClause("v", (1.0,), k=300).candidates == 600
    assert KnnClause("v", (1.0,), k=9000).candidates == 10_000
