"""Turn a batch of catalogue records into index documents with vectors, and write them: library code that the
Celery task (``workers/tasks.py``) only calls.

Per batch:

1. validate each record (a bad one is reported, the rest go on);
2. read each product's main photo (local or URL, checked) and hash the product text and the photo bytes; when
   the index has the nested ``photos`` vectors (``photo_vectors``), read every photo of the product (at most
   ``photo_vectors_max``) and hash them together;
3. ask the engine for the hashes it already stores: unchanged text or photos are **not** re-embedded;
4. embed what changed, batched (text; photo; colour histogram; every photo, one nested object each, whose
   first object also gives the main photo's vectors) and build the fused vector. Each photo is decoded once;
   they are embedded :data:`PHOTO_CHUNK` at a time and released before more are decoded;
5. upsert every product (partial update: vectors that did not change keep their stored values), id = product id.

Everything that fails for one product (bad record, missing/corrupt/oversized photo, refused document) is returned
in :class:`BatchReport.failed` with its reason: the caller sends those to the dead-letter store.
A cluster that cannot take the writes now (HTTP 429/502/503/504 per document: overloaded, a shard without a
live copy yet) raises :class:`EngineUnavailableError` instead, so the whole batch is retried rather than its
products dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.catalog import Product, product_text, validate_product
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import EncoderRef, SearchEngine
from hybrid_search.engine.base import TRANSIENT_STATUSES
from hybrid_search.engine.definition import vector_roles
from hybrid_search.errors import EngineUnavailableError, ValidationError
from hybrid_search.media.photos import read_photo
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)
_ROLE_FIELDS = {
    "text": "text_vector",
    "image": "image_vector",
    "colour": "colour_vector",
    "fused": "fused_vector",
    "photo_image": "photos.image_vector",
    "photo_colour": "photos.colour_vector",
}


# photos embedded at a time, then released: bounds a worker's memory; a multiple of the image encoder's batch size,
# so that every chunk runs the same batch shapes
PHOTO_CHUNK = 64
_Rows = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]  # one product's photo vectors: image, colour


def content_hash(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:32]


def embed_inputs(encoders: Mapping[str, Any], role: str, inputs: list[Any]) -> np.ndarray[Any, Any]:
    """The vectors of ``inputs`` (texts, or decoded photos) by the encoder of ``role``, one row each; an empty
    array when there is nothing to embed or no such encoder."""
    encoder = encoders.get(role)
    if not inputs or encoder is None:
        return np.zeros((0, 0), dtype=np.float32)
    return np.asarray(encoder.embed_documents(inputs), dtype=np.float32)


def fused_vector(settings: Settings, encoders: Mapping[str, Any], text: Any, image: Any) -> list[float]:
    """The fused vector of one product: its text and photo vectors, weighted (``fused_text_weight``) and
    concatenated, as the ``fused`` field stores it."""
    from hybrid_search.encoders import fuse_vectors

    fused = fuse_vectors(
        np.asarray(text, dtype=np.float32),
        np.asarray(image, dtype=np.float32),
        settings.fused_text_weight,
        image_dim=int(encoders["image"].dim),
    )
    return list(np.asarray(fused, dtype=np.float32).tolist())


@dataclass
class BatchReport:
    """What one batch did. ``failed`` items are ``{"id", "source", "reason"}``."""

    indexed: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    text_embedded: int = 0
    images_embedded: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "indexed": len(self.indexed),
            "failed": len(self.failed),
            "unchanged": self.unchanged,
            "text_embedded": self.text_embedded,
            "images_embedded": self.images_embedded,
        }


@dataclass
class _Item:
    product: Product
    source: str
    text: str
    text_hash: str
    photo: bytes | None = None
    image_hash: str | None = None
    doc: dict[str, Any] = field(default_factory=dict)
    # every photo of the product, main first, when the index has photo vectors
    all_photos: list[bytes] = field(default_factory=list)
    photos_hash: str | None = None


class Ingestor:
    """Embeds and writes product batches. One per worker process: encoders load their models once, lazily."""

    def __init__(self, settings: Settings, engine: SearchEngine, encoders: Mapping[str, Any]) -> None:
        self.settings = settings
        self.engine = engine
        self.encoders = dict(encoders)
        roles = {spec.get("source"): name for name, spec in vector_roles(settings.mappings_dir).items()}
        self.fields = {role: roles.get(role, default) for role, default in _ROLE_FIELDS.items()}
        self.sources: dict[str, EncoderRef] = {
            self.fields[role]: ref for role, (ref, _dim) in encoder_records(settings, self.encoders).items()
        }

    def ingest(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        index: str,
        base_dir: Path | None = None,
        sources: Sequence[str] | None = None,
        refresh: bool = False,
    ) -> BatchReport:
        report = BatchReport()
        items = self._validate(records, sources, report)
        if not items:
            return report
        photo_roles = self._photo_roles(index)
        hashes = ["text_hash", "image_hash", "photos_hash"] if photo_roles else ["text_hash", "image_hash"]
        stored = self.engine.get_fields(index, [i.product.id for i in items], hashes)
        items = self._read_photos(items, base_dir, report, every=bool(photo_roles))
        texts = [i for i in items if stored.get(i.product.id, {}).get("text_hash") != i.text_hash]
        # the main photo changed: new top-level image, colour (and fused) vectors
        main = {
            i.product.id
            for i in items
            if i.photo is not None and stored.get(i.product.id, {}).get("image_hash") != i.image_hash
        }
        # any photo changed: every photo re-embedded into the nested photo vectors
        every = {
            i.product.id
            for i in items
            if photo_roles
            and i.all_photos
            and stored.get(i.product.id, {}).get("photos_hash") != i.photos_hash
        }
        photo_items = [i for i in items if i.product.id in main or i.product.id in every]
        photo_rows = self._embed_photos(photo_items, report, photo_roles, main=main, every=every)
        failed_ids = {f["id"] for f in report.failed}
        items = [i for i in items if i.product.id not in failed_ids]
        texts = [i for i in texts if i.product.id not in failed_ids]

        text_vectors = self._embed("text", [i.text for i in texts])
        report.text_embedded = len(texts)
        report.images_embedded = len(photo_rows)  # products

        new_text = {i.product.id: text_vectors[n] for n, i in enumerate(texts)}
        new_image: dict[str, np.ndarray[Any, Any]] = {}
        for i in items:
            if i.product.id not in main or i.product.id not in photo_rows:
                continue
            image_rows, colour_rows = photo_rows[i.product.id]  # row 0: the main photo
            new_image[i.product.id] = image_rows[0]
            i.doc[self.fields["image"]] = image_rows[0].tolist()
            if colour_rows is not None:
                i.doc[self.fields["colour"]] = colour_rows[0].tolist()
        for i in texts:
            i.doc[self.fields["text"]] = new_text[i.product.id].tolist()
        self._fuse(items, stored, new_text, new_image, index)

        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        docs = []
        for i in items:
            if i.product.id not in new_text and i.product.id not in photo_rows:
                report.unchanged += 1
            if i.photo is None and stored.get(i.product.id, {}).get("image_hash"):
                for role in ("image", "colour", "fused"):  # the photo was removed: so are its vectors
                    i.doc[self.fields[role]] = None
            hashes_of = {"text_hash": i.text_hash, "image_hash": i.image_hash}
            if photo_roles:
                hashes_of["photos_hash"] = i.photos_hash
                if not i.all_photos and stored.get(i.product.id, {}).get("photos_hash"):
                    i.doc[self._photos_object()] = None  # every photo was removed
            docs.append({**i.product.document(), **i.doc, **hashes_of, "updated_at": now})
        result = self.engine.bulk_write(
            index, docs, vector_sources=self.sources, refresh=refresh, partial=True
        )
        transient = [e for e in result.errors if e.get("status") in TRANSIENT_STATUSES]
        if transient:  # the cluster is recovering or overloaded: retry the batch (upserts are idempotent)
            raise EngineUnavailableError(
                f"the engine could not write {len(transient)} of {len(docs)} products now "
                f"(HTTP {transient[0]['status']}: {transient[0]['reason']}); the batch will be retried"
            )
        bad = {str(e["id"]): e for e in result.errors}
        by_id = {i.product.id: i for i in items}
        for doc_id, error in bad.items():
            source = by_id[doc_id].source if doc_id in by_id else ""
            report.failed.append(
                {"id": doc_id, "source": source, "reason": f"engine refused it: {error['reason']}"}
            )
        report.indexed = [i.product.id for i in items if i.product.id not in bad]
        return report

    # ---- steps ----------------------------------------------------------------------------------------

    def _validate(
        self, records: Sequence[Mapping[str, Any]], sources: Sequence[str] | None, report: BatchReport
    ) -> list[_Item]:
        items = []
        for n, record in enumerate(records):
            source = sources[n] if sources and n < len(sources) else f"record {n + 1}"
            try:
                product = validate_product(record)
            except ValueError as exc:
                raw_id = record.get("id") if isinstance(record, Mapping) else None
                report.failed.append({"id": None if raw_id is None else str(raw_id)[:256], "source": source,
                                      "reason": str(exc)})  # fmt: skip
                continue
            text = product_text(product.document())
            items.append(_Item(product, source, text, content_hash(text)))
        return items

    def _read_photos(
        self, items: list[_Item], base_dir: Path | None, report: BatchReport, *, every: bool = False
    ) -> list[_Item]:
        """Read each product's main photo; ``every``: also its other photos (at most ``photo_vectors_max``)."""
        if "image" not in self.encoders:
            return items
        kept = []
        for item in items:
            refs = list(dict.fromkeys(item.product.images))[: self.settings.photo_vectors_max if every else 1]
            try:
                photos = []
                for n, ref in enumerate(refs):
                    try:
                        photos.append(read_photo(ref, base_dir=base_dir, settings=self.settings))
                    except ValidationError as exc:
                        raise ValidationError(
                            f"photo {n + 1} ({ref}): {exc}" if n else f"photo: {exc}"
                        ) from None
            except ValidationError as exc:
                report.failed.append({"id": item.product.id, "source": item.source, "reason": str(exc)})
                continue
            if photos:
                item.photo = photos[0]
                item.image_hash = content_hash(item.photo)
                if every:
                    item.all_photos = photos
                    item.photos_hash = content_hash("".join(content_hash(photo) for photo in photos))
            kept.append(item)
        return kept

    def _photo_roles(self, index: str) -> list[str]:
        """The nested photo roles this batch fills: configured, and recorded by the index (older indices lack them)."""
        wanted = [r for r in ("photo_image", "photo_colour") if self.fields[r] in self.sources]
        if not wanted:
            return []
        recorded = self.engine.vector_records(index)
        return [r for r in wanted if self.fields[r] in recorded]

    def _photos_object(self) -> str:
        return self.fields["photo_image"].rsplit(".", 1)[0]

    def _embed_photos(
        self,
        items: list[_Item],
        report: BatchReport,
        roles: list[str],
        *,
        main: set[str],
        every: set[str],
    ) -> dict[str, _Rows]:
        """Decode and embed the photos of ``items``, each photo decoded once.

        A product in ``every`` has all its photos embedded, one nested object each in ``doc["photos"]``; any
        other has only its main photo embedded (for the top-level vectors of a product in ``main``). Returns
        ``{product id: (image vectors, colour vectors or None)}``, rows in photo order (row 0: the main photo).
        A photo that cannot be decoded fails its product.

        Memory: decoded photos are embedded exactly :data:`PHOTO_CHUNK` at a time (a product's photos may span
        two chunks) and released, so at most ``PHOTO_CHUNK + photo_vectors_max`` are held at once, and every
        chunk gives the encoders the same batch shapes: the allocator reuses the same activation buffers
        instead of growing the heap for each new shape.
        """
        from hybrid_search.media.images import load_image

        colours = "colour" in self.encoders and ("photo_colour" in roles or bool(main))
        spans: list[tuple[_Item, int]] = []  # each product whose photos decoded, with how many
        pending: list[Any] = []  # decoded, not embedded yet
        image_parts: list[np.ndarray[Any, Any]] = []
        colour_parts: list[np.ndarray[Any, Any]] = []

        def embed(images: list[Any]) -> None:
            image_parts.append(self._embed("image", images))
            if colours:
                colour_parts.append(self._embed("colour", images))

        for item in items:
            assert item.photo is not None
            photos = item.all_photos if item.product.id in every else [item.photo]
            try:
                images = []
                for n, photo in enumerate(photos):
                    try:
                        images.append(
                            load_image(
                                photo,
                                max_bytes=self.settings.image_max_bytes,
                                max_pixels=self.settings.image_max_pixels,
                            )
                        )
                    except ValidationError as exc:
                        raise ValidationError(f"photo {n + 1}: {exc}" if n else f"photo: {exc}") from None
            except ValidationError as exc:
                report.failed.append({"id": item.product.id, "source": item.source, "reason": str(exc)})
                continue
            spans.append((item, len(images)))
            pending.extend(images)
            # decoded photos are large: embed and drop them a chunk at a time
            while len(pending) >= PHOTO_CHUNK:
                embed(pending[:PHOTO_CHUNK])
                del pending[:PHOTO_CHUNK]
        if pending:
            embed(pending)
            pending.clear()
        if not spans:
            return {}
        image_rows = np.concatenate(image_parts)
        colour_rows = np.concatenate(colour_parts) if colours else None
        leaves = {role: self.fields[role].rsplit(".", 1)[1] for role in roles}
        out: dict[str, _Rows] = {}
        start = 0
        for item, count in spans:
            rows = slice(start, start + count)
            start += count
            product_colours = colour_rows[rows] if colour_rows is not None else None
            out[item.product.id] = (image_rows[rows], product_colours)
            if item.product.id not in every:
                continue
            objects = []
            for n, vector in enumerate(image_rows[rows]):
                obj = {leaves["photo_image"]: vector.tolist()}
                if product_colours is not None and "photo_colour" in roles:
                    obj[leaves["photo_colour"]] = product_colours[n].tolist()
                objects.append(obj)
            item.doc[self._photos_object()] = objects
        return out

    def _embed(self, role: str, inputs: list[Any]) -> np.ndarray[Any, Any]:
        return embed_inputs(self.encoders, role, inputs)

    def _fuse(
        self,
        items: list[_Item],
        stored: Mapping[str, Mapping[str, Any]],
        new_text: Mapping[str, Any],
        new_image: Mapping[str, Any],
        index: str,
    ) -> None:
        """Fused vector = weighted concatenation of the text and photo vectors, rebuilt when either changed."""
        if "image" not in self.encoders or "text" not in self.encoders:
            return
        # a product without a photo gets no fused vector: the fused retriever serves text+photo queries, and a
        # text-only half would cost the engine a 1664-d HNSW insert for nothing the text vector lacks
        changed = [
            i
            for i in items
            if i.photo is not None and (i.product.id in new_text or i.product.id in new_image)
        ]
        need_text = [i.product.id for i in changed if i.product.id not in new_text]
        need_image = [
            i.product.id
            for i in changed
            if i.product.id not in new_image
            and i.photo is not None
            and stored.get(i.product.id, {}).get("image_hash")
        ]
        old_text = self.engine.get_fields(index, need_text, [self.fields["text"]]) if need_text else {}
        old_image = self.engine.get_fields(index, need_image, [self.fields["image"]]) if need_image else {}
        for i in changed:
            pid = i.product.id
            text_vec = new_text.get(pid)
            if text_vec is None:
                text_vec = old_text.get(pid, {}).get(self.fields["text"])
            image_vec = new_image.get(pid)
            if image_vec is None:
                image_vec = old_image.get(pid, {}).get(self.fields["image"])
            if text_vec is None or image_vec is None:
                continue
            i.doc[self.fields["fused"]] = fused_vector(self.settings, self.encoders, text_vec, image_vec)


__all__ = ["BatchReport", "Ingestor", "content_hash", "embed_inputs", "fused_vector"]
