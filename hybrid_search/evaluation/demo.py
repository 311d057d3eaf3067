"""The first-run demo: index two products with real text embeddings and run a hybrid query on them.

It takes the path every catalogue takes, on the live engine: the mapping files -> a versioned index behind an alias
-> the :class:`~hybrid_search.ingest.pipeline.Ingestor` (validate, embed, bulk write) -> the
:class:`~hybrid_search.search.SearchService`: each retriever's own list, their client-side ``linear`` fusion with
each retriever's share, and the engine's own ``native`` sum of the two raw scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrid_search.engine import SearchEngine
from hybrid_search.ingest.indices import create_version
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.search import SearchQuery, SearchService
from hybrid_search.settings import Settings

DEMO_ALIAS = "hybrid-search-demo"
DEMO_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "id": "demo-1",
        "title": "Beaumont Summit Kit",
        "description": "A rain-proof shell with sealed seams and a packable hood, for wet days on the trail.",
        "brand": "Luma",
        "category_path": "Men > Tops > Jackets",
        "colour": "Red",
        "material": "Nylon",
        "price": 42.0,
        "currency": "USD",
    },
    {
        "id": "demo-2",
        "title": "Sprite Yoga Strap 8 foot",
        "description": "A cotton strap that helps you hold stretches longer and go deeper into poses.",
        "brand": "Sprite",
        "category_path": "Gear > Fitness Equipment",
        "colour": "Blue",
        "material": "Cotton",
        "price": 14.0,
        "currency": "USD",
    },
)


@dataclass
class DemoResult:
    index: str
    query: str
    bm25: list[tuple[str, float]]
    knn: list[tuple[str, float]]
    fused: list[dict[str, Any]]
    native: list[tuple[str, float]]


RETRIEVERS = ("bm25", "text_knn")  # the demo's two retrievers: BM25 and the text vectors
SIZE = 10  # hits asked of each retriever, of the fusion and of the engine's sum


def run_demo(
    settings: Settings,
    engine: SearchEngine,
    query: str = "waterproof jacket for hiking",
    *,
    alias: str = DEMO_ALIAS,
) -> DemoResult:
    """(Re)create the demo index behind ``alias``, ingest the two products with text vectors only, and search
    them.

    The index, the ingestor and the search service all use the text encoder alone: no image model is loaded.
    """
    from hybrid_search.encoders import get_encoder

    demo = settings.model_copy(update={"index_alias": alias})
    encoders = {"text": get_encoder(settings.text_encoder, device=settings.device, modality="text")}
    for old in engine.versions(alias).values():
        engine.delete_index(old)
    index = create_version(demo, engine, encoders=encoders)
    report = Ingestor(demo, engine, encoders).ingest(list(DEMO_PRODUCTS), index=alias, refresh=True)
    if report.failed:
        raise RuntimeError(f"demo products were refused: {report.failed}")

    service = SearchService(demo, engine, encoders, use_tuned=False)
    asked = SearchQuery(text=query, size=SIZE, rank_window=SIZE, fusion="linear", explain=True, facets=False)
    lists = service.retrieve(asked)
    fused = service.search(asked).hits
    native = service.search(
        SearchQuery(text=query, size=SIZE, rank_window=SIZE, fusion="native", facets=False,
                    weights=dict.fromkeys(RETRIEVERS, 1.0))
    ).hits  # fmt: skip
    return DemoResult(
        index=index,
        query=query,
        bm25=[(h.doc_id, h.score) for h in lists.get("bm25", [])],
        knn=[(h.doc_id, h.score) for h in lists.get("text_knn", [])],
        fused=[{"id": h.id, "score": h.score, "explain": h.explain} for h in fused],
        native=[(h.id, h.score) for h in native],
    )


__all__ = ["DEMO_ALIAS", "DEMO_PRODUCTS", "RETRIEVERS", "SIZE", "DemoResult", "run_demo"]
