"""The page's display fields through the search service, on each real engine: read from ``_source`` once per
stored revision of a product, then from the service's display cache; a product written since is read again.

Vectors come from a deterministic stand-in for the text encoder (the model is not the subject here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hybrid_search.engine import EncoderRef, SearchEngine, load_definition
from hybrid_search.search import SearchQuery, SearchService
from hybrid_search.settings import Settings

pytestmark = pytest.mark.integration

TEXT = EncoderRef("fake-text", "1")
PRODUCTS: list[dict[str, Any]] = [
    {"id": "mj01", "title": "Beaumont Summit Kit jacket", "brand": "Luma", "category_path": "Men > Jackets",
     "categories": ["Men", "Jackets"], "colour": "Red", "price": 42.0, "text_vector": [1.0, 0.0, 0.0, 0.0]},
    {"id": "mj02", "title": "Hyperion Elements jacket", "brand": "Luma", "category_path": "Men > Jackets",
     "categories": ["Men", "Jackets"], "colour": "Blue", "price": 51.0, "text_vector": [0.9, 0.1, 0.0, 0.0]},
    {"id": "wb01", "title": "Sprite Yoga Strap", "brand": "Sprite", "category_path": "Gear > Fitness",
     "categories": ["Gear", "Fitness"], "colour": "Blue", "price": 14.0, "text_vector": [0.0, 0.0, 1.0, 0.0]},
]  # fmt: skip


class TextStandIn:
    name, version, dim, modality = TEXT.name, TEXT.version, 4, "text"

    def embed_query(self, item: Any) -> np.ndarray[Any, Any]:
        return np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)


@pytest.fixture
def loaded(engine: SearchEngine, alias: str) -> str:
    engine.create_index(alias, load_definition({"text": (TEXT, 4)}))
    result = engine.bulk_write(alias, PRODUCTS, vector_sources={"text_vector": TEXT}, refresh=True)
    assert (result.written, result.errors) == (3, [])
    return alias


def search(service: SearchService, alias: str, fusion: str = "linear") -> Any:
    return service.search(SearchQuery(text="jacket", size=3, fusion=fusion), index=alias)


@pytest.mark.parametrize("fusion", ["linear", "native"])
def test_display_fields_are_read_once_per_revision(
    engine: SearchEngine, settings: Settings, loaded: str, fusion: str
) -> None:
    service = SearchService(
        settings.model_copy(update={"search_display": "source"}), engine, {"text": TextStandIn()}
    )
    first = search(service, loaded, fusion)
    assert "display_ms" in first.timings  # read from _source
    shown = {h.id: h.fields for h in first.hits}
    assert shown["mj01"] == {"id": "mj01", "title": "Beaumont Summit Kit jacket", "brand": "Luma",
                             "category_path": "Men > Jackets", "colour": "Red", "price": 42.0,
                             "currency": None, "image_url": None}  # fmt: skip
    again = search(service, loaded, fusion)
    assert "display_ms" not in again.timings  # every product of the page: same revision, no _mget
    assert {h.id: h.fields for h in again.hits} == shown
    assert [h.to_dict() for h in again.hits] == [h.to_dict() for h in first.hits]

    # a write gives the product a new revision: it is read again, the others still come from the cache
    changed = {**PRODUCTS[0], "price": 39.0, "colour": "Dark Red"}
    assert (
        engine.bulk_write(loaded, [changed], vector_sources={"text_vector": TEXT}, refresh=True).errors == []
    )
    misses = service.display_cache.misses
    after = search(service, loaded, fusion)
    assert "display_ms" in after.timings
    assert service.display_cache.misses == misses + 1
    fields = {h.id: h.fields for h in after.hits}
    assert (fields["mj01"]["price"], fields["mj01"]["colour"]) == (39.0, "Dark Red")
    assert fields["mj02"] == shown["mj02"]


def test_no_revision_in_what_a_hit_shows(engine: SearchEngine, settings: Settings, loaded: str) -> None:
    for display in ("source", "docvalues"):
        service = SearchService(settings.model_copy(update={"search_display": display}), engine,
                                {"text": TextStandIn()})  # fmt: skip
        for _ in range(2):
            hits = search(service, loaded).hits
            assert hits and all(not any(k.startswith("_") for k in h.fields) for h in hits), display
    off = SearchService(
        settings.model_copy(update={"search_display_cache": 0}), engine, {"text": TextStandIn()}
    )
    search(off, loaded)
    assert "display_ms" in search(off, loaded).timings  # no cache: every page is read
