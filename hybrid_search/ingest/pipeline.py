"""Turn a batch of catalogue records into index documents with vectors, and write them: library code that the
Celery task (``workers/tasks.py``) only calls.

Per batch:

1. validate each record (a bad one is reported, the rest go on);
2. read each product's main photo (local or URL, checked) and hash the product text and the photo bytes;
3. ask the engine for the hashes it already stores: unchanged text or photos are **not** re-embedded;
4. embed what changed, batched (text; photo; colour histogram) and build the fused vector;
5. upsert every product (partial update: vectors that did not change keep their stored values), id = product id.

Everything that fails for one product (bad record, missing/corrupt/oversized photo, refused document) is returned
in :class:`BatchReport.failed` with its reason: the caller sends those to the dead-letter store.
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

from hybrid_search.catalog import Product, validate_product
from hybrid_search.engine import EncoderRef, SearchEngine
from hybrid_search.engine.definition import vector_roles
from hybrid_search.errors import ValidationError
from hybrid_search.indexing import encoder_records, product_text
from hybrid_search.ingest.photos import read_photo
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)
_ROLE_FIELDS = {
    "text": "text_vector",
    "image": "image_vector",
    "colour": "colour_vector",
    "fused": "fused_vector",
}


def content_hash(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:32]


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
        stored = self.engine.get_fields(index, [i.product.id for i in items], ["text_hash", "image_hash"])
        items = self._read_photos(items, base_dir, report)
        texts = [i for i in items if stored.get(i.product.id, {}).get("text_hash") != i.text_hash]
        photos = [
            i
            for i in items
            if i.photo is not None and stored.get(i.product.id, {}).get("image_hash") != i.image_hash
        ]
        images = self._decode(photos, report)
        failed_ids = {f["id"] for f in report.failed}
        items = [i for i in items if i.product.id not in failed_ids]
        texts = [i for i in texts if i.product.id not in failed_ids]

        text_vectors = self._embed("text", [i.text for i in texts])
        image_vectors = self._embed("image", [img for _i, img in images])
        colour_vectors = (
            self._embed("colour", [img for _i, img in images]) if "colour" in self.encoders else None
        )
        report.text_embedded, report.images_embedded = len(texts), len(images)

        new_text = {i.product.id: text_vectors[n] for n, i in enumerate(texts)}
        new_image = {i.product.id: image_vectors[n] for n, (i, _img) in enumerate(images)}
        for n, (i, _img) in enumerate(images):
            if colour_vectors is not None:
                i.doc[self.fields["colour"]] = colour_vectors[n].tolist()
            i.doc[self.fields["image"]] = image_vectors[n].tolist()
        for i in texts:
            i.doc[self.fields["text"]] = new_text[i.product.id].tolist()
        self._fuse(items, stored, new_text, new_image, index)

        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        docs = []
        for i in items:
            if i.product.id not in new_text and i.product.id not in new_image:
                report.unchanged += 1
            if i.photo is None and stored.get(i.product.id, {}).get("image_hash"):
                for role in ("image", "colour", "fused"):  # the photo was removed: so are its vectors
                    i.doc[self.fields[role]] = None
            docs.append(
                {
                    **i.product.document(),
                    **i.doc,
                    "text_hash": i.text_hash,
                    "image_hash": i.image_hash,
                    "updated_at": now,
                }
            )
        result = self.engine.bulk_write(
            index, docs, vector_sources=self.sources, refresh=refresh, partial=True
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

    def _read_photos(self, items: list[_Item], base_dir: Path | None, report: BatchReport) -> list[_Item]:
        if "image" not in self.encoders:
            return items
        kept = []
        for item in items:
            ref = item.product.main_image
            if ref is not None:
                try:
                    item.photo = read_photo(ref, base_dir=base_dir, settings=self.settings)
                except ValidationError as exc:
                    report.failed.append(
                        {"id": item.product.id, "source": item.source, "reason": f"photo: {exc}"}
                    )
                    continue
                item.image_hash = content_hash(item.photo)
            kept.append(item)
        return kept

    def _decode(self, items: list[_Item], report: BatchReport) -> list[tuple[_Item, Any]]:
        from hybrid_search.images import load_image

        out = []
        for item in items:
            assert item.photo is not None
            try:
                image = load_image(
                    item.photo,
                    max_bytes=self.settings.image_max_bytes,
                    max_pixels=self.settings.image_max_pixels,
                )
            except ValidationError as exc:
                report.failed.append(
                    {"id": item.product.id, "source": item.source, "reason": f"photo: {exc}"}
                )
                continue
            out.append((item, image))
        return out

    def _embed(self, role: str, inputs: list[Any]) -> np.ndarray[Any, Any]:
        encoder = self.encoders.get(role)
        if not inputs or encoder is None:
            return np.zeros((0, 0), dtype=np.float32)
        return np.asarray(encoder.embed_documents(inputs), dtype=np.float32)

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
        from hybrid_search.encoders import fuse_vectors

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
            fused = fuse_vectors(
                np.asarray(text_vec, dtype=np.float32),
                np.asarray(image_vec, dtype=np.float32),
                self.settings.fused_text_weight,
                image_dim=int(self.encoders["image"].dim),
            )
            i.doc[self.fields["fused"]] = np.asarray(fused, dtype=np.float32).tolist()


__all__ = ["BatchReport", "Ingestor", "content_hash"]
