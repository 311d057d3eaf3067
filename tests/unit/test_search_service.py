"""SearchService orchestration without services: round trips, paging, explain, encoders and image checks.

The engine here is a recording stand-in that renders each request with the real OpenSearch dialect and
answers from fixed hit lists: it pins *what is sent and how responses are combined*. Ranking on a real
engine is tested in tests/integration/test_search_luma.py.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from hybrid_search.catalog.schema import FieldSchema
from hybrid_search.engine.dialects import opensearch_search_body
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import EncoderMismatchError, ValidationError
from hybrid_search.search import Filters, SearchQuery, SearchService
from hybrid_search.settings import Settings, load_settings

pytestmark = pytest.mark.unit

DISPLAY_FIELDS = ["id", "title", "brand", "category_path", "colour", "price", "currency", "image_url"]


class FakeEncoder:
    """Deterministic: the vector is a hash-seeded random unit vector of the text (or the image size)."""

    def __init__(self, name: str, modality: str, dim: int) -> None:
        self.name, self.version, self.dim, self.modality = name, "v1", dim, modality
        self.calls = 0

    def embed_query(self, item: Any) -> np.ndarray[Any, Any]:
        self.calls += 1
        seed = sum(map(ord, item)) if isinstance(item, str) else item.size[0] * 1000 + item.size[1]
        vector = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
        out: np.ndarray[Any, Any] = vector / np.linalg.norm(vector)
        return out


def docs(prefix: str, n: int, top: float) -> list[tuple[str, float]]:
    return [(f"{prefix}{i:03d}", top - i * 0.01) for i in range(n)]


class FakeEngine:
    kind = "opensearch"

    def __init__(self, records: dict[str, dict[str, Any]], lists: dict[str, list[tuple[str, float]]]) -> None:
        self.records = records
        self.lists = lists
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []
        self.record_reads = 0

    def vector_records(self, index: str) -> dict[str, dict[str, Any]]:
        self.record_reads += 1
        return self.records

    def tuned_config(self, index: str) -> dict[str, Any] | None:
        return None  # no tuned configuration: the settings' defaults apply (tuning: tests/integration/test_eval.py)

    def attachment_meta(self, index: str) -> dict[str, Any] | None:
        return None  # the layer's own index (attached indices: tests/integration/test_search_attached.py)

    def _answer(self, request: SearchRequest) -> dict[str, Any]:
        if request.size == 0:
            return {
                "took": 1,
                "hits": {"total": {"value": 321, "relation": "eq"}, "hits": []},
                "aggregations": {
                    "category": {"buckets": [{"key": "Jackets", "doc_count": 12}]},
                    "brand": {"buckets": []},
                    "colour": {"buckets": [{"key": "red", "doc_count": 5}]},
                    "price": {"buckets": [{"key": "under 25", "to": 25.0, "doc_count": 3}]},
                },
            }
        key = request.knn[0].field if request.knn and request.query is None else "bm25"
        hits = self.lists.get(key, [])[request.from_ : request.from_ + request.size]
        only = next((f["ids"]["values"] for f in request.filter if "ids" in f), None)
        if only is not None:  # an ids filter, as the engine applies it
            hits = [(d, score) for d, score in self.lists.get(key, []) if d in only][: request.size]
        return {
            "took": 2,
            "hits": {
                "total": {"value": len(self.lists.get(key, [])), "relation": "eq"},
                "hits": [{"_score": s, "fields": {"id": [d], "title.raw": [f"title {d}"]}} for d, s in hits],
            },
        }

    def get_fields(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(("mget", [{"ids": list(ids), "fields": list(fields)}]))
        return {d: {"id": d, "title": f"Title {d}", "colour": ["Red"]} for d in ids}

    def msearch(self, index: str, requests: Sequence[SearchRequest]) -> list[dict[str, Any]]:
        self.calls.append(("msearch", [opensearch_search_body(r) for r in requests]))
        return [self._answer(r) for r in requests]

    def search(self, index: str, request: SearchRequest) -> dict[str, Any]:
        self.calls.append(("search", [opensearch_search_body(request)]))
        return self._answer(request)


RECORDS = {
    "text_vector": {"encoder": "fake-text", "version": "v1", "dim": 8},
    "image_vector": {"encoder": "fake-image", "version": "v1", "dim": 6},
    "colour_vector": {"encoder": "fake-colour", "version": "v1", "dim": 4},
    "fused_vector": {"encoder": "fused:fake-text+fake-image@0.5", "version": "v1+v1", "dim": 14},
}
LISTS = {
    "bm25": docs("b", 60, 20.0),
    "text_vector": docs("b", 10, 0.9) + docs("t", 50, 0.8),
    "image_vector": docs("i", 60, 0.95),
    "colour_vector": docs("c", 60, 0.9),
    "fused_vector": docs("i", 30, 0.9),
}


def encoders() -> dict[str, FakeEncoder]:
    return {
        "text": FakeEncoder("fake-text", "text", 8),
        "image": FakeEncoder("fake-image", "image", 6),
        "colour": FakeEncoder("fake-colour", "image", 4),
    }


@pytest.fixture
def settings() -> Settings:
    return load_settings(fusion_rank_window=50, image_max_pixels=4096, image_max_bytes=2048)


def service(settings: Settings, **kwargs: Any) -> tuple[SearchService, FakeEngine]:
    engine = FakeEngine(kwargs.pop("records", RECORDS), kwargs.pop("lists", LISTS))
    return SearchService(settings, engine, kwargs.pop("encoders", encoders())), engine  # type: ignore[arg-type]


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def test_client_side_fusion_is_one_msearch_with_a_facet_request(settings: Settings) -> None:
    svc, engine = service(settings)
    response = svc.search(SearchQuery(text="red coat", filters=Filters(colour="red")))
    assert [kind for kind, _ in engine.calls] == ["msearch", "mget"]  # retrieval, then the page's fields
    bodies = engine.calls[0][1]
    assert len(bodies) == 3  # bm25, text_knn, facets
    assert [b["size"] for b in bodies] == [50, 50, 0]
    colour = {"term": {"colour.keyword": "red"}}
    assert bodies[0]["query"]["bool"]["filter"] == [colour]
    assert bodies[1]["query"]["knn"]["text_vector"]["filter"] == colour
    assert bodies[1]["query"]["knn"]["text_vector"]["k"] == 50
    assert response.total == 321 and response.total_relation == "eq"
    assert response.facets is not None and response.facets["category"] == [{"value": "Jackets", "count": 12}]
    assert response.facets["price"] == [{"value": "under 25", "from": None, "to": 25.0, "count": 3}]
    assert set(response.retrievers) == {"bm25", "text_knn"}
    assert response.retrievers["bm25"]["hits"] == 50
    assert {"encode_ms", "engine_ms", "fusion_ms", "total_ms"} <= set(response.timings)
    assert engine.calls[1][1] == [{"ids": [h.id for h in response.hits], "fields": DISPLAY_FIELDS}]
    assert response.hits[0].fields == {
        "id": "b000", "title": "Title b000", "brand": None, "category_path": None, "colour": ["Red"],
        "price": None, "currency": None, "image_url": None,
    }  # fmt: skip
    assert "display_ms" in response.timings


class ShopEngine(FakeEngine):
    """The same answers under a shop's field names (``sku``, ``name``, ``colours``, ``price_usd``)."""

    def _answer(self, request: SearchRequest) -> dict[str, Any]:
        answer = super()._answer(request)
        for hit in answer["hits"]["hits"]:
            doc = hit["fields"]["id"][0]
            hit["fields"] = {"sku": [doc], "name": [f"name {doc}"], "price_usd": [9.5]}
        return answer

    def get_fields(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(("mget", [{"ids": list(ids), "fields": list(fields)}]))
        return {d: {"sku": d, "name": f"Name {d}", "colours": ["Red"], "price_usd": 9.5} for d in ids}


SHOP = FieldSchema(id="sku", title="name", colour="colours", price="price_usd", image="picture")


@pytest.mark.parametrize("display", ["source", "docvalues"])
def test_a_shop_schema_is_searched_by_its_names_and_shown_by_role(display: str) -> None:
    settings = load_settings(fusion_rank_window=50, search_display=display)
    engine = ShopEngine(RECORDS, LISTS)
    svc = SearchService(settings, engine, encoders(), schema=SHOP)  # type: ignore[arg-type]
    response = svc.search(SearchQuery(text="red coat", size=3, filters=Filters(colour="red", price_max=20)))
    bm25, knn, facets = engine.calls[0][1]
    assert bm25["query"]["bool"]["should"][0]["multi_match"]["fields"] == ["name^3", "colours^1.5"]
    shop_filters = [{"term": {"colours": "red"}}, {"range": {"price_usd": {"lte": 20.0}}}]
    assert bm25["query"]["bool"]["filter"] == shop_filters
    assert knn["docvalue_fields"] == ["sku", "name", "colours", "price_usd", "picture"]
    assert set(facets["aggs"]) == {"colour", "price"}
    assert facets["aggs"]["price"]["range"]["field"] == "price_usd"
    assert response.facets is not None and set(response.facets) == {"colour", "price"}
    if display == "source":
        assert engine.calls[1][1][0]["fields"] == ["sku", "name", "colours", "price_usd", "picture"]
        assert response.hits[0].fields == {
            "id": "b000", "title": "Name b000", "brand": None, "category_path": None, "colour": ["Red"],
            "price": 9.5, "currency": None, "image_url": None,
        }  # fmt: skip
    else:
        assert [kind for kind, _ in engine.calls] == ["msearch"]
        assert response.hits[0].fields == {
            "id": "b000", "title": "name b000", "brand": None, "categories": [], "colour": [], "price": 9.5,
            "currency": None, "image_url": None,
        }  # fmt: skip


def test_docvalue_display_is_one_round_trip() -> None:
    svc, engine = service(load_settings(fusion_rank_window=50, search_display="docvalues"))
    response = svc.search(SearchQuery(text="red coat", size=3))
    assert [kind for kind, _ in engine.calls] == ["msearch"]
    assert response.hits[0].fields == {
        "id": "b000", "title": "title b000", "brand": None, "categories": [], "colour": [], "price": None,
        "currency": None, "image_url": None,
    }  # fmt: skip


def test_without_facets_there_is_no_facet_request_and_the_total_is_a_lower_bound(settings: Settings) -> None:
    svc, engine = service(settings)
    response = svc.search(SearchQuery(text="red coat", facets=False))
    assert len(engine.calls[0][1]) == 2
    assert response.facets is None
    assert (response.total, response.total_relation) == (response.available, "gte")
    assert response.available == 90  # the windows: 50 BM25 hits, and 40 kNN hits BM25 did not return


def test_pages_continue_each_other_and_never_repeat(settings: Settings) -> None:
    svc, _ = service(settings)
    for method in ("linear", "rrf"):
        whole = svc.search(SearchQuery(text="coat", fusion=method, size=50))
        pages = [svc.search(SearchQuery(text="coat", fusion=method, page=p, size=10)) for p in range(1, 6)]
        ids = [h.id for page in pages for h in page.hits]
        assert ids == [h.id for h in whole.hits]
        assert len(set(ids)) == 50
        assert [h.rank for page in pages for h in page.hits] == list(range(1, 51))


def test_page_beyond_the_default_window_is_refused(settings: Settings) -> None:
    svc, engine = service(settings)
    with pytest.raises(ValidationError) as info:
        svc.search(SearchQuery(text="coat", page=6, size=10))
    assert info.value.field == "page"
    assert engine.calls == []


@pytest.mark.parametrize(
    ("method", "normaliser"), [("linear", "minmax"), ("linear", "zscore"), ("rrf", "minmax")]
)
def test_explain_adds_up_to_the_score(settings: Settings, method: str, normaliser: str) -> None:
    svc, _ = service(settings)
    response = svc.search(
        SearchQuery(text="coat", fusion=method, normaliser=normaliser, explain=True, weights={"bm25": 0.7})
    )
    for hit in response.hits:
        assert hit.explain is not None and set(hit.explain) == {"bm25", "text_knn"}
        assert hit.score == math.fsum(c["weighted"] for c in hit.explain.values())
        assert set(hit.explain["bm25"]) == {"raw_score", "rank", "normalised", "weighted"}
    assert response.fusion["weights"] == {"bm25": 0.7, "text_knn": 0.5}
    no_explain = svc.search(SearchQuery(text="coat", fusion=method))
    assert all(h.explain is None for h in no_explain.hits)


def test_native_is_one_engine_request_paged_by_the_engine(settings: Settings) -> None:
    svc, engine = service(settings)
    response = svc.search(SearchQuery(text="coat", fusion="native", page=2, size=5, explain=True))
    # the explain asks each retriever again in one _msearch: the page's BM25 scores, kNN's top window
    assert [kind for kind, _ in engine.calls] == ["search", "msearch", "mget"]
    page_ids = [h.id for h in response.hits]
    bm25_again, knn_again = engine.calls[1][1]
    assert {"ids": {"values": page_ids}} in bm25_again["query"]["bool"]["filter"]
    assert knn_again["size"] == svc.settings.fusion_rank_window
    body = engine.calls[0][1][0]
    assert (body["from"], body["size"]) == (5, 5)
    should = body["query"]["bool"]["should"]
    assert should[0]["multi_match"]["boost"] == 0.5
    assert should[1]["knn"]["text_vector"]["boost"] == 0.5
    assert "aggs" in body
    assert [h.rank for h in response.hits] == [6, 7, 8, 9, 10]
    hit = response.hits[0]  # b005: sixth in BM25 (19.95) and in the text kNN list (0.85)
    assert hit.id == "b005"
    assert hit.explain == {
        "bm25": {"raw_score": 19.95, "rank": None, "normalised": None, "weighted": 0.5 * 19.95},
        "text_knn": {"raw_score": 0.85, "rank": 6, "normalised": None, "weighted": 0.5 * 0.85},
    }
    engine.calls.clear()
    svc.search(SearchQuery(text="coat", fusion="native", page=2, size=5))
    assert [kind for kind, _ in engine.calls] == ["search", "mget"]


def test_each_encoder_runs_once_and_the_fused_vector_combines_text_and_image(settings: Settings) -> None:
    encs = encoders()
    svc, engine = service(settings, encoders=encs)
    response = svc.search(SearchQuery(text="red coat", image=png(20, 10)))
    assert set(response.retrievers) == {"bm25", "text_knn", "image_knn", "colour_knn", "fused_knn"}
    assert [e.calls for e in encs.values()] == [1, 1, 1]
    bodies = engine.calls[0][1]
    fused = next(b for b in bodies if "fused_vector" in str(b.get("query", {}).get("knn", {})))
    vector = np.array(fused["query"]["knn"]["fused_vector"]["vector"])
    text = encs["text"].embed_query("red coat")
    assert vector.shape == (14,)
    assert np.allclose(vector[:8], math.sqrt(0.5) * text, atol=1e-6)
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-5)
    assert {"image_decode", "text", "image", "colour"} <= set(response.timings["encode"])


def test_vector_records_are_read_once_and_cached(settings: Settings) -> None:
    svc, engine = service(settings)
    for _ in range(3):
        svc.search(SearchQuery(text="coat"))
    assert engine.record_reads == 1


def test_an_encoder_other_than_the_indexed_one_is_refused(settings: Settings) -> None:
    records = {**RECORDS, "text_vector": {"encoder": "minilm", "version": "abc", "dim": 8}}
    svc, engine = service(settings, records=records)
    with pytest.raises(EncoderMismatchError, match="text_vector"):
        svc.search(SearchQuery(text="coat"))
    assert engine.calls == []


def test_text_only_index_answers_text_and_refuses_images(settings: Settings) -> None:
    records = {"text_vector": RECORDS["text_vector"]}
    svc, _ = service(settings, records=records, encoders={"text": FakeEncoder("fake-text", "text", 8)})
    assert set(svc.search(SearchQuery(text="coat")).retrievers) == {"bm25", "text_knn"}
    with pytest.raises(ValidationError, match="no retriever can answer"):
        svc.search(SearchQuery(image=png(8, 8)))


def test_oversized_and_bad_query_images_are_refused(settings: Settings) -> None:
    from PIL import Image

    svc, engine = service(settings)
    cases = [
        (png(100, 100), "too many pixels"),  # 10,000 > image_max_pixels 4096
        (Image.new("RGB", (100, 100)), "too many pixels"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 3000, "too large"),  # > image_max_bytes 2048
        (b"<html>not an image</html>", "unsupported format"),
    ]
    for image, message in cases:
        with pytest.raises(ValidationError, match=message) as info:
            svc.search(SearchQuery(image=image))
        assert info.value.field == "image"
    assert engine.calls == []


def test_a_pil_query_image_is_converted_to_rgb(settings: Settings) -> None:
    from PIL import Image

    svc, _ = service(settings)
    response = svc.search(SearchQuery(image=Image.new("L", (30, 20))))
    assert set(response.retrievers) == {"image_knn", "colour_knn"}


def test_response_to_dict_is_json_ready(settings: Settings) -> None:
    import json

    svc, _ = service(settings)
    data = svc.search(SearchQuery(text="coat", explain=True, size=2)).to_dict()
    assert set(data) == {
        "hits", "total", "total_relation", "page", "size", "available", "fusion", "retrievers", "facets", "timings",
    }  # fmt: skip
    json.dumps(data)
    assert set(data["hits"][0]) == {"id", "rank", "score", "fields", "explain"}


def test_search_threads_setting_sets_torch_intra_op_threads() -> None:
    torch = pytest.importorskip("torch")
    from hybrid_search.search import apply_search_threads

    before = torch.get_num_threads()
    try:
        apply_search_threads(load_settings(search_torch_threads=1))
        assert torch.get_num_threads() == 1
        apply_search_threads(load_settings(search_torch_threads=0))  # 0 leaves it as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ---- the stages ---------------------------------------------------------------------------------------------

STAGES = ("understand", "plan", "encode", "retrieve", "rankers", "present")


def stages_entered(run: Any) -> list[str]:
    """The stage modules entered (a call from another module into one of theirs), in order, while ``run()``."""
    import inspect
    import sys

    from hybrid_search.ranking import rankers
    from hybrid_search.search import encode, plan, present, retrieve, understand

    files = {
        m.__file__: m.__name__.rsplit(".", 1)[1]
        for m in (understand, plan, encode, retrieve, rankers, present)
    }
    entered: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call" or frame.f_code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE):
            return  # a generator resumed by its consumer has not been entered again
        callee, caller = frame.f_code.co_filename, frame.f_back.f_code.co_filename if frame.f_back else None
        if callee in files and callee != caller:
            entered.append(files[callee])

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return entered


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(text="red coat", explain=True),
        SearchQuery(text="red coat", fusion="native", explain=True),
        SearchQuery(text="red coat", fusion="rrf", facets=False),
        SearchQuery(image=png(20, 10), explain=True),
        SearchQuery(text="red coat", image=png(20, 10), fusion="learned"),
    ],
)
def test_a_query_passes_each_stage_once_in_order(settings: Settings, query: SearchQuery) -> None:
    svc, _ = service(settings)
    assert stages_entered(lambda: svc.search(query)) == list(STAGES)


def test_understand_resolves_the_query_then_the_tuned_configuration_then_the_settings(
    settings: Settings,
) -> None:
    from hybrid_search.search.understand import understand

    tuned = {"fusion": "rrf", "rank_constant": 10, "rank_window": 40, "weights": {"bm25": 0.2}}
    resolved = understand(SearchQuery(text="coat", filters=Filters(colour="red")), settings, tuned=tuned)
    assert (resolved.method, resolved.rank_constant, resolved.window) == ("rrf", 10, 40)
    assert resolved.normaliser == settings.fusion_normaliser  # not tuned: the settings'
    assert resolved.default_weights["bm25"] == 0.2 and resolved.default_weights["text_knn"] == 0.5
    assert resolved.filters == ({"term": {"colour.keyword": "red"}},)
    own = understand(SearchQuery(text="coat", fusion="linear", rank_window=20, weights={"bm25": 1.0}), settings,
                     tuned=tuned)  # fmt: skip
    assert (own.method, own.window, own.weights) == ("linear", 20, {"bm25": 1.0})
    with pytest.raises(ValidationError) as info:  # page 5 of 10 needs 50 candidates, the tuned window is 40
        understand(SearchQuery(text="coat", page=5, size=10), settings, tuned=tuned)
    assert info.value.field == "page"


class TunedEngine(FakeEngine):
    """The fake engine with a tuned configuration (and its models) in the index's ``_meta``."""

    def __init__(self, config: dict[str, Any], lists: dict[str, list[tuple[str, float]]] = LISTS) -> None:
        super().__init__(RECORDS, lists)
        self.config = config

    def tuned_config(self, index: str) -> dict[str, Any] | None:
        return self.config


def learned_model() -> Any:
    from hybrid_search.ranking.learned import FEATURES, LearnedFusion

    n = len(FEATURES)
    return LearnedFusion(
        mean=(0.0,) * n, scale=(1.0,) * n, coef=tuple(1.0 if i == 3 else 0.1 for i in range(n))
    )


def adaptive_model(share: float) -> Any:
    from hybrid_search.ranking.adaptive import FEATURES, AdaptiveFusion

    n = len(FEATURES)
    rows = ((1.0,) + (0.0,) * n, (0.0,) * (n + 1))  # the first grid weight always wins
    return AdaptiveFusion(grid=(share, 0.5), mean=(0.0,) * n, scale=(1.0,) * n, coef=rows, alpha=1.0)


def test_learned_fusion_ranks_text_queries_and_says_so(settings: Settings) -> None:
    from hybrid_search.ranking.fusion import Hit

    model = learned_model()
    engine = TunedEngine({"learned": model.to_dict()})
    svc = SearchService(settings, engine, encoders())  # type: ignore[arg-type]
    query = SearchQuery(text="red coat", fusion="learned", explain=True)
    response = svc.search(query)
    assert response.fusion == {
        "method": "learned", "normaliser": None, "rank_constant": None, "rank_window": 50,
        "weights": {"bm25": 0.5, "text_knn": 0.5}, "learned": True,
    }  # fmt: skip
    lists: dict[str, list[Hit]] = svc.retrieve(query)
    titles = {
        h.doc_id: f"title {h.doc_id}" for hits in lists.values() for h in hits
    }  # every title in doc values
    assert [h.id for h in response.hits] == [
        f.doc_id for f in model.fuse("red coat", lists, titles, limit=10)
    ]
    assert all(set(h.explain or {}) == {"bm25", "text_knn", "title_match"} for h in response.hits)
    assert all(
        math.isclose(h.score, math.fsum(e["weighted"] for e in (h.explain or {}).values()))
        for h in response.hits
    )
    assert response.available == 90


def test_learned_fusion_falls_back_to_linear_for_a_photo_and_needs_a_model_for_text(
    settings: Settings,
) -> None:
    svc = SearchService(settings, TunedEngine({}), encoders())  # type: ignore[arg-type]
    photo = svc.search(SearchQuery(image=png(20, 10), fusion="learned"))
    assert photo.fusion["method"] == "linear" and photo.fusion["normaliser"] == "minmax"
    assert photo.fusion["learned"] == "learned fusion ranks text queries without a photo"
    assert "photo_kind" in photo.fusion  # what linear fusion is for a photo without words
    with pytest.raises(ValidationError, match="no learned fusion model") as info:
        svc.search(SearchQuery(text="red coat", fusion="learned"))
    assert info.value.field == "fusion"


def test_adaptive_fusion_predicts_this_querys_weights(settings: Settings) -> None:
    engine = TunedEngine({"adaptive": adaptive_model(0.8).to_dict()})
    svc = SearchService(settings, engine, encoders())  # type: ignore[arg-type]
    response = svc.search(SearchQuery(text="red coat", explain=True))
    assert response.fusion["adaptive"] is True
    assert response.fusion["weights"] == {"bm25": 0.2, "text_knn": 0.8}
    fixed = svc.search(SearchQuery(text="red coat", weights={"bm25": 0.5}, explain=True))  # its own weights
    assert "adaptive" not in fixed.fusion and fixed.fusion["weights"] == {"bm25": 0.5, "text_knn": 0.5}
    assert "adaptive" not in svc.search(SearchQuery(text="red coat", fusion="rrf")).fusion
    untuned = SearchService(settings, engine, encoders(), use_tuned=False)  # type: ignore[arg-type]
    assert "adaptive" not in untuned.search(SearchQuery(text="red coat")).fusion


def test_a_model_is_read_only_by_a_query_it_ranks(settings: Settings) -> None:
    from hybrid_search.errors import ConfigurationError

    svc = SearchService(settings, TunedEngine({"adaptive": {"broken": True}}), encoders())  # type: ignore[arg-type]
    assert svc.search(SearchQuery(text="red coat", fusion="rrf")).fusion["method"] == "rrf"
    with pytest.raises(ConfigurationError, match="adaptive fusion model"):
        svc.search(SearchQuery(text="red coat"))


def test_from_settings_builds_the_engine_and_the_search_encoders() -> None:
    from hybrid_search.search import search_encoders

    for engine_kind in ("opensearch", "elasticsearch"):
        settings = load_settings(engine=engine_kind)
        built = SearchService.from_settings(settings, use_tuned=False)
        try:
            assert built.engine.kind == engine_kind and built.use_tuned is False
            assert set(built.encoders) == set(search_encoders(settings))
        finally:
            built.engine.close()
    given, _ = service(load_settings())
    reused = SearchService.from_settings(given.settings, engine=given.engine)
    assert reused.engine is given.engine and reused.use_tuned is True


# ---- an attached index (a shop's own) -----------------------------------------------------------------------

ATTACHED_RECORDS = {
    "hs_text_vector": {"encoder": "fake-text", "version": "v1", "dim": 8, "similarity": "cosine"},
    "hs_image_vector": {"encoder": "fake-image", "version": "v1", "dim": 6, "similarity": "cosine"},
}


class AttachedEngine(FakeEngine):
    """A shop index whose ``_meta`` records an attachment: hits carry ``_id`` and revision, ``_mget`` the shop's
    names; each shop document's ``_id`` is its sku with a leading underscore."""

    def __init__(self, attachment: dict[str, Any]) -> None:
        lists = {
            "bm25": LISTS["bm25"],
            "hs_text_vector": LISTS["text_vector"],
            "hs_image_vector": LISTS["image_vector"],
        }
        super().__init__(ATTACHED_RECORDS, lists)
        self.attachment = attachment
        self.rendered: list[tuple[str, dict[str, Any]]] = []

    def attachment_meta(self, index: str) -> dict[str, Any] | None:
        return dict(self.attachment)

    def render_template(self, template_id: str, params: dict[str, Any]) -> dict[str, Any]:
        self.rendered.append((template_id, params))
        return {"query": {"match": {"name": params["query"]}}, "size": 10}

    def _answer(self, request: SearchRequest) -> dict[str, Any]:
        if request.size and request.knn:  # the fake answers kNN by field; exact clauses too
            request = SearchRequest(
                knn=request.knn, filter=request.filter, size=request.size, source=request.source
            )
        answer = super()._answer(request)
        for hit in answer["hits"]["hits"]:
            doc = hit.pop("fields")["id"][0]
            hit.update({"_id": f"_{doc}", "_index": "shop", "_seq_no": 3, "_primary_term": 1})
        return answer

    def get_fields(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append(("mget", [{"ids": list(ids), "fields": list(fields)}]))
        return {
            d: {
                "sku": d[1:],
                "name": f"Name {d[1:]}",
                "colours": ["Red"],
                "price_usd": 9.5,
                "picture": f"p/{d[1:]}.jpg",
            }
            for d in ids
        }


def attachment(**changes: Any) -> dict[str, Any]:
    from hybrid_search.catalog.attachment import AttachConfig, ImageSource, LexicalSpec

    config = AttachConfig(
        index="shop", schema=FieldSchema(id="sku", title="name", colour="colours", price="price_usd", image="picture"),
        lexical=LexicalSpec(fields=("name^3", "body")), images=ImageSource(url_base="https://cdn.example.com/"),
        knn="exact",
    )  # fmt: skip
    return {**config.to_meta(), **changes}


def test_an_attached_index_is_searched_by_its_attachment(settings: Settings) -> None:
    engine = AttachedEngine(attachment())
    svc = SearchService(settings, engine, encoders())  # type: ignore[arg-type]
    response = svc.search(SearchQuery(text="red coat", size=3, filters=Filters(colour="Red")), index="shop")
    assert [kind for kind, _ in engine.calls] == ["msearch", "mget"]  # retrieval, then the page's fields
    bm25, knn, facets = engine.calls[0][1]
    shop_query = {"multi_match": {"query": "red coat", "fields": ["name^3", "body"], "type": "best_fields",
                                  "operator": "or"}}  # fmt: skip
    assert bm25["query"]["bool"]["should"] == [shop_query]
    assert bm25["query"]["bool"]["filter"] == [{"term": {"colours": "Red"}}]
    assert bm25["_source"] is False and bm25["seq_no_primary_term"] is True and "docvalue_fields" not in bm25
    shop_fields = ["sku", "name", "colours", "price_usd", "picture"]
    assert engine.calls[1][1] == [{"ids": ["_b000", "_b001", "_b002"], "fields": shop_fields}]
    script = knn["query"]["script_score"]
    assert script["script"]["params"]["field"] == "hs_text_vector"
    assert script["script"]["params"]["space_type"] == "cosinesimil"
    assert {"term": {"colours": "Red"}} in script["query"]["bool"]["filter"]  # the same pre-filter
    assert set(facets["aggs"]) == {"colour", "price"}
    top = response.hits[0]
    assert top.id == "b000"  # the shop's id (its _id here is "_b000")
    assert top.fields == {
        "id": "b000", "title": "Name b000", "brand": None, "category_path": None, "colour": ["Red"], "price": 9.5,
        "currency": None, "image_url": "https://cdn.example.com/p/b000.jpg",
    }  # fmt: skip
    assert svc.profile("shop") is svc.profile("shop")  # parsed once while the attachment is the same
    again = svc.search(SearchQuery(text="red coat", size=3, filters=Filters(colour="Red")), index="shop")
    assert [kind for kind, _ in engine.calls] == [
        "msearch",
        "mget",
        "msearch",
    ]  # same revisions: cached fields
    assert again.hits[0].fields == top.fields


def test_an_attached_index_explains_native_by_its_ids_and_renders_a_stored_template(
    settings: Settings,
) -> None:
    engine = AttachedEngine(attachment(lexical={"template": "shop-search"}, knn="approximate"))
    svc = SearchService(settings, engine, encoders())  # type: ignore[arg-type]
    response = svc.search(SearchQuery(text="coat", size=3, fusion="native", explain=True), index="shop")
    assert engine.rendered == [("shop-search", {"query": "coat"})]  # one render per query
    assert [kind for kind, _ in engine.calls] == ["search", "msearch", "mget"]  # native, explain, the page
    native = engine.calls[0][1][0]
    assert native["query"]["bool"]["should"][0] == {
        "bool": {"must": [{"match": {"name": "coat"}}], "boost": 0.5}
    }
    assert "knn" in native["query"]["bool"]["should"][1]  # approximate: HNSW
    explain_bm25 = engine.calls[1][1][0]
    assert {"ids": {"values": [f"_{h.id}" for h in response.hits]}} in explain_bm25["query"]["bool"]["filter"]
    assert [h.id for h in response.hits] == ["b000", "b001", "b002"]


def test_an_attached_query_passes_each_stage_once_in_order(settings: Settings) -> None:
    svc = SearchService(settings, AttachedEngine(attachment()), encoders())  # type: ignore[arg-type]
    assert stages_entered(
        lambda: svc.search(SearchQuery(text="red coat", explain=True), index="shop")
    ) == list(STAGES)
