"""How the ingestion pipeline reads and embeds photos: each photo decoded once, in fixed-size chunks.

The engine is an in-memory stand-in passed to :class:`Ingestor` (its stored hashes decide what is re-embedded),
the image encoder a deterministic stand-in that records the batches it is given, the colour histogram the real
one. The engine-backed behaviour (nested photo vectors, photo search) is tested in
``tests/integration/test_photos_engine.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybrid_search.encoders import get_encoder
from hybrid_search.engine.base import BulkResult
from hybrid_search.ingest import pipeline
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.media import images as images_module
from hybrid_search.settings import Settings, load_settings

Image = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")

pytestmark = pytest.mark.unit


class TextStandIn:
    name, version, dim, modality = "test-text", "1", 8, "text"

    def embed_documents(self, items: Sequence[str]) -> np.ndarray[Any, Any]:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim) for t in items]
        return np.asarray(rows, dtype=np.float32).reshape(len(items), self.dim)


class ImageStandIn:
    """The mean colour of the photo and its size: deterministic, and it records each batch's length."""

    name, version, dim, modality = "test-image", "1", 5, "image"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed_documents(self, items: Sequence[Any]) -> np.ndarray[Any, Any]:
        self.batches.append(len(items))
        rows = [[*np.asarray(i, dtype=np.float32).mean(axis=(0, 1)), i.size[0], i.size[1]] for i in items]
        return np.asarray(rows, dtype=np.float32).reshape(len(items), self.dim)


class MemoryEngine:
    """What the pipeline asks of an engine: stored fields, the index's vector records, bulk upserts."""

    def __init__(self, *, photo_vectors: bool) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.photo_vectors = photo_vectors

    def get_fields(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {i: {f: self.docs[i][f] for f in fields if f in self.docs[i]} for i in ids if i in self.docs}

    def vector_records(self, index: str) -> dict[str, dict[str, Any]]:
        fields = ["text_vector", "image_vector", "colour_vector", "fused_vector"]
        if self.photo_vectors:
            fields += ["photos.image_vector", "photos.colour_vector"]
        return {f: {} for f in fields}

    def bulk_write(self, index: str, documents: Iterable[Mapping[str, Any]], **_: Any) -> BulkResult:
        written = 0
        for doc in documents:
            self.docs.setdefault(str(doc["id"]), {}).update(doc)
            written += 1
        return BulkResult(written=written)


COLOURS = [(200, 30, 30), (30, 40, 200), (230, 210, 40), (40, 170, 60), (240, 140, 20), (130, 40, 160)]


def catalogue(folder: Path, products: int, photos: int) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for p in range(products):
        names = []
        for n in range(photos):
            name = f"p{p}-{n}.png"
            Image.new("RGB", (24 + p, 16 + n), COLOURS[(p + n) % len(COLOURS)]).save(folder / name)
            names.append(name)
        records.append({"id": f"p{p}", "title": f"Product {p}", "images": names})
    return records


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the photos decoded (the pipeline decodes through ``hybrid_search.media.images.load_image``)."""
    calls: list[int] = []
    real = images_module.load_image

    def counting(source: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(source, **kwargs)

    monkeypatch.setattr(images_module, "load_image", counting)
    return calls


def make(settings: Settings, *, photo_vectors: bool = True) -> tuple[Ingestor, MemoryEngine, ImageStandIn]:
    engine = MemoryEngine(photo_vectors=photo_vectors)
    image = ImageStandIn()
    encoders = {"text": TextStandIn(), "image": image, "colour": get_encoder("colour-hellinger")}
    return Ingestor(settings, engine, encoders), engine, image  # type: ignore[arg-type]


def test_each_photo_is_decoded_once_and_the_main_photo_gives_the_top_level_vectors(
    tmp_path: Path, decodes: list[int]
) -> None:
    records = catalogue(tmp_path, products=5, photos=3)
    ingestor, engine, _image = make(load_settings())
    report = ingestor.ingest(records, index="shop", base_dir=tmp_path)
    assert report.failed == [] and report.images_embedded == 5 and len(decodes) == 15
    for record in records:
        doc = engine.docs[record["id"]]
        assert len(doc["photos"]) == 3
        assert doc["image_vector"] == doc["photos"][0]["image_vector"]
        assert doc["colour_vector"] == doc["photos"][0]["colour_vector"]
        assert doc["photos"][1]["image_vector"] != doc["photos"][0]["image_vector"]
        assert "fused_vector" in doc

    decodes.clear()  # unchanged: nothing decoded, nothing embedded
    again = ingestor.ingest(records, index="shop", base_dir=tmp_path)
    assert again.unchanged == 5 and again.images_embedded == 0 and decodes == []


def test_photos_are_embedded_in_full_chunks_across_products(
    tmp_path: Path, decodes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline, "PHOTO_CHUNK", 8)
    records = catalogue(tmp_path, products=7, photos=3)  # 21 photos: chunks of 8, 8 and 5
    ingestor, engine, image = make(load_settings())
    report = ingestor.ingest(records, index="shop", base_dir=tmp_path)
    assert report.failed == [] and len(decodes) == 21
    assert image.batches == [8, 8, 5]
    for p, record in enumerate(records):  # a product whose photos spanned two chunks keeps them in order
        sizes = [vector["image_vector"][3:] for vector in engine.docs[record["id"]]["photos"]]
        assert sizes == [[24.0 + p, 16.0 + n] for n in range(3)]


def test_without_photo_vectors_only_the_main_photo_is_read_and_decoded(
    tmp_path: Path, decodes: list[int]
) -> None:
    records = catalogue(tmp_path, products=4, photos=3)
    ingestor, engine, image = make(load_settings(), photo_vectors=False)  # an index without nested photos
    report = ingestor.ingest(records, index="shop", base_dir=tmp_path)
    assert report.failed == [] and report.images_embedded == 4 and len(decodes) == 4
    assert image.batches == [4]
    assert all("photos" not in doc and len(doc["image_vector"]) == 5 for doc in engine.docs.values())


def test_a_bad_photo_fails_its_product_only(tmp_path: Path, decodes: list[int]) -> None:
    records = catalogue(tmp_path, products=3, photos=2)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a jpeg" * 20)
    records[0]["images"] = ["broken.jpg", *records[0]["images"]]  # its main photo
    records[1]["images"] = [*records[1]["images"], "broken.jpg"]  # its third photo
    ingestor, engine, _image = make(load_settings())
    report = ingestor.ingest(records, index="shop", base_dir=tmp_path)
    reasons = {f["id"]: f["reason"] for f in report.failed}
    assert set(reasons) == {"p0", "p1"}
    assert reasons["p0"].startswith("photo: corrupt jpeg") and reasons["p1"].startswith(
        "photo 3: corrupt jpeg"
    )
    assert report.indexed == ["p2"] and set(engine.docs) == {"p2"}
