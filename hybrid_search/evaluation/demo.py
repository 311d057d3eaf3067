"""The first-run demo: index two products with real text embeddings and run a hybrid query on them.

It shows the whole path on the live engine: mapping files -> versioned index behind an alias -> bulk write with
vectors -> BM25 and kNN in one ``_msearch`` round trip -> client-side fusion, plus the engine's own ``native`` sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hybrid_search.catalog import product_text
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import EncoderRef, SearchEngine, definition_from_settings
from hybrid_search.ranking.fusion import Hit, fuse
from hybrid_search.search.bodies import bm25_request, knn_request, native_hybrid_request
from hybrid_search.settings import Settings

DEMO_ALIAS = "hybrid-search-demo"
DEMO_PRODUCTS: tuple[dict[str, Any], ...] = (
    {
        "id": "demo-1",
        "title": "Beaumont Summit Kit",
        "description": "A rain-proof shell with sealed seams and a packable hood, for wet days on the trail.",
        "brand": "Luma",
        "category_path": "Men > Tops > Jackets",
        "categories": ["Men", "Tops", "Jackets"],
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
        "categories": ["Gear", "Fitness Equipment"],
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


def _hits(response: dict[str, Any]) -> list[tuple[str, float]]:
    return [(h["_id"], float(h["_score"])) for h in response["hits"]["hits"]]


def run_demo(
    settings: Settings, engine: SearchEngine, query: str = "waterproof jacket for hiking"
) -> DemoResult:
    """(Re)create the demo index, write the two products with MiniLM vectors, and search them."""
    from hybrid_search.encoders import get_encoder

    text_encoder = get_encoder(settings.text_encoder, device=settings.device, modality="text")
    for old in engine.versions(DEMO_ALIAS).values():
        engine.delete_index(old)
    definition = definition_from_settings(settings, encoder_records(settings, {"text": text_encoder}))
    index = engine.create_index(DEMO_ALIAS, definition)
    vectors = text_encoder.embed_documents([product_text(p) for p in DEMO_PRODUCTS])
    docs = [{**p, "text_vector": v.tolist()} for p, v in zip(DEMO_PRODUCTS, vectors, strict=True)]
    written = engine.bulk_write(
        DEMO_ALIAS, docs, vector_sources={"text_vector": EncoderRef(text_encoder.name, text_encoder.version)},
        refresh=True,
    )  # fmt: skip
    if written.errors:
        raise RuntimeError(f"demo products were refused: {written.errors}")

    q = text_encoder.embed_query(query).tolist()
    bm25, knn = engine.msearch(
        DEMO_ALIAS, [bm25_request(query, size=10), knn_request("text_vector", q, size=10)]
    )
    lists = {"bm25": _hits(bm25), "text_knn": _hits(knn)}
    fused = fuse(
        "linear",
        {name: [Hit(doc_id, score) for doc_id, score in hits] for name, hits in lists.items()},
        {"bm25": settings.fusion_bm25_weight, "text_knn": settings.fusion_text_knn_weight},
        normaliser=settings.fusion_normaliser,
    )
    native = engine.search(DEMO_ALIAS, native_hybrid_request(query, "text_vector", q, size=10))
    return DemoResult(
        index=index,
        query=query,
        bm25=lists["bm25"],
        knn=lists["text_knn"],
        fused=[
            {
                "id": f.doc_id,
                "score": f.score,
                "explain": {k: c._asdict() for k, c in f.contributions.items()},
            }
            for f in fused
        ],
        native=_hits(native),
    )


__all__ = ["DEMO_ALIAS", "DEMO_PRODUCTS", "DemoResult", "run_demo"]
