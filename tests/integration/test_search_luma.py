"""The hybrid query layer on the real engine, over the Luma catalogue ingested with real embeddings.

One index per engine for the session (``test-search-<random>``), filled by the library :class:`Ingestor`
(MiniLM text, EfficientNet-Lite0 photo, colour histogram and fused vectors) and deleted afterwards. The
catalogue is read from ``$HYBRID_SEARCH_DATASETS/luma`` (default ``../shared/datasets/luma``); a missing
catalogue is a failure, not a skip.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hybrid_search.catalog import Product, open_catalogue
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, definition_from_settings
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.search import Filters, SearchQuery, SearchService, search_encoders
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

REPO = Path(__file__).resolve().parents[2]
INDEX_ROLES = ("text", "image", "colour")


def luma_folder() -> Path:
    datasets = Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))
    return datasets / "luma"


@dataclass
class Luma:
    index: str
    service: SearchService
    products: dict[str, Product]
    folder: Path


@pytest.fixture(scope="session")
def luma_encoders(settings: Settings) -> dict[str, Any]:
    return search_encoders(settings)


@pytest.fixture(scope="session")
def luma(engine: SearchEngine, settings: Settings, luma_encoders: dict[str, Any]) -> Iterator[Luma]:
    folder = luma_folder()
    if not (folder / "products_flat.csv").is_file():
        pytest.fail(f"the Luma catalogue is missing at {folder}; set HYBRID_SEARCH_DATASETS", pytrace=False)
    catalogue = open_catalogue(folder)
    products = {p.id: p for p in catalogue.records() if isinstance(p, Product)}
    assert len(products) == 199
    index_encoders = {role: e for role, e in luma_encoders.items() if role in INDEX_ROLES}
    alias = f"test-search-{uuid.uuid4().hex[:10]}"
    engine.create_index(alias, definition_from_settings(settings, encoder_records(settings, index_encoders)))
    try:
        ingestor = Ingestor(settings, engine, index_encoders)
        records = [p.to_input() for p in products.values()]
        indexed: list[str] = []
        for start in range(0, len(records), 64):
            report = ingestor.ingest(
                records[start : start + 64], index=alias, base_dir=catalogue.base_dir, refresh=True
            )
            assert report.failed == []
            indexed += report.indexed
        assert len(indexed) == 199
        engine.refresh(alias)
        yield Luma(alias, SearchService(settings, engine, luma_encoders), products, folder)
    finally:
        for name in engine.versions(alias).values():
            engine.delete_index(name)


def all_ids(luma: Luma, retriever: str, **kwargs: Any) -> list[str]:
    """Every hit of one retriever alone (the others weighted 0), in order, over a window holding the catalogue."""
    weights = dict.fromkeys(("bm25", "text_knn", "image_knn", "colour_knn", "fused_knn"), 0.0)
    weights[retriever] = 1.0
    ids: list[str] = []
    for page in (1, 2):
        query = SearchQuery(weights=weights, page=page, size=100, rank_window=200, facets=False, **kwargs)
        ids += [h.id for h in luma.service.search(query, index=luma.index).hits]
    return ids


def photo(luma: Luma, product: Product) -> bytes:
    assert product.main_image is not None
    return (luma.folder / product.main_image).read_bytes()


def test_filters_change_every_retriever_the_same_way(luma: Luma) -> None:
    """Each retriever, filtered, returns exactly its unfiltered results that pass the filter, in the same order."""
    product = luma.products["MJ07"]  # a jacket, so the query image is a jacket photo
    inputs = {"text": "warm jacket for running", "image": photo(luma, product)}
    filters = Filters(category="Jackets", price_max=70)
    allowed = {
        p.id
        for p in luma.products.values()
        if "Jackets" in p.document()["categories"] and p.price is not None and p.price <= 70
    }
    assert 5 < len(allowed) < 30
    for retriever in ("bm25", "text_knn", "image_knn", "colour_knn", "fused_knn"):
        unfiltered = all_ids(luma, retriever, **inputs)
        filtered = all_ids(luma, retriever, filters=filters, **inputs)
        assert set(filtered) <= allowed, retriever
        assert filtered == [d for d in unfiltered if d in allowed], retriever
        if (
            retriever != "bm25"
        ):  # kNN pre-filters: k = 200 > |allowed|, so every allowed product with a vector
            with_vector = {d for d in allowed if retriever == "text_knn" or luma.products[d].main_image}
            assert set(filtered) == with_vector, retriever
        assert set(unfiltered) - allowed, retriever  # the filter did remove something


def test_keyword_attribute_and_colour_filters(luma: Luma) -> None:
    query = SearchQuery(
        text="shirt", filters=Filters(colour="RED", attributes={"climate": "Cool"}), size=50, rank_window=100
    )
    response = luma.service.search(query, index=luma.index)
    assert response.hits
    for hit in response.hits:
        product = luma.products[hit.id]
        assert "Red" in product.colours
        assert "Cool" in product.attributes.get("climate", [])
    assert response.facets is not None
    assert {"value": "red", "count": response.total} in response.facets["colour"]


@pytest.mark.parametrize("fusion", ["linear", "rrf", "native"])
def test_pagination_is_stable(luma: Luma, fusion: str) -> None:
    base: dict[str, Any] = {"text": "yoga pants", "fusion": fusion, "rank_window": 60}
    whole = luma.service.search(SearchQuery(size=60, **base), index=luma.index)
    pages = [luma.service.search(SearchQuery(page=p, size=12, **base), index=luma.index) for p in range(1, 6)]
    ids = [h.id for page in pages for h in page.hits]
    assert len(ids) == len(set(ids)) == 60
    assert ids == [h.id for h in whole.hits]
    assert [h.rank for page in pages for h in page.hits] == list(range(1, 61))


@pytest.mark.parametrize(
    ("fusion", "normaliser"),
    [("linear", "minmax"), ("linear", "zscore"), ("linear", "dbsf"), ("rrf", "minmax")],
)
def test_explain_adds_up_to_the_score(luma: Luma, fusion: str, normaliser: str) -> None:
    query = SearchQuery(
        text="red hoodie",
        image=photo(luma, luma.products["MH07"]),
        fusion=fusion,
        normaliser=normaliser,
        explain=True,
        size=20,
        weights={"bm25": 0.4, "fused_knn": 0.2},
    )
    response = luma.service.search(query, index=luma.index)
    assert set(response.retrievers) == {"bm25", "text_knn", "image_knn", "colour_knn", "fused_knn"}
    bm25_alone = all_ids(luma, "bm25", text="red hoodie")
    for hit in response.hits:
        assert hit.explain is not None
        assert hit.score == math.fsum(c["weighted"] for c in hit.explain.values())
        bm25 = hit.explain["bm25"]
        if bm25["rank"] is not None:  # the rank in the fused explain is the rank in BM25 alone
            assert bm25_alone[bm25["rank"] - 1] == hit.id
        if fusion == "linear":
            for name, c in hit.explain.items():
                assert c["weighted"] == pytest.approx(response.fusion["weights"][name] * c["normalised"])


def test_an_image_query_with_a_catalogue_photo_returns_that_product_first(luma: Luma) -> None:
    shared = Counter(p.main_image for p in luma.products.values())
    candidates = [p for p in luma.products.values() if p.main_image and shared[p.main_image] == 1]
    chosen = candidates[:: len(candidates) // 8][:8]
    for product in chosen:
        response = luma.service.search(SearchQuery(image=photo(luma, product), size=3), index=luma.index)
        assert response.hits[0].id == product.id, product.title
        assert set(response.retrievers) == {"image_knn", "colour_knn"}


def test_facets_count_the_filtered_candidate_set(luma: Luma) -> None:
    response = luma.service.search(
        SearchQuery(text="bag", filters=Filters(category="Gear"), size=5), index=luma.index
    )
    assert response.facets is not None
    assert {"value": "Gear", "count": response.total} in response.facets["category"]
    gear = [p for p in luma.products.values() if "Gear" in p.document()["categories"]]
    assert response.total == len(gear)  # text kNN's window (100) holds every Gear product
    assert sum(b["count"] for b in response.facets["price"]) == sum(1 for p in gear if p.price is not None)
    assert response.total >= response.available >= len(response.hits)


def test_native_ranks_by_the_engines_sum(luma: Luma) -> None:
    response = luma.service.search(
        SearchQuery(text="Orion Two-Tone Fitted Jacket", fusion="native", explain=True, size=5),
        index=luma.index,
    )
    assert response.hits[0].id == "MJ07"
    scores = [h.score for h in response.hits]
    assert scores == sorted(scores, reverse=True)
    for hit in response.hits:  # explain: each retriever's weighted part, adding up to the engine's own sum
        assert hit.explain is not None and set(hit.explain) == set(response.retrievers)
        assert math.fsum(c["weighted"] for c in hit.explain.values()) == pytest.approx(hit.score, rel=1e-5)
        for name, part in hit.explain.items():
            if part["raw_score"] is not None:
                assert part["weighted"] == pytest.approx(response.fusion["weights"][name] * part["raw_score"])
    assert response.facets is not None and response.total >= 5


def test_cli_search_prints_json(luma: Luma, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hybrid_search import cli

    if luma.service.engine.kind != "opensearch":
        pytest.skip("the CLI reads the engine from the settings (OpenSearch here)")
    result = CliRunner().invoke(
        cli.app,
        [
            "search",
            "red jacket",
            "--filter",
            "price_max=80",
            "--explain",
            "--json",
            "--index",
            luma.index,
            "--size",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert {"hits", "total", "facets", "timings", "fusion"} <= set(data)
    assert len(data["hits"]) == 3 and all(h["explain"] for h in data["hits"])
    assert all(h["fields"]["price"] <= 80 for h in data["hits"])
