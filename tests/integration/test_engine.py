"""The engine adapter's contract suite: every test runs against each engine of the local stack (the ``engine``
fixture in ``tests/conftest.py``): OpenSearch 2.19 + k-NN and Elasticsearch 8.19, both real nodes in CI.

Vectors come from a deterministic fake encoder (small hand-made vectors): the model is not the subject here.
Both engines score BM25 with the same Lucene similarity and cosine kNN as ``(1 + cos) / 2``, so the expected
rankings (and most scores) are the same for both; where the engines differ (the live vector mapping, the
version) the test says so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from hybrid_search.engine import (
    ConditionalResult,
    ConditionalUpdate,
    EncoderRef,
    IndexState,
    KnnClause,
    SearchEngine,
    SearchRequest,
    load_definition,
)
from hybrid_search.errors import (
    EncoderMismatchError,
    EngineError,
    EngineRequestError,
    IndexNotFoundError,
    ValidationError,
)
from hybrid_search.ranking.fusion import Hit, fuse

pytestmark = pytest.mark.integration

TEXT = EncoderRef("fake-text", "1")
IMAGE = EncoderRef("fake-image", "1")
SOURCES = {"text_vector": TEXT, "image_vector": IMAGE}

PRODUCTS: list[dict[str, Any]] = [
    {"id": "mj01", "title": "Beaumont Summit Kit jacket", "description": "Rain-proof running jacket",
     "brand": "Luma", "categories": ["Men", "Jackets"], "colour": "Red", "price": 42.0,
     "text_vector": [1.0, 0.0, 0.0, 0.0], "image_vector": [1.0, 0.0, 0.0]},
    {"id": "mj02", "title": "Hyperion Elements jacket", "description": "Light shell for wet days",
     "brand": "Luma", "categories": ["Men", "Jackets"], "colour": "Blue", "price": 51.0,
     "text_vector": [0.9, 0.1, 0.0, 0.0], "image_vector": [0.0, 1.0, 0.0]},
    {"id": "wb01", "title": "Sprite Yoga Strap", "description": "Cotton strap for deeper stretches",
     "brand": "Sprite", "categories": ["Gear", "Fitness"], "colour": "Blue", "price": 14.0,
     "text_vector": [0.0, 0.0, 1.0, 0.0], "image_vector": [0.0, 0.0, 1.0]},
    {"id": "cn01", "title": "红色 羊毛 连衣裙", "description": "冬季 长款 连衣裙",
     "brand": "Luma", "categories": ["Women", "Dresses"], "colour": "Red", "price": 88.0,
     "text_vector": [0.0, 1.0, 0.0, 0.0], "image_vector": [0.7, 0.7, 0.0]},
]  # fmt: skip


def definition() -> Any:
    return load_definition({"text": (TEXT, 4), "image": (IMAGE, 3)})


def ids(response: dict[str, Any]) -> list[str]:
    return [hit["_id"] for hit in response["hits"]["hits"]]


def scores(response: dict[str, Any]) -> dict[str, float]:
    return {hit["_id"]: hit["_score"] for hit in response["hits"]["hits"]}


def hits(response: dict[str, Any]) -> list[Hit]:
    return [Hit(hit["_id"], hit["_score"]) for hit in response["hits"]["hits"]]


@pytest.fixture
def loaded(engine: SearchEngine, alias: str) -> str:
    engine.create_index(alias, definition())
    result = engine.bulk_write(alias, PRODUCTS, vector_sources=SOURCES, refresh=True)
    assert (result.written, result.errors) == (4, [])
    return alias


def test_create_index_from_the_mapping_files(engine: SearchEngine, alias: str) -> None:
    name = engine.create_index(alias, definition())
    assert name == f"{alias}-v1"
    assert engine.resolve_alias(alias) == [name]
    records = engine.vector_records(alias)
    assert records["text_vector"] == {
        "encoder": "fake-text",
        "version": "1",
        "dim": 4,
        "similarity": "cosine",
    }
    assert records["image_vector"]["dim"] == 3


def test_live_vector_fields_use_each_engines_hnsw(engine: SearchEngine, alias: str) -> None:
    """OpenSearch: knn_vector on the Lucene engine (FAISS/NMSLIB have no native libraries in the Maven build).
    Elasticsearch: dense_vector, indexed, with the configured similarity and HNSW parameters."""
    name = engine.create_index(alias, definition())
    mapping = engine._client.indices.get_mapping(index=name)[name]["mappings"]["properties"]  # type: ignore[attr-defined]
    if engine.kind == "opensearch":
        vectors = {k: v for k, v in mapping.items() if v.get("type") == "knn_vector"}
        assert set(vectors) == {"text_vector", "image_vector"}
        assert {v["method"]["engine"] for v in vectors.values()} == {"lucene"}
        assert {v["method"]["space_type"] for v in vectors.values()} == {"cosinesimil"}
    else:
        vectors = {k: v for k, v in mapping.items() if v.get("type") == "dense_vector"}
        assert set(vectors) == {"text_vector", "image_vector"}
        assert vectors["text_vector"] == {
            "type": "dense_vector",
            "dims": 4,
            "index": True,
            "similarity": "cosine",
            "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
        }
        assert vectors["image_vector"]["dims"] == 3 and vectors["image_vector"]["similarity"] == "cosine"


def test_second_version_waits_for_an_explicit_swap(engine: SearchEngine, alias: str) -> None:
    v1 = engine.create_index(alias, definition())
    v2 = engine.create_index(alias, definition())
    assert v2 == f"{alias}-v2"
    assert engine.resolve_alias(alias) == [v1]
    engine.bulk_write(v2, PRODUCTS[:1], vector_sources=SOURCES, refresh=True)
    assert engine.count(alias) == 0
    engine.swap_alias(alias, v2)
    assert engine.resolve_alias(alias) == [v2]
    assert engine.count(alias) == 1
    assert sorted(engine.versions(alias).values()) == [v1, v2]


def test_swap_to_a_missing_or_foreign_index_is_refused(engine: SearchEngine, alias: str) -> None:
    engine.create_index(alias, definition())
    with pytest.raises(IndexNotFoundError):
        engine.swap_alias(alias, f"{alias}-v9")
    with pytest.raises(ValidationError, match="not a version"):
        engine.swap_alias(alias, "something-else")


def test_bm25_query_returns_the_expected_products(engine: SearchEngine, loaded: str) -> None:
    query = {"multi_match": {"query": "jackets", "fields": ["title^3", "description", "categories"]}}
    assert sorted(ids(engine.search(loaded, SearchRequest(query=query)))) == ["mj01", "mj02"]
    # English stemming: "stretch" finds "stretches"
    assert ids(engine.search(loaded, SearchRequest(query={"match": {"description": "stretch"}}))) == ["wb01"]


def test_cjk_subfield_finds_chinese_product_text(engine: SearchEngine, loaded: str) -> None:
    response = engine.search(loaded, SearchRequest(query={"match": {"title.cjk": "连衣裙"}}))
    assert ids(response) == ["cn01"]


def test_filtered_knn_returns_the_nearest_product_in_the_filter(engine: SearchEngine, loaded: str) -> None:
    near_mj01 = KnnClause("text_vector", (1.0, 0.0, 0.0, 0.0), k=2)
    assert ids(engine.search(loaded, SearchRequest(knn=(near_mj01,), size=2))) == ["mj01", "mj02"]
    blue = SearchRequest(knn=(near_mj01,), filter=({"term": {"colour.keyword": "blue"}},), size=2)
    # pre-filtering: both blue products come back (the filter runs inside the kNN search, not after it)
    assert ids(engine.search(loaded, blue)) == ["mj02", "wb01"]
    cheap = SearchRequest(
        knn=(KnnClause("image_vector", (0.0, 1.0, 0.0), k=1),), filter=({"range": {"price": {"gte": 60}}},)
    )
    assert ids(engine.search(loaded, cheap))[:1] == ["cn01"]


def test_native_hybrid_sums_bm25_and_knn(engine: SearchEngine, loaded: str) -> None:
    """``native``: one request, BM25 + kNN scores summed by the engine (OpenSearch: bool.should of the query and
    the knn clause; Elasticsearch: query + top-level knn, which returns k hits in all). kNN contributes the Lucene
    cosine score (1 + cos) / 2, times its boost."""
    bm25 = {"match": {"title": "strap"}}
    knn = KnnClause("text_vector", (0.0, 1.0, 0.0, 0.0), k=1)
    response = engine.search(loaded, SearchRequest(query=bm25, knn=(knn,), size=4))
    assert set(ids(response)) == {"wb01", "cn01"}
    alone = scores(engine.search(loaded, SearchRequest(query=bm25)))
    summed = scores(response)
    assert summed["wb01"] == pytest.approx(alone["wb01"], rel=1e-5)
    assert summed["cn01"] == pytest.approx(1.0, rel=1e-5)  # identical vectors: (1 + 1) / 2
    boosted = KnnClause("text_vector", (0.0, 1.0, 0.0, 0.0), k=1, boost=2.0)
    response = engine.search(loaded, SearchRequest(query=bm25, knn=(boosted,), size=4))
    weighted = scores(response)
    assert ids(response) == ["cn01", "wb01"]
    assert weighted["cn01"] == pytest.approx(2.0, rel=1e-5)
    assert weighted["wb01"] == pytest.approx(alone["wb01"], rel=1e-5)


def test_native_hybrid_with_a_filter_filters_both_retrievers(engine: SearchEngine, loaded: str) -> None:
    """The filter applies to the BM25 query and inside the kNN search (k blue products, not k then filtered)."""
    request = SearchRequest(
        query={"match": {"title": "jacket"}},
        knn=(KnnClause("text_vector", (0.0, 1.0, 0.0, 0.0), k=2),),
        filter=({"term": {"colour.keyword": "blue"}},),
    )
    response = engine.search(loaded, request)
    assert ids(response) == ["mj02", "wb01"]  # cn01 is the nearest vector, but red
    alone = scores(engine.search(loaded, SearchRequest(query={"match": {"title": "jacket"}})))
    # mj02: BM25 + (1 + cos) / 2 with cos = 0.1 / |(0.9, 0.1, 0, 0)|; wb01: kNN only, cos = 0
    cos = 0.1 / (0.9**2 + 0.1**2) ** 0.5
    assert scores(response)["mj02"] == pytest.approx(alone["mj02"] + (1 + cos) / 2, rel=1e-5)
    assert scores(response)["wb01"] == pytest.approx(0.5, rel=1e-5)


def test_two_knn_clauses_add_up(engine: SearchEngine, loaded: str) -> None:
    """Text and image kNN in one request (cross-modal): each clause brings its own k hits; scores add up."""
    request = SearchRequest(
        knn=(
            KnnClause("text_vector", (1.0, 0.0, 0.0, 0.0), k=1),
            KnnClause("image_vector", (0.0, 0.0, 1.0), k=1),
        ),
    )
    assert scores(engine.search(loaded, request)) == {
        "mj01": pytest.approx(1.0, rel=1e-5),
        "wb01": pytest.approx(1.0, rel=1e-5),
    }


def test_client_side_fusion_of_one_msearch(engine: SearchEngine, loaded: str) -> None:
    """BM25 and kNN in one ``_msearch``, fused here by :func:`hybrid_search.ranking.fusion.fuse` (linear and RRF)."""
    bm25, knn = engine.msearch(
        loaded,
        [
            SearchRequest(query={"multi_match": {"query": "jacket", "fields": ["title", "description"]}}),
            SearchRequest(knn=(KnnClause("text_vector", (0.2, 1.0, 0.0, 0.0), k=3),), size=3),
        ],
    )
    # "jacket" is in both fields of mj01, only in the title of mj02; the query vector is nearest cn01
    assert ids(bm25) == ["mj01", "mj02"]
    assert ids(knn) == ["cn01", "mj02", "mj01"]
    results = {"bm25": hits(bm25), "text_knn": hits(knn)}

    linear = fuse("linear", results, {"bm25": 0.6, "text_knn": 0.4}, normaliser="minmax")
    # minmax: bm25 mj01 1, mj02 0; kNN cn01 1, mj01 0, mj02 (s - min) / (max - min)
    knn_scores = scores(knn)
    mj02_knn = (knn_scores["mj02"] - knn_scores["mj01"]) / (knn_scores["cn01"] - knn_scores["mj01"])
    assert [(h.doc_id, h.score) for h in linear] == [
        ("mj01", pytest.approx(0.6)),
        ("cn01", pytest.approx(0.4)),
        ("mj02", pytest.approx(0.4 * mj02_knn)),
    ]
    explain = linear[0].contributions
    assert explain["bm25"].raw_score == scores(bm25)["mj01"] and explain["text_knn"].rank == 3

    rrf = fuse("rrf", results, rank_constant=60)
    # mj01: 1/61 + 1/63 > mj02: 2/62 > cn01: 1/61 (in one list only)
    assert [h.doc_id for h in rrf] == ["mj01", "mj02", "cn01"]
    assert rrf[0].score == pytest.approx(1 / 61 + 1 / 63) and rrf[1].score == pytest.approx(2 / 62)


def test_msearch_answers_in_request_order(engine: SearchEngine, loaded: str) -> None:
    responses = engine.msearch(
        loaded,
        [
            SearchRequest(query={"match": {"title": "yoga"}}),
            SearchRequest(knn=(KnnClause("image_vector", (0.0, 1.0, 0.0), k=1),), size=1),
        ],
    )
    assert [ids(r) for r in responses] == [["wb01"], ["mj02"]]


def test_facets_and_filters_on_keyword_fields(engine: SearchEngine, loaded: str) -> None:
    aggs = {
        "colours": {"terms": {"field": "colour.keyword"}},
        "brands": {"terms": {"field": "brand.keyword"}},
    }
    response = engine.search(
        loaded, SearchRequest(filter=({"term": {"categories": "Men"}},), size=0, aggs=aggs)
    )
    assert response["hits"]["total"]["value"] == 2
    assert {b["key"]: b["doc_count"] for b in response["aggregations"]["colours"]["buckets"]} == {
        "red": 1,
        "blue": 1,
    }


def test_facet_normalizer_folds_case_and_accents(engine: SearchEngine, alias: str) -> None:
    """The ``facet`` normalizer (lowercase + asciifolding) of the keyword facets, on either engine."""
    engine.create_index(alias, definition())
    ecru = {**PRODUCTS[0], "id": "ec01", "colour": "Écru", "material": "Crème Wool"}
    engine.bulk_write(alias, [ecru, PRODUCTS[1]], vector_sources=SOURCES, refresh=True)
    found = engine.search(alias, SearchRequest(filter=({"term": {"colour.keyword": "ECRU"}},)))
    assert ids(found) == ["ec01"]
    aggs = {"materials": {"terms": {"field": "material.keyword"}}}
    buckets = engine.search(alias, SearchRequest(size=0, aggs=aggs))["aggregations"]["materials"]["buckets"]
    assert [b["key"] for b in buckets] == ["creme wool"]


def test_encoder_mismatch_is_refused_and_nothing_is_written(engine: SearchEngine, alias: str) -> None:
    engine.create_index(alias, definition())
    other = {"text_vector": EncoderRef("fake-text", "2"), "image_vector": IMAGE}
    with pytest.raises(EncoderMismatchError, match="refusing vectors of 'fake-text' version '2'"):
        engine.bulk_write(alias, PRODUCTS, vector_sources=other, refresh=True)
    with pytest.raises(EncoderMismatchError, match="without naming the encoder"):
        engine.bulk_write(alias, PRODUCTS, refresh=True)
    assert engine.count(alias) == 0


def test_bad_documents_fail_alone_and_the_rest_of_the_batch_lands(engine: SearchEngine, alias: str) -> None:
    engine.create_index(alias, definition())
    batch = [
        *PRODUCTS[:2],
        {**PRODUCTS[2], "text_vector": [1.0, 2.0]},  # wrong dimension
        {**PRODUCTS[3], "price": "not a number"},  # the engine refuses it
        {"title": "no id"},
        {"id": "x1", "title": "unknown field", "sku_colour": "red"},  # strict mapping
    ]
    result = engine.bulk_write(alias, batch, vector_sources=SOURCES, refresh=True)
    assert result.written == 2
    reasons = {str(e["id"]): (e["kind"], e["reason"]) for e in result.errors}
    assert set(reasons) == {"wb01", "cn01", "None", "x1"}
    assert reasons["wb01"] == ("mapping", "text_vector has 2 dimensions, index expects 4")
    assert reasons["cn01"][0] == "mapping" and "price" in reasons["cn01"][1]
    assert reasons["x1"][0] == "mapping" and "sku_colour" in reasons["x1"][1]
    assert engine.count(alias) == 2


def test_rewriting_is_idempotent_and_delete_removes(engine: SearchEngine, loaded: str) -> None:
    engine.bulk_write(loaded, PRODUCTS, vector_sources=SOURCES, refresh=True)
    assert engine.count(loaded) == 4
    assert engine.get_document(loaded, "mj01")["title"] == "Beaumont Summit Kit jacket"  # type: ignore[index]
    assert engine.delete_documents(loaded, ["mj01", "nope"], refresh=True) == 1
    assert engine.count(loaded) == 3
    assert engine.get_document(loaded, "mj01") is None


def test_get_fields_returns_only_the_asked_fields_of_existing_documents(
    engine: SearchEngine, loaded: str
) -> None:
    found = engine.get_fields(loaded, ["mj01", "nope", "wb01"], ["title", "price"])
    assert found == {
        "mj01": {"title": "Beaumont Summit Kit jacket", "price": 42.0},
        "wb01": {"title": "Sprite Yoga Strap", "price": 14.0},
    }


def test_partial_upsert_keeps_the_fields_it_does_not_send(engine: SearchEngine, loaded: str) -> None:
    result = engine.bulk_write(
        loaded,
        [{"id": "mj01", "price": 39.5}, {"id": "new1", "title": "Gift card", "price": 10.0}],
        partial=True,
        refresh=True,
    )
    assert (result.written, result.errors) == (2, [])
    mj01 = engine.get_document(loaded, "mj01")
    assert mj01 is not None and mj01["price"] == 39.5 and mj01["title"] == "Beaumont Summit Kit jacket"
    assert mj01["text_vector"] == [1.0, 0.0, 0.0, 0.0]  # the stored vector is kept
    assert engine.get_document(loaded, "new1") == {"id": "new1", "title": "Gift card", "price": 10.0}
    near_mj01 = KnnClause("text_vector", (1.0, 0.0, 0.0, 0.0), k=1)
    assert ids(engine.search(loaded, SearchRequest(knn=(near_mj01,), size=1))) == ["mj01"]


def test_missing_index_is_a_clear_error(engine: SearchEngine) -> None:
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        engine.bulk_write("no-such-alias", PRODUCTS, vector_sources=SOURCES)
    with pytest.raises(IndexNotFoundError):
        engine.msearch("no-such-alias", [SearchRequest(query={"match_all": {}})])


def test_a_request_the_engine_refuses_is_an_engine_error_not_the_users(
    engine: SearchEngine, loaded: str
) -> None:
    """A body the engine cannot parse, or one that does not fit the mapping (a terms aggregation on a text
    field), is refused with HTTP 400: the request was built here, so it is an EngineRequestError carrying the
    engine's type and reason, never a ValidationError (which means the user's input)."""
    malformed = SearchRequest(query={"no_such_query": {}})
    with pytest.raises(EngineRequestError) as caught:
        engine.search(loaded, malformed)
    assert not isinstance(caught.value, ValidationError)
    assert caught.value.error_type == "parsing_exception"
    assert "unknown query [no_such_query]" in caught.value.reason
    assert "HTTP 400" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(EngineRequestError, match="no_such_query"):  # the whole _msearch is refused
        engine.msearch(loaded, [SearchRequest(query={"match_all": {}}), malformed])
    unfit = SearchRequest(size=0, aggs={"titles": {"terms": {"field": "title"}}})
    with pytest.raises(EngineRequestError) as caught:
        engine.search(loaded, unfit)
    assert "illegal_argument_exception" in caught.value.reason
    # in an _msearch the engine refuses only that sub-search (HTTP 400 in its response): the same error
    with pytest.raises(EngineRequestError, match=r"^search 2 of 2 failed: ") as caught:
        engine.msearch(loaded, [SearchRequest(query={"match_all": {}}), unfit])
    assert "illegal_argument_exception" in caught.value.reason


def test_health_reports_version_and_status(engine: SearchEngine) -> None:
    health = engine.health(wait_for_status="yellow")
    assert health.engine == engine.kind
    expected = {"opensearch": "2.19.", "elasticsearch": "8."}[engine.kind]
    assert health.version.startswith(expected), health
    assert health.status in ("green", "yellow")
    print(f"{engine.kind} {health.version} at {engine.url}: {health.status}")


def test_tuned_config_is_saved_in_meta_beside_the_encoder_records(engine: SearchEngine, alias: str) -> None:
    name = engine.create_index(alias, definition())
    assert engine.tuned_config(alias) is None
    config = {"fusion": "linear", "normaliser": "dbsf", "rank_window": 200, "weights": {"bm25": 0.7}}
    assert engine.set_tuned_config(alias, config) == name
    assert engine.tuned_config(alias) == config
    assert engine.tuned_config(name) == config
    # the encoder records are untouched, and writes are still checked against them
    assert engine.vector_records(alias)["text_vector"]["encoder"] == "fake-text"
    with pytest.raises(EncoderMismatchError):
        engine.bulk_write(alias, PRODUCTS[:1], vector_sources={**SOURCES, "text_vector": IMAGE})
    # a copy: changing what came back changes nothing stored
    got = engine.tuned_config(alias)
    assert got is not None
    got["weights"]["bm25"] = 0.0
    assert engine.tuned_config(alias) == config
    # a new configuration replaces the old one whole; None removes it
    engine.set_tuned_config(alias, {"fusion": "rrf", "rank_constant": 20})
    assert engine.tuned_config(alias) == {"fusion": "rrf", "rank_constant": 20}
    engine.set_tuned_config(alias, None)
    assert engine.tuned_config(alias) is None
    assert engine.vector_records(alias)["image_vector"]["dim"] == 3


def test_tuned_config_must_be_plain_json_and_the_index_must_exist(engine: SearchEngine, alias: str) -> None:
    engine.create_index(alias, definition())
    with pytest.raises(ValidationError, match="plain JSON"):
        engine.set_tuned_config(alias, {"rank_constant": float("nan")})
    with pytest.raises(ValidationError, match="plain JSON"):
        engine.set_tuned_config(alias, {"weights": {1, 2}})
    assert engine.tuned_config(alias) is None
    with pytest.raises(IndexNotFoundError):
        engine.set_tuned_config(f"{alias}-missing", {"fusion": "rrf"})
    with pytest.raises(IndexNotFoundError):
        engine.tuned_config(f"{alias}-missing")


# ---- attaching to a shop's existing index (issue #16) ----------------------------------------------------

SHOP_DOCS: list[dict[str, Any]] = [
    {"sku": "sk1", "name": "Red rain coat", "colours": ["red"], "price_usd": 40.0},
    {"sku": "sk2", "name": "Blue rain coat", "colours": ["blue"], "price_usd": 50.0},
    {"sku": "sk3", "name": "Blue wool hat", "colours": ["blue"], "price_usd": 15.0},
    {"sku": "sk4", "name": "Green scarf", "colours": ["green"], "price_usd": 20.0},
    {"sku": "sk5", "name": "Yellow boots", "colours": ["yellow"], "price_usd": 70.0},
]
HS_VECTORS = {  # what the layer's hs_text_vector would hold, as (1 + cos) / 2 against (1, 0, 0, 0) is easy
    "sk1": [1.0, 0.0, 0.0, 0.0],
    "sk2": [0.6, 0.8, 0.0, 0.0],
    "sk3": [0.0, 1.0, 0.0, 0.0],
    "sk4": [0.0, 0.0, 1.0, 0.0],
}
HS_RECORDS = {"hs_text_vector": {"encoder": "fake-text", "version": "1", "dim": 4, "similarity": "cosine"}}


def shop_body(engine: SearchEngine, *, knn: bool = False) -> dict[str, Any]:
    """A shop's own index: strict mapping, its own ``_meta``, no k-NN setting (unless ``knn``), an alias."""
    index: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
    if knn and engine.kind == "opensearch":
        index["knn"] = True
    price = (  # the local Elasticsearch node has no mapper-extras (no scaled_float)
        {"type": "scaled_float", "scaling_factor": 100} if engine.kind == "opensearch" else {"type": "float"}
    )
    return {
        "settings": {"index": index},
        "mappings": {
            "dynamic": "strict",
            "_meta": {"owner": "shop-team", "hybrid_search": {"note": "the shop's, kept"}},
            "_source": {"excludes": ["internal_notes"]},
            "properties": {
                "sku": {"type": "keyword"},
                "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "colours": {"type": "keyword"},
                "price_usd": price,
                "internal_notes": {"type": "text"},
            },
        },
    }


def shop_write(engine: SearchEngine, index: str, docs: list[dict[str, Any]]) -> None:
    """The shop's own writes (index API by sku), not the layer's."""
    actions = [{"_op_type": "index", "_index": index, "_id": d["sku"], "_source": d} for d in docs]
    assert all(ok for ok, _ in engine._bulk(actions, True))


@pytest.fixture
def shop(engine: SearchEngine) -> Iterator[str]:
    """A private shop index name (``t-enga-<hex>``); every index whose name starts with it is deleted after."""
    name = f"t-enga-{uuid.uuid4().hex[:10]}"
    yield name
    for index in engine._indices(f"{name}*"):
        engine.delete_index(index)


@pytest.fixture
def shop_index(engine: SearchEngine, shop: str) -> str:
    engine.create_raw_index(shop, {**shop_body(engine), "aliases": {f"{shop}-live": {}}})
    shop_write(engine, shop, SHOP_DOCS)
    return shop


def test_index_state_describes_a_shop_index(engine: SearchEngine, shop_index: str) -> None:
    state = engine.index_state(f"{shop_index}-live")  # through its alias
    assert isinstance(state, IndexState)
    assert (state.name, state.aliases, state.engine) == (shop_index, (f"{shop_index}-live",), engine.kind)
    assert state.dynamic == "strict" and state.documents == 5
    assert (
        state.source_enabled and state.source_excludes == ("internal_notes",) and state.source_includes == ()
    )
    assert state.properties["name"] == {"type": "text", "fields": {"raw": {"type": "keyword"}}}
    assert state.meta == {"owner": "shop-team", "hybrid_search": {"note": "the shop's, kept"}}
    assert state.knn_setting is (engine.kind == "elasticsearch")  # OpenSearch: index.knn not set
    with pytest.raises(IndexNotFoundError):
        engine.index_state(f"{shop_index}-missing")


def test_add_fields_and_the_meta_block_keep_everything_of_the_shop(
    engine: SearchEngine, shop_index: str
) -> None:
    engine.add_fields(shop_index, {"hs_content_hash": {"type": "keyword"}})
    assert engine.attachment_meta(shop_index) is None
    attached = {"index": shop_index, "fields": {"id": "sku", "title": "name"}, "attached_at": "2025-01-01"}
    assert (
        engine.update_meta_block(f"{shop_index}-live", {"vectors": HS_RECORDS, "attached": attached})
        == shop_index
    )
    assert engine.attachment_meta(shop_index) == attached
    assert engine.attachment_meta(f"{shop_index}-live") == attached
    got = engine.attachment_meta(shop_index)
    assert got is not None
    got["fields"]["id"] = "changed"  # a copy
    assert engine.attachment_meta(shop_index) == attached
    assert engine.vector_records(shop_index) == HS_RECORDS
    engine.set_tuned_config(shop_index, {"fusion": "rrf"})  # a user of update_meta_block: keeps the rest
    state = engine.index_state(shop_index)
    assert state.meta == {
        "owner": "shop-team",
        "hybrid_search": {"note": "the shop's, kept", "vectors": HS_RECORDS, "attached": attached,
                          "tuned": {"fusion": "rrf"}},
    }  # fmt: skip
    assert state.dynamic == "strict" and state.properties["hs_content_hash"] == {"type": "keyword"}
    assert set(state.properties) == {
        "sku",
        "name",
        "colours",
        "price_usd",
        "internal_notes",
        "hs_content_hash",
    }
    engine.update_meta_block(shop_index, {"attached": None, "vectors": None, "tuned": None})
    assert engine.attachment_meta(shop_index) is None
    assert engine.index_state(shop_index).meta == {
        "owner": "shop-team",
        "hybrid_search": {"note": "the shop's, kept"},
    }
    with pytest.raises(ValidationError, match="plain JSON"):
        engine.update_meta_block(shop_index, {"attached": {"x": float("nan")}})
    with pytest.raises(EngineRequestError):  # the engine refuses a field that exists with another type
        engine.add_fields(shop_index, {"sku": {"type": "long"}})
    with pytest.raises(IndexNotFoundError):
        engine.update_meta_block(f"{shop_index}-missing", {"attached": {}})


def _with_vectors(engine: SearchEngine, index: str, *, approximate: bool) -> None:
    mapping = engine.vector_mapping("hs_text_vector", 4, "cosine", approximate=approximate)
    # one request: on OpenSearch 2.19 a later _mapping update fails the shard of an index without index.knn
    engine.add_fields(index, {"hs_text_vector": mapping}, meta={"vectors": HS_RECORDS})
    updates = [
        ConditionalUpdate(doc_id, doc.seq_no, doc.primary_term, {"hs_text_vector": HS_VECTORS[doc_id]})
        for doc_id, doc in engine.get_versioned(index, list(HS_VECTORS), ["sku"]).items()
    ]
    result = engine.update_if_unchanged(index, updates, vector_sources={"hs_text_vector": TEXT}, refresh=True)
    assert sorted(result.written) == sorted(HS_VECTORS) and not (
        result.conflicts or result.missing or result.errors
    )


def test_vector_mapping_of_each_engine(engine: SearchEngine) -> None:
    if engine.kind == "opensearch":
        assert engine.vector_mapping("v", 4, "cosine", approximate=False) == {
            "type": "knn_vector",
            "dimension": 4,
        }
        assert engine.vector_mapping("v", 4, "l2", approximate=True) == {
            "type": "knn_vector",
            "dimension": 4,
            "method": {"name": "hnsw", "engine": "lucene", "space_type": "l2",
                       "parameters": {"m": 16, "ef_construction": 100}},
        }  # fmt: skip
    else:
        for approximate in (True, False):  # Elasticsearch adds an HNSW field to any index
            assert engine.vector_mapping("v", 4, "dot_product", approximate=approximate) == {
                "type": "dense_vector",
                "dims": 4,
                "index": True,
                "similarity": "dot_product",
                "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
            }


def test_exact_knn_on_a_shop_index_without_the_knn_setting(engine: SearchEngine, shop_index: str) -> None:
    """OpenSearch, index without ``index.knn``: the bare knn_vector is accepted, the ``knn`` query is refused,
    exact kNN (knn_score) pre-filters and scores (1 + cos) / 2 like the approximate query. Elasticsearch: the
    HNSW field serves the approximate kNN; its exact body is checked only (the local node has no painless)."""
    query = (1.0, 0.0, 0.0, 0.0)
    blue = ({"term": {"colours": "blue"}},)
    exact = KnnClause("hs_text_vector", query, k=3, exact=True)
    if engine.kind == "opensearch":
        with pytest.raises(EngineRequestError, match=r"index\.knn"):
            engine.add_fields(
                shop_index, {"hs_x": engine.vector_mapping("hs_x", 4, "cosine", approximate=True)}
            )
    _with_vectors(engine, shop_index, approximate=engine.kind == "elasticsearch")
    if engine.kind == "elasticsearch":
        body = engine.search_body(SearchRequest(knn=(exact,), filter=blue, size=2))
        assert body["query"]["script_score"]["query"] == {
            "bool": {"filter": [{"term": {"colours": "blue"}}, {"exists": {"field": "hs_text_vector"}}]}
        }
        assert "cosineSimilarity" in body["query"]["script_score"]["script"]["source"] and "knn" not in body
        approx = engine.search(
            shop_index, SearchRequest(knn=(KnnClause("hs_text_vector", query, k=2),), size=2)
        )
        assert ids(approx) == ["sk1", "sk2"]
        return
    with pytest.raises(EngineRequestError, match="not built for ANN search"):
        engine.search(shop_index, SearchRequest(knn=(KnnClause("hs_text_vector", query, k=2),)))
    found = engine.search(shop_index, SearchRequest(knn=(exact,), size=10))
    # sk5 has no vector: not scored (the exists filter), not returned
    assert ids(found) == ["sk1", "sk2", "sk3", "sk4"]
    assert list(scores(found).values()) == pytest.approx([1.0, 0.8, 0.5, 0.5])
    request = SearchRequest(
        knn=(exact,), filter=blue, size=1, source=["sku"], aggs={"c": {"terms": {"field": "colours"}}},
        extra={"docvalue_fields": ["price_usd"]},
    )  # fmt: skip
    response = engine.search(shop_index, request)
    assert ids(response) == ["sk2"] and response["hits"]["total"]["value"] == 2  # pre-filtered, size applies
    assert response["hits"]["hits"][0]["_source"] == {"sku": "sk2"}
    assert response["hits"]["hits"][0]["fields"]["price_usd"] == [50.0]
    assert {b["key"]: b["doc_count"] for b in response["aggregations"]["c"]["buckets"]} == {"blue": 2}
    hybrid = SearchRequest(query={"match": {"name": "hat"}}, knn=(exact,), size=10)
    summed = scores(engine.search(shop_index, hybrid))
    alone = scores(engine.search(shop_index, SearchRequest(query={"match": {"name": "hat"}})))
    assert summed["sk3"] == pytest.approx(alone["sk3"] + 0.5, rel=1e-5) and summed["sk1"] == pytest.approx(
        1.0
    )


def test_exact_and_approximate_scores_agree_on_a_knn_index(engine: SearchEngine, shop: str) -> None:
    """Where an HNSW graph exists, exact kNN gives the approximate query's scores (same (1 + cos) / 2 scale)."""
    if engine.kind == "elasticsearch":
        pytest.skip("exact kNN on Elasticsearch needs painless, which the local node lacks")
    engine.create_raw_index(shop, shop_body(engine, knn=True))
    shop_write(engine, shop, SHOP_DOCS)
    assert engine.index_state(shop).knn_setting is True
    _with_vectors(engine, shop, approximate=True)
    query = (0.8, 0.6, 0.0, 0.0)
    approx = engine.search(shop, SearchRequest(knn=(KnnClause("hs_text_vector", query, k=4),), size=4))
    exact = engine.search(
        shop, SearchRequest(knn=(KnnClause("hs_text_vector", query, k=4, exact=True),), size=4)
    )
    assert ids(exact) == ids(approx) == ["sk2", "sk1", "sk3", "sk4"]
    assert list(scores(exact).values()) == pytest.approx(list(scores(approx).values()), rel=1e-5)


def test_get_versioned_and_update_if_unchanged(engine: SearchEngine, shop_index: str) -> None:
    vector = engine.vector_mapping("hs_text_vector", 4, "cosine", approximate=engine.kind == "elasticsearch")
    fields = {"hs_text_vector": vector, "hs_content_hash": {"type": "keyword"}}
    engine.add_fields(shop_index, fields, meta={"vectors": HS_RECORDS})
    read = engine.get_versioned(f"{shop_index}-live", ["sk1", "sk2", "sk3", "sk4", "nope"], ["name"])
    assert set(read) == {"sk1", "sk2", "sk3", "sk4"}
    assert read["sk1"].source == {"name": "Red rain coat"} and read["sk1"].id == "sk1"
    assert isinstance(read["sk1"].seq_no, int) and read["sk1"].primary_term >= 1
    assert engine.get_versioned(shop_index, ["sk5"])["sk5"].source == SHOP_DOCS[4]  # fields None: all of it
    # meanwhile the shop rewrites sk2 and deletes sk3
    shop_write(engine, shop_index, [{**SHOP_DOCS[1], "price_usd": 45.0}])
    assert engine.delete_documents(shop_index, ["sk3"], refresh=True) == 1

    def update(doc_id: str, doc: dict[str, Any]) -> ConditionalUpdate:
        v = read[doc_id]
        return ConditionalUpdate(doc_id, v.seq_no, v.primary_term, doc)

    with pytest.raises(EncoderMismatchError):  # checked against the index's _meta, nothing sent
        engine.update_if_unchanged(shop_index, [update("sk1", {"hs_text_vector": HS_VECTORS["sk1"]})])
    updates = [
        update("sk1", {"hs_text_vector": HS_VECTORS["sk1"], "hs_content_hash": "h1"}),
        update("sk2", {"hs_text_vector": HS_VECTORS["sk2"], "hs_content_hash": "h2"}),
        update("sk3", {"hs_content_hash": "h3"}),
        ConditionalUpdate("never", 0, 1, {"hs_content_hash": "h"}),
        update("sk4", {"hs_text_vector": [1.0, 0.0]}),
        update("sk4", {"hs_unknown": "x"}),  # strict mapping
    ]
    result = engine.update_if_unchanged(
        f"{shop_index}-live", updates, vector_sources={"hs_text_vector": TEXT}, refresh=True
    )
    assert isinstance(result, ConditionalResult)
    assert (result.written, result.conflicts, sorted(result.missing)) == (["sk1"], ["sk2"], ["never", "sk3"])
    errors = sorted(result.errors, key=lambda e: str(e["status"]))
    assert [(e["id"], e["kind"]) for e in errors] == [("sk4", "mapping"), ("sk4", "mapping")]
    assert errors[0]["status"] == 400 and "hs_unknown" in errors[0]["reason"]
    assert errors[1]["reason"] == "hs_text_vector has 2 dimensions, index expects 4"
    sk1 = engine.get_document(shop_index, "sk1")
    assert sk1 == {**SHOP_DOCS[0], "hs_text_vector": HS_VECTORS["sk1"], "hs_content_hash": "h1"}
    assert engine.get_document(shop_index, "sk2") == {
        **SHOP_DOCS[1],
        "price_usd": 45.0,
    }  # the shop's write won
    assert engine.get_document(shop_index, "sk3") is None and engine.get_document(shop_index, "never") is None
    assert engine.count(shop_index) == 4  # nothing resurrected or created
    assert engine.update_if_unchanged(shop_index, []) == ConditionalResult()


def test_point_in_time_pages_a_shop_index_by_its_id_field(engine: SearchEngine, shop_index: str) -> None:
    pit = engine.open_pit(f"{shop_index}-live", keep_alive="1m")
    shop_write(engine, shop_index, [{"sku": "sk0", "name": "Written after the PIT opened"}])
    seen: list[str] = []
    after: list[Any] | None = None
    pages = 0
    while True:
        body: dict[str, Any] = {"size": 2, "sort": [{"sku": "asc"}], "_source": ["sku"]}
        if after is not None:
            body["search_after"] = after
        response = engine.search_pit(pit, body, keep_alive="1m")
        pit = response.get("pit_id", pit)
        page = response["hits"]["hits"]
        if not page:
            break
        pages += 1
        seen.extend(hit["_source"]["sku"] for hit in page)
        after = page[-1]["sort"]
        # Elasticsearch appends its implicit _shard_doc tiebreaker to the sort values; OpenSearch 2.19 does not
        assert len(after) == (2 if engine.kind == "elasticsearch" else 1)
    assert seen == ["sk1", "sk2", "sk3", "sk4", "sk5"] and pages == 3  # sk0 came after the point in time
    # (OpenSearch also sorts on _id, but loads its fielddata and warns that this is deprecated)
    tiebreak = {"elasticsearch": "_shard_doc", "opensearch": "_doc"}[engine.kind]
    refused = {"elasticsearch": "_id", "opensearch": "_shard_doc"}[engine.kind]
    assert len(ids(engine.search_pit(pit, {"size": 5, "sort": [{tiebreak: "asc"}]}))) == 5
    with pytest.raises(EngineRequestError):
        engine.search_pit(pit, {"size": 5, "sort": [{refused: "asc"}]})
    engine.close_pit(pit)
    engine.close_pit(pit)  # closed already: no error
    with pytest.raises(EngineError):
        engine.search_pit(pit, {"size": 1})
    with pytest.raises(IndexNotFoundError):
        engine.open_pit(f"{shop_index}-missing")


def test_remove_fields_or_say_it_cannot(engine: SearchEngine, shop_index: str) -> None:
    _with_vectors(engine, shop_index, approximate=engine.kind == "elasticsearch")
    if (
        engine.kind == "elasticsearch"
    ):  # the local node has no reindex module (no _update_by_query), no painless
        with pytest.raises(EngineError, match="cannot remove fields in place"):
            engine.remove_fields(shop_index, ["hs_text_vector"])
        return
    assert engine.remove_fields(shop_index, ["hs_text_vector"], {"terms": {"sku": ["sk1", "sk2"]}}) == 2
    assert engine.get_document(shop_index, "sk1") == SHOP_DOCS[0]
    assert "hs_text_vector" in (engine.get_document(shop_index, "sk3") or {})
    assert engine.remove_fields(f"{shop_index}-live", ["hs_text_vector", "hs_content_hash"]) == 2  # sk3, sk4
    assert [engine.get_document(shop_index, d["sku"]) for d in SHOP_DOCS] == SHOP_DOCS
    assert engine.remove_fields(shop_index, ["hs_text_vector"]) == 0
    with pytest.raises(ValidationError):
        engine.remove_fields(shop_index, ["photos.vector"])


def test_render_a_stored_search_template(engine: SearchEngine) -> None:
    template_id = f"t-enga-{uuid.uuid4().hex[:10]}"
    if engine.kind == "elasticsearch":  # the local node has no mustache module
        with pytest.raises(EngineError):
            engine.render_template(template_id, {"query": "coat"})
        return
    source = {"query": {"multi_match": {"query": "{{query}}", "fields": ["name^3", "body"]}}}
    engine._client.put_script(id=template_id, body={"script": {"lang": "mustache", "source": source}})  # type: ignore[attr-defined]
    try:
        assert engine.render_template(template_id, {"query": "red coat"}) == {
            "query": {"multi_match": {"query": "red coat", "fields": ["name^3", "body"]}}
        }
    finally:
        engine._client.delete_script(id=template_id)  # type: ignore[attr-defined]
    with pytest.raises(EngineError, match="does not exist"):
        engine.render_template(template_id, {"query": "coat"})


def test_reindex_then_move_the_name_to_an_alias(engine: SearchEngine, shop_index: str) -> None:
    new = f"{shop_index}-hs1"
    engine.create_raw_index(new, shop_body(engine, knn=True))
    if engine.kind == "elasticsearch":  # the local node has no reindex module
        with pytest.raises(EngineError, match="_reindex"):
            engine.reindex(shop_index, new)
        return
    assert engine.reindex(shop_index, new) == 5
    assert engine.count(new) == 5 and engine.index_state(new).knn_setting
    with pytest.raises(ValidationError, match="is an alias"):
        engine.move_name_to_alias(f"{shop_index}-live", new)
    with pytest.raises(IndexNotFoundError):
        engine.move_name_to_alias(shop_index, f"{shop_index}-missing")
    engine.move_name_to_alias(shop_index, new)
    state = engine.index_state(shop_index)  # the shop's name now reaches the new index
    assert state.name == new and shop_index in state.aliases and state.documents == 5
    shop_write(engine, shop_index, [{"sku": "sk9", "name": "Written through the alias"}])
    assert engine.get_document(new, "sk9") is not None
    with pytest.raises(ValidationError, match="is an alias"):
        engine.move_name_to_alias(shop_index, new)
