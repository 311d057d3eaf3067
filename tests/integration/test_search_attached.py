"""Search over an attached index (a shop's own), on both engines: everything the own index does, by the shop's names.

One shop index per engine for the module (:func:`shop_support.shop_index`: the 199 Luma products under the
shop's names, no k-NN setting), attached by hand the way ``hybrid-search attach apply`` does (the ``hs_`` fields
added to its mapping, the vector records and the attachment written into its ``_meta``), and embedded by the
library :class:`~hybrid_search.ingest.attached.AttachedIngestor` with the real encoders, but for one product
(:data:`NOT_EMBEDDED`), which only BM25 can find. On OpenSearch the index has no ``index.knn``, so kNN is exact
(a ``script_score``); on Elasticsearch its ``dense_vector`` fields have HNSW graphs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from api_support import luma_folder, luma_products
from engine_support import ENGINES, elasticsearch_url, engine_settings
from fastapi.testclient import TestClient
from shop_support import ShopWriter, shop_index, write_attach_config

from hybrid_search.api import Services, create_app
from hybrid_search.catalog import Product
from hybrid_search.catalog.attachment import (
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    MODEL_VERSION_FIELD,
    VECTOR_FIELDS,
    AttachConfig,
    load_attach_config,
)
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, create_engine
from hybrid_search.errors import HybridSearchError
from hybrid_search.ingest.attached import AttachedIngestor
from hybrid_search.search import Filters, SearchQuery, SearchService, search_encoders
from hybrid_search.search.bodies import DISPLAY_ROLES
from hybrid_search.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

INDEX_ROLES = ("text", "image", "colour")
NOT_EMBEDDED = "MS04"  # left without vectors: BM25 still finds it
OWN_KEYS = set(DISPLAY_ROLES)  # the keys a hit's fields have on the own index
LEXICAL_QUERIES = ("hoodie", "yoga pants", "waterproof jacket for hiking", "women's tee", "gym bag", "red")


@dataclass
class Shop:
    kind: str
    writer: ShopWriter
    engine: SearchEngine
    settings: Settings
    service: SearchService
    config: AttachConfig
    products: dict[str, Product]

    @property
    def index(self) -> str:
        return self.writer.index

    def search(self, **kwargs: Any) -> Any:
        return self.service.search(SearchQuery(**kwargs), index=self.index)


def attach_by_hand(
    engine: SearchEngine, settings: Settings, encoders: dict[str, Any], config: AttachConfig
) -> AttachConfig:
    """What ``attach apply`` does: the ``hs_`` fields, the vector records and the attachment in ``_meta``."""
    state = engine.index_state(config.index)
    exact = not state.knn_setting
    records = {
        VECTOR_FIELDS[role]: {**ref.as_meta(), "dim": dim, "similarity": "cosine"}
        for role, (ref, dim) in encoder_records(settings, encoders).items()
        if role in VECTOR_FIELDS
    }
    fields: dict[str, Any] = {
        name: engine.vector_mapping(name, int(record["dim"]), "cosine", approximate=not exact)
        for name, record in records.items()
    }
    fields.update({CONTENT_HASH_FIELD: {"type": "keyword"}, MODEL_VERSION_FIELD: {"type": "keyword"},
                   EMBEDDED_AT_FIELD: {"type": "date"}})  # fmt: skip
    engine.add_fields(config.index, fields)
    schema = replace(config.schema, keywords={"name": "name.raw"})  # what attach plan finds
    attached = replace(config, schema=schema, knn="exact" if exact else "approximate")
    engine.update_meta_block(config.index, {"vectors": records, "attached": attached.to_meta()})
    return attached


def readable(writer: ShopWriter, timeout_s: float = 30.0) -> None:
    """Wait until the shop index answers a get again: right after the mapping update, the local OpenSearch node
    answered gets with 503 ``no_shard_available_action_exception`` for about a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = writer.http.get(f"/{writer.index}/_doc/MH01")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text[:500]
            return
        time.sleep(0.2)


@pytest.fixture(scope="module")
def encoders() -> dict[str, Any]:
    return search_encoders(load_settings())


@pytest.fixture(scope="module", params=ENGINES)
def shop(
    request: pytest.FixtureRequest, encoders: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    kind: str = request.param
    settings = engine_settings(kind)
    try:
        engine = create_engine(settings)
        engine.health(wait_for_status="yellow", timeout_s=30)
    except HybridSearchError as exc:
        if kind == "opensearch":
            pytest.fail(f"OpenSearch is not reachable: {exc}", pytrace=False)
        pytest.skip(f"Elasticsearch is not reachable at {elasticsearch_url()}: {exc}")
    url = settings.engine_url
    with shop_index(url, prefix="t-search-attached") as writer:
        config = load_attach_config(write_attach_config(tmp_path_factory.mktemp("attach"), writer.index))
        index_encoders = {role: e for role, e in encoders.items() if role in INDEX_ROLES}
        config = attach_by_hand(engine, settings, index_encoders, config)
        products = luma_products()
        readable(writer)
        ingestor = AttachedIngestor(settings, engine, index_encoders)
        ids = [i for i in products if i != NOT_EMBEDDED]
        for start in range(0, len(ids), 64):
            report = ingestor.embed(config, ids[start : start + 64], refresh=True)
            assert report.failed == [] and report.photo_failed == [] and report.missing == []
        engine.refresh(writer.index)
        service = SearchService(settings, engine, encoders)
        yield Shop(kind, writer, engine, settings, service, config, products)
    engine.close()


def test_the_service_finds_the_attachment_in_the_index_meta(shop: Shop) -> None:
    profile = shop.service.profile(shop.index)
    assert profile.attachment is not None and profile.schema.title == "name"
    assert profile.exact_knn is (shop.kind == "opensearch")  # the shop index has no index.knn there
    assert shop.service.profile(shop.index) is profile  # parsed once while the attachment stays the same


def test_text_search_finds_products_with_shop_ids_and_the_own_index_keys(shop: Shop) -> None:
    response = shop.search(text="Chaz Kangeroo Hoodie", size=5)
    top = response.hits[0]
    product = shop.products["MH01"]
    assert top.id == "MH01"
    assert set(top.fields) == OWN_KEYS
    assert top.fields["id"] == "MH01" and top.fields["title"] == product.title
    assert top.fields["price"] == pytest.approx(product.price)
    assert top.fields["colour"] == list(product.colours)
    assert top.fields["image_url"] == product.main_image  # relative to images.root, as the API serves it
    assert set(response.retrievers) == {"bm25", "text_knn"} | (set(response.retrievers) & {"text_to_image"})
    assert all(h.id in shop.products for h in response.hits)


@pytest.mark.parametrize("text", LEXICAL_QUERIES)
def test_bm25_alone_ranks_exactly_as_the_shops_own_query(shop: Shop, text: str) -> None:
    response = shop.search(text=text, weights={"text_knn": 0.0}, size=10)
    assert set(response.retrievers) == {"bm25"}
    ids = [h.id for h in response.hits]
    assert ids and ids == shop.writer.shop_search(text, size=10)


@pytest.mark.parametrize("sku", ["MJ07", "WB04", "WS03"])
def test_a_product_photo_finds_that_product(shop: Shop, sku: str) -> None:
    product = shop.products[sku]
    assert product.main_image is not None
    photo = (luma_folder() / product.main_image).read_bytes()
    response = shop.search(image=photo, size=3)
    assert "image_knn" in response.retrievers
    assert sku in [h.id for h in response.hits]


def test_filters_and_facets_read_the_shops_fields(shop: Shop) -> None:
    wanted = {
        p.id for p in shop.products.values()
        if "Red" in p.colours and p.price is not None and 30 <= p.price <= 80 and p.id != NOT_EMBEDDED
    }  # fmt: skip
    assert wanted
    response = shop.search(text="jacket", filters=Filters(colour="Red", price_min=30, price_max=80), size=50)
    assert response.hits and {h.id for h in response.hits} <= wanted | {NOT_EMBEDDED}
    for hit in response.hits:
        assert "Red" in hit.fields["colour"] and 30 <= hit.fields["price"] <= 80
    assert response.facets is not None and set(response.facets) == {"colour", "price"}
    colours = {b["value"]: b["count"] for b in response.facets["colour"]}
    assert colours["Red"] == response.total
    assert sum(b["count"] for b in response.facets["price"]) == response.total


@pytest.mark.parametrize("fusion", ["linear", "rrf", "native"])
def test_explain_adds_up_to_the_score(shop: Shop, fusion: str) -> None:
    response = shop.search(text="warm jacket", fusion=fusion, explain=True, size=5)
    assert response.hits
    for hit in response.hits:
        assert hit.explain is not None and set(hit.explain) == set(response.retrievers)
        total = math.fsum(part["weighted"] for part in hit.explain.values())
        assert total == pytest.approx(hit.score, rel=1e-4 if fusion == "native" else 1e-9)


def test_exact_knn_gives_the_brute_force_neighbours(shop: Shop, encoders: dict[str, Any]) -> None:
    if shop.kind != "opensearch":
        pytest.skip("exact kNN is the plain OpenSearch index's (the Elasticsearch one has HNSW)")
    text = "comfortable shorts for running"
    response = shop.search(text=text, weights={"bm25": 0.0, "text_knn": 1.0}, size=10, facets=False)
    query = np.asarray(encoders["text"].embed_query(text), dtype=np.float64)
    cosines = {}
    for doc_id, source in shop.writer.sources().items():
        vector = source.get(VECTOR_FIELDS["text"])
        if vector is None:
            continue
        v = np.asarray(vector, dtype=np.float64)
        cosines[doc_id] = float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))
    assert NOT_EMBEDDED not in cosines and len(cosines) == 198
    expected = sorted(cosines, key=lambda d: -cosines[d])[:10]
    assert [h.id for h in response.hits] == expected


def test_a_product_without_vectors_yet_is_found_by_bm25(shop: Shop) -> None:
    title = shop.products[NOT_EMBEDDED].title
    response = shop.search(text=title, size=3, explain=True)
    assert NOT_EMBEDDED in [h.id for h in response.hits]
    top = next(h for h in response.hits if h.id == NOT_EMBEDDED)
    assert top.fields["title"] == title
    assert top.explain is not None and top.explain["text_knn"]["raw_score"] is None  # no vector: no kNN score
    assert top.explain["bm25"]["raw_score"] is not None


def test_a_partial_price_update_by_the_shop_shows_at_once(shop: Shop) -> None:
    product = shop.products["MH01"]
    shop.writer.update("MH01", {"price_usd": 12.34})
    try:
        hit = shop.search(text=product.title, size=1).hits[0]
        assert hit.id == "MH01" and hit.fields["price"] == pytest.approx(12.34)
        cheap = shop.search(text=product.title, filters=Filters(price_max=13), size=5)
        assert "MH01" in [h.id for h in cheap.hits]
    finally:
        shop.writer.update("MH01", {"price_usd": product.price})


def test_the_api_serves_the_attached_index(shop: Shop) -> None:
    """``HYBRID_SEARCH_INDEX_ALIAS`` naming the shop index is all the API needs: search, facets and photos."""
    settings = shop.settings.model_copy(update={"index_alias": shop.index})

    def services(_: Settings) -> Services:  # the app closes its engine when it stops
        engine = create_engine(settings)
        return Services(
            settings=settings, engine=engine, search=SearchService(settings, engine, shop.service.encoders)
        )

    with TestClient(create_app(settings, services=services)) as client:
        found = client.post("/search", json={"text": "Chaz Kangeroo Hoodie", "size": 3})
        assert found.status_code == 200, found.text
        assert found.json()["hits"][0]["id"] == "MH01"
        facets = client.get("/facets")
        assert facets.status_code == 200 and set(facets.json()["facets"]) == {"colour", "price"}
        assert facets.json()["total"] == 199
        photo = client.get("/products/MH01/image")
        assert photo.status_code == 200 and photo.headers["content-type"].startswith("image/")
        assert photo.content == (luma_folder() / str(shop.products["MH01"].main_image)).read_bytes()
