"""Every photo of a product as its own vector, on the real engines: nested photo vectors, photo queries that match
any view, filters, re-ingestion, and the kind-aware photo fusion.

Catalogue: synthetic photos (flat colours and shapes on white) written to a temporary folder. Encoders: the real
Hellinger colour histogram, and deterministic stand-ins for text and image features (the model is not the
subject here): the image stand-in is an 8x8 grey thumbnail, so it sees shape and brightness, not hue.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid_search.encoders import get_encoder
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, definition_from_settings
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.search import Filters, SearchQuery, SearchService
from hybrid_search.settings import Settings

pytestmark = pytest.mark.integration
Image = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")


class TextStandIn:
    """Deterministic text vectors: a seeded random unit vector per text."""

    name, version, dim, modality = "test-text", "1", 16, "text"

    def embed_documents(self, items: list[str]) -> np.ndarray[Any, Any]:
        return np.stack([self.embed_query(text) for text in items])

    def embed_query(self, item: str) -> np.ndarray[Any, Any]:
        vector = np.random.default_rng(zlib.crc32(item.encode())).normal(size=self.dim)
        return (vector / np.linalg.norm(vector)).astype(np.float32)


class ShapeStandIn:
    """Deterministic image vectors: the photo as an 8x8 grey thumbnail (shape and brightness, no hue)."""

    name, version, dim, modality = "test-shape", "1", 65, "image"

    def embed_documents(self, items: list[Any]) -> np.ndarray[Any, Any]:
        return np.stack([self.embed_query(image) for image in items])

    def embed_query(self, item: Any) -> np.ndarray[Any, Any]:
        grey = np.asarray(item.convert("L").resize((8, 8)), dtype=np.float64).ravel() / 255.0
        vector = np.concatenate([1.0 - grey, [0.5]])  # dark pixels count; the constant keeps white non-zero
        return (vector / np.linalg.norm(vector)).astype(np.float32)


def photo(path: Path, colour: tuple[int, int, int], shape: str) -> str:
    """A 64x64 PNG: a ``shape`` ("tall", "wide" or "round") of ``colour`` on white."""
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    pixels = np.asarray(image).copy()
    yy, xx = np.mgrid[:64, :64]
    mask = {
        "tall": (abs(xx - 32) < 12) & (abs(yy - 32) < 28),
        "wide": (abs(xx - 32) < 28) & (abs(yy - 32) < 10),
        "round": (xx - 32) ** 2 + (yy - 32) ** 2 < 22**2,
    }[shape]
    pixels[mask] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")
    return path.name


RED, BLUE, YELLOW, GREEN, ORANGE = (200, 30, 30), (30, 40, 200), (230, 210, 40), (40, 170, 60), (240, 140, 20)
PURPLE = (130, 40, 160)


@pytest.fixture
def catalogue(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    folder = tmp_path / "shop"
    items = {
        # id: (title, category path, [(colour, shape), ...]) - the first photo is the main one
        "H1": ("Red hoodie", "Men/Tops/Hoodies", [(RED, "tall"), (RED, "round")]),
        "H2": ("Blue hoodie", "Men/Tops/Hoodies", [(BLUE, "tall"), (YELLOW, "tall")]),  # its back is yellow
        "H3": ("Green hoodie", "Men/Tops/Hoodies", [(GREEN, "tall")]),
        "B1": ("Orange bag", "Gear/Bags", [(ORANGE, "wide")]),
        "B2": ("Yellow bag", "Gear/Bags", [(YELLOW, "wide")]),
        "B3": ("Blue bag", "Gear/Bags", [(BLUE, "wide")]),
    }
    records = []
    for pid, (title, path, photos) in items.items():
        names = [photo(folder / f"{pid}-{n}.png", colour, shape) for n, (colour, shape) in enumerate(photos)]
        records.append({"id": pid, "title": title, "category_path": path, "images": names})
    return folder, records


@pytest.fixture
def encoders() -> dict[str, Any]:
    return {"text": TextStandIn(), "image": ShapeStandIn(), "colour": get_encoder("colour-hellinger")}


def ingest(
    settings: Settings, engine: SearchEngine, encoders: dict[str, Any], alias: str, folder: Path, records: Any
) -> Any:
    report = Ingestor(settings, engine, encoders).ingest(records, index=alias, base_dir=folder, refresh=True)
    assert report.failed == []
    return report


def ids(response: Any) -> list[str]:
    return [h.id for h in response.hits]


def test_a_photo_query_finds_the_product_through_any_of_its_photos(
    engine: SearchEngine,
    settings: Settings,
    alias: str,
    catalogue: tuple[Path, list[dict[str, Any]]],
    encoders: dict[str, Any],
) -> None:
    folder, records = catalogue
    engine.create_index(alias, definition_from_settings(settings, encoder_records(settings, encoders)))
    report = ingest(settings, engine, encoders, alias, folder, records)
    assert (len(report.indexed), report.images_embedded) == (6, 6)
    stored = engine.get_fields(alias, ["H1", "H2", "B1"], ["photos", "image_vector", "photos_hash"])
    assert [len(stored[p]["photos"]) for p in ("H1", "H2", "B1")] == [2, 2, 1]
    # the main photo's own vectors are the first nested object's
    assert stored["H2"]["photos"][0]["image_vector"] == pytest.approx(stored["H2"]["image_vector"])
    assert set(stored["H2"]["photos"][1]) == {"image_vector", "colour_vector"}

    service = SearchService(settings, engine, encoders)
    back = (folder / "H2-1.png").read_bytes()  # the yellow back of the blue hoodie, not its main photo
    for retriever in ("image_knn", "colour_knn"):  # each alone scores a product by its best photo
        weights = {"image_knn": 0.0, "colour_knn": 0.0, retriever: 1.0}
        alone = service.search(SearchQuery(image=back, weights=weights, size=6, explain=True), index=alias)
        assert alone.hits[0].id == "H2", retriever
        assert alone.hits[0].explain is not None
        assert alone.hits[0].explain[retriever]["raw_score"] == pytest.approx(1.0, abs=1e-4)  # cos 1: (1+1)/2
    both = service.search(SearchQuery(image=back, size=6, explain=True), index=alias)
    assert ids(both)[0] == "H2"
    assert both.retrievers["colour_knn"]["field"] == "photos.colour_vector"
    assert both.retrievers["image_knn"]["field"] == "photos.image_vector"

    # filters on product fields still pre-filter the nested kNN: only bags, the yellow one first by colour
    bags = service.search(SearchQuery(image=back, filters=Filters(category="Bags"), size=6), index=alias)
    assert set(ids(bags)) == {"B1", "B2", "B3"}
    assert ids(bags)[0] == "B2"

    # unchanged: nothing re-embedded; a new back photo for H3: only H3's photos again
    again = ingest(settings, engine, encoders, alias, folder, records)
    assert (again.unchanged, again.images_embedded) == (6, 0)
    changed = [dict(r) for r in records]
    changed[2]["images"] = [*records[2]["images"], photo(folder / "H3-1.png", PURPLE, "round")]
    third = ingest(settings, engine, encoders, alias, folder, changed)
    assert (third.unchanged, third.images_embedded) == (5, 1)
    assert len(engine.get_fields(alias, ["H3"], ["photos"])["H3"]["photos"]) == 2
    purple_round = (folder / "H3-1.png").read_bytes()
    weights = {"image_knn": 0.0, "colour_knn": 1.0}
    found = service.search(SearchQuery(image=purple_round, weights=weights, size=2), index=alias)
    assert ids(found)[0] == "H3"


def test_kind_aware_photo_fusion_prefers_the_voted_kind(
    engine: SearchEngine,
    settings: Settings,
    alias: str,
    catalogue: tuple[Path, list[dict[str, Any]]],
    encoders: dict[str, Any],
) -> None:
    folder, records = catalogue
    engine.create_index(alias, definition_from_settings(settings, encoder_records(settings, encoders)))
    ingest(settings, engine, encoders, alias, folder, records)
    settings = settings.model_copy(update={"photo_kind_weight": 0.5})  # a clear vote for six products
    service = SearchService(settings, engine, encoders)
    # a tall orange photo: its colour is the orange bag's, its shape (the image retriever) says hoodie
    query = photo(folder / "query" / "orange-tall.png", ORANGE, "tall")
    image = (folder / "query" / query).read_bytes()
    colour_alone = service.search(
        SearchQuery(image=image, weights={"image_knn": 0.0, "colour_knn": 1.0}, size=6), index=alias
    )
    assert ids(colour_alone)[0] == "B1"

    fused = service.search(SearchQuery(image=image, size=6, explain=True), index=alias)
    assert fused.fusion["method"] == "linear"
    assert fused.fusion["photo_kind"] == {
        "weight": settings.photo_kind_weight,
        "neighbours": settings.photo_kind_neighbours,
        "epsilon": 0.05,
    }
    assert set(ids(fused)[:3]) == {"H1", "H2", "H3"}  # the hoodies, whatever their colour, before any bag
    for hit in fused.hits:
        assert hit.explain is not None and set(hit.explain) == {"image_knn", "colour_knn", "photo_kind"}
        assert hit.score == pytest.approx(math.fsum(c["weighted"] for c in hit.explain.values()))
        for name, part in hit.explain.items():
            assert part["weighted"] == pytest.approx(fused.fusion["weights"][name] * part["normalised"])
    kind = {h.id: h.explain["photo_kind"]["raw_score"] for h in fused.hits if h.explain}
    assert kind["H1"] > kind["B1"]

    off = SearchService(settings.model_copy(update={"photo_kind_weight": 0.0}), engine, encoders)
    plain = off.search(SearchQuery(image=image, size=6, explain=True), index=alias)
    assert "photo_kind" not in plain.fusion
    assert plain.hits[0].explain is not None and "photo_kind" not in plain.hits[0].explain

    with_text = service.search(SearchQuery(text="hoodie", image=image, size=6), index=alias)
    assert "photo_kind" not in with_text.fusion  # words and a photo keep the ordinary fusion


def test_an_index_without_photo_vectors_still_takes_writes_and_photo_queries(
    engine: SearchEngine,
    settings: Settings,
    alias: str,
    catalogue: tuple[Path, list[dict[str, Any]]],
    encoders: dict[str, Any],
) -> None:
    folder, records = catalogue
    main_only = settings.model_copy(update={"photo_vectors": False})
    engine.create_index(alias, definition_from_settings(main_only, encoder_records(main_only, encoders)))
    assert "photos.image_vector" not in engine.vector_records(alias)
    report = ingest(
        settings, engine, encoders, alias, folder, records
    )  # photo_vectors on, index without them
    assert len(report.indexed) == 6
    assert "photos" not in engine.get_fields(alias, ["H2"], ["photos", "image_vector"])["H2"]
    main = (folder / "H2-0.png").read_bytes()
    response = SearchService(settings, engine, encoders).search(SearchQuery(image=main, size=3), index=alias)
    assert response.hits[0].id == "H2"
    assert response.retrievers["image_knn"]["field"] == "image_vector"
