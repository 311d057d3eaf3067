"""The engine adapter's contract suite: every test runs against each engine of the local stack (the ``engine``
fixture in ``tests/conftest.py``): OpenSearch 2.19 + k-NN and Elasticsearch 8.19, both real nodes in CI.

Vectors come from a deterministic fake encoder (small hand-made vectors): the model is not the subject here.
Both engines score BM25 with the same Lucene similarity and cosine kNN as ``(1 + cos) / 2``, so the expected
rankings (and most scores) are the same for both; where the engines differ (the live vector mapping, the
version) the test says so.
"""

from __future__ import annotations

from typing import Any

import pytest

from hybrid_search.engine import EncoderRef, KnnClause, SearchEngine, SearchRequest, load_definition
from hybrid_search.errors import (
    EncoderMismatchError,
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
