"""The first-run demo (``hybrid-search demo``) on each engine: the two products go through the Ingestor, the query
through the SearchService, and the figures it prints agree with each other."""

from __future__ import annotations

import math

import pytest

from hybrid_search.engine import SearchEngine
from hybrid_search.evaluation.demo import DEMO_PRODUCTS, RETRIEVERS, run_demo
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]


def test_the_demo_indexes_both_products_and_explains_its_ranking(
    engine: SearchEngine, alias: str, settings: Settings
) -> None:
    result = run_demo(settings, engine, alias=alias)
    assert result.index == f"{alias}-v1" and engine.resolve_alias(alias) == [result.index]
    assert engine.count(alias) == len(DEMO_PRODUCTS)
    stored = engine.get_fields(alias, [p["id"] for p in DEMO_PRODUCTS], ["title", "text_hash"])
    assert {d: f["title"] for d, f in stored.items()} == {p["id"]: p["title"] for p in DEMO_PRODUCTS}
    assert all(f["text_hash"] for f in stored.values())  # written by the Ingestor, as every catalogue is

    # the jacket: BM25 finds only it, the text vectors rank it first; fused and summed, it leads
    assert [d for d, _ in result.bm25] == ["demo-1"]
    assert [d for d, _ in result.knn] == ["demo-1", "demo-2"]
    assert [h["id"] for h in result.fused] == ["demo-1", "demo-2"]
    assert [d for d, _ in result.native] == ["demo-1", "demo-2"]

    raw = {name: dict(hits) for name, hits in (("bm25", result.bm25), ("text_knn", result.knn))}
    for hit in result.fused:
        assert set(hit["explain"]) == set(RETRIEVERS)
        assert math.fsum(c["weighted"] for c in hit["explain"].values()) == pytest.approx(hit["score"])
        for name, part in hit["explain"].items():
            assert part["raw_score"] == (
                pytest.approx(raw[name][hit["id"]]) if hit["id"] in raw[name] else None
            )
    # the engine's own sum: the two raw scores added, each weighted 1
    for doc, score in result.native:
        assert score == pytest.approx(sum(raw[name].get(doc, 0.0) for name in RETRIEVERS), rel=1e-4)
