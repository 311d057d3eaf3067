"""Embedding the documents of an attached index (a shop's own index): library code that the Celery task
``hybrid_search.embed_attached`` (``workers/tasks.py``) only calls, and the enqueue side that sends it ids.

The shop owns its documents; the layer only adds ``hs_`` fields (:data:`~hybrid_search.catalog.attachment.HS_FIELDS`)
next to the shop's. Per batch of ids, :meth:`AttachedIngestor.embed`:

1. reads each document with its version (``get_versioned``: ``_source`` of the role fields, ``seq_no``,
   ``primary_term``); an id not found was deleted by the shop: skipped (``missing``), never brought back;
2. hashes what the vectors are made of (``content_hash``: the embedded text and the photo's path or URL) and
   compares it, and the encoders (``model_version``), with the document's ``hs_content_hash`` /
   ``hs_model_version``: an unchanged document is neither embedded nor written;
3. embeds the rest: the text (``embed_text``) with the text encoder, the photo (``image_ref``, read by the safe
   loader ``read_photo`` under ``[images] root`` or from its URL) with the image and colour encoders, and the
   fused vector (:func:`~hybrid_search.ingest.pipeline.fused_vector`, as the own index's). A photo that cannot
   be read: the text vector is still written, and the photo's failure is reported (``photo_failed``);
4. writes only the ``hs_`` fields, each document's update conditional on the version it was read at
   (``update_if_unchanged``: ``if_seq_no``/``if_primary_term``, a partial ``doc``, never an upsert nor the
   index API). A conflict (409: the shop wrote in between) reads the document again and retries, up to
   :data:`CONFLICT_RETRIES` times: the shop's write wins, and vectors of an unchanged content are reused. A 404
   is a delete: skipped.

A cluster that cannot take the writes now (HTTP 429/502/503/504) raises
:class:`~hybrid_search.errors.EngineUnavailableError`, so the task retries the batch (re-running it is safe: the
writes are conditional and unchanged documents are skipped).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid_search.catalog.attachment import (
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    HS_PREFIX,
    MODEL_VERSION_FIELD,
    VECTOR_FIELDS,
    AttachConfig,
    content_hash,
    embed_text,
    image_ref,
    model_version,
    role_values,
)
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import ConditionalUpdate, EncoderRef, SearchEngine, VersionedDoc
from hybrid_search.engine.base import TRANSIENT_STATUSES
from hybrid_search.errors import (
    ConfigurationError,
    EngineUnavailableError,
    HybridSearchError,
    ValidationError,
)
from hybrid_search.ingest.enqueue import Enqueuer, Job
from hybrid_search.ingest.pipeline import PHOTO_CHUNK, embed_inputs, fused_vector
from hybrid_search.ingest.queue import EMBED_ATTACHED_TASK
from hybrid_search.media.photos import read_photo
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 3  # reads again after a conflict (the shop wrote the document in between), then gives up
NOT_ATTACHED = "run hybrid-search attach apply --config FILE first"


class NotAttachedError(ConfigurationError):
    """The index has no attachment recorded in its ``_meta`` (``hybrid-search attach apply`` not run)."""


def recorded_attachment(engine: SearchEngine, index: str) -> AttachConfig:
    """The attachment recorded in the index's ``_meta`` (what every process embeds and searches it by);
    :class:`NotAttachedError` when it has none."""
    meta = engine.attachment_meta(index)
    if not meta:
        raise NotAttachedError(f"the index {index!r} is not attached: {NOT_ATTACHED}")
    return AttachConfig.from_meta(meta)


def source_fields(config: AttachConfig) -> list[str]:
    """The ``_source`` fields a staleness check reads: the role fields, the content hash and the model version."""
    return [*role_values({}, config.schema), CONTENT_HASH_FIELD, MODEL_VERSION_FIELD]


def check_layer_fields(doc: Mapping[str, Any]) -> None:
    """Refuse (``HybridSearchError``) a document to write that holds any field but the layer's ``hs_`` ones: the
    shop's fields are never written."""
    foreign = [name for name in doc if not name.startswith(HS_PREFIX)]
    if foreign:
        raise HybridSearchError(f"refusing to write fields of the shop's document: {', '.join(foreign)}")


@dataclass
class AttachedReport:
    """What one batch of an attached index did. ``failed`` and ``photo_failed`` items are ``{"id", "source",
    "reason"}`` (``photo_failed``: written with its text vector only)."""

    embedded: list[str] = field(default_factory=list)
    unchanged: int = 0
    missing: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    photo_failed: list[dict[str, Any]] = field(default_factory=list)
    conflicts_retried: int = 0
    text_embedded: int = 0
    images_embedded: int = 0

    def summary(self) -> dict[str, int]:
        """The job counters (:data:`~hybrid_search.ingest.tracking.COUNTERS`) of this batch."""
        return {
            "indexed": len(self.embedded),
            "failed": len(self.failed),
            "unchanged": self.unchanged,
            "text_embedded": self.text_embedded,
            "images_embedded": self.images_embedded,
            "missing": len(self.missing),
            "conflicts_retried": self.conflicts_retried,
            "photo_failed": len(self.photo_failed),
        }

    def dead_letters(self) -> list[dict[str, Any]]:
        """What the dead-letter store keeps of this batch: the failures and the unreadable photos."""
        return [*self.failed, *self.photo_failed]


@dataclass
class _Doc:
    id: str
    version: VersionedDoc
    content: str
    text: str
    photo_ref: str | None
    hs: dict[str, Any] = field(default_factory=dict)  # the hs_ fields to write


class AttachedIngestor:
    """Embeds the documents of attached indices. One per worker process, sharing the own index's encoders."""

    def __init__(self, settings: Settings, engine: SearchEngine, encoders: Mapping[str, Any]) -> None:
        self.settings = settings
        self.engine = engine
        self.encoders = dict(encoders)
        self.refs: dict[str, EncoderRef] = {
            VECTOR_FIELDS[role]: ref
            for role, (ref, _dim) in encoder_records(settings, self.encoders).items()
            if role in VECTOR_FIELDS
        }

    def embed_index(self, index: str, ids: Sequence[str], *, refresh: bool = False) -> AttachedReport:
        """:meth:`embed` by the attachment recorded in the index's ``_meta``."""
        return self.embed(recorded_attachment(self.engine, index), ids, refresh=refresh)

    def embed(self, config: AttachConfig, ids: Sequence[str], *, refresh: bool = False) -> AttachedReport:
        """Embed and write the stale documents among ``ids`` (see the module docstring)."""
        report = AttachedReport()
        index = config.index
        records = self.engine.vector_records(index)
        version = model_version(records)
        fields = {name for name in self.refs if name in records}
        sources = {name: ref for name, ref in self.refs.items() if name in fields}
        reusable: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (content, hs fields) embedded already
        pending = list(dict.fromkeys(str(i) for i in ids))
        for attempt in range(CONFLICT_RETRIES + 1):
            if not pending:
                break
            found = self.engine.get_versioned(index, pending, source_fields(config))
            report.missing.extend(i for i in pending if i not in found)
            stale = []
            for doc_id in pending:
                if doc_id not in found:
                    continue
                versioned = found[doc_id]
                source = versioned.source
                content = content_hash(source, config.schema, config.images)
                if source.get(CONTENT_HASH_FIELD) == content and source.get(MODEL_VERSION_FIELD) == version:
                    report.unchanged += 1
                    continue
                item = _Doc(doc_id, versioned, content, embed_text(source, config.schema),
                            image_ref(source, config.schema, config.images))  # fmt: skip
                earlier = reusable.get(doc_id)
                if earlier is not None and earlier[0] == content:  # the shop's write changed no content
                    item.hs = dict(earlier[1])
                stale.append(item)
            self._embed([d for d in stale if not d.hs], config, fields, version, report)
            for item in stale:
                reusable[item.id] = (item.content, item.hs)
            pending = self._write(index, stale, sources, report, refresh=refresh)
            if pending and attempt < CONFLICT_RETRIES:
                log.info("%s: %d documents written by the shop meanwhile; read again", index, len(pending))
                report.conflicts_retried += len(pending)
        for doc_id in pending:  # still conflicting: the shop keeps writing it; the next sync sees it again
            report.failed.append({"id": doc_id, "source": index,
                                  "reason": f"the shop wrote it again during each of {CONFLICT_RETRIES + 1} "
                                            "tries; not embedded (the next sync retries)"})  # fmt: skip
        return report

    # ---- steps ----------------------------------------------------------------------------------------

    def _embed(
        self,
        items: list[_Doc],
        config: AttachConfig,
        fields: set[str],
        version: str,
        report: AttachedReport,
    ) -> None:
        """Fill ``item.hs`` of each item: its vectors, content hash, model version and time."""
        if not items:
            return
        text_field, image_field = VECTOR_FIELDS["text"], VECTOR_FIELDS["image"]
        colour_field, fused_field = VECTOR_FIELDS["colour"], VECTOR_FIELDS["fused"]
        texts: dict[str, Any] = {}
        if text_field in fields:
            rows = embed_inputs(self.encoders, "text", [i.text for i in items])
            texts = {i.id: rows[n] for n, i in enumerate(items)}
            report.text_embedded += len(items)
        images: dict[str, Any] = {}
        colours: dict[str, Any] = {}
        if image_field in fields or colour_field in fields:
            images, colours = self._embed_photos(items, config, fields, report)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for item in items:
            hs: dict[str, Any] = {}
            text_vec, image_vec = texts.get(item.id), images.get(item.id)
            if text_field in fields:
                hs[text_field] = None if text_vec is None else text_vec.tolist()
            if image_field in fields:  # None: no photo (or not readable): an older photo's vector goes
                hs[image_field] = None if image_vec is None else image_vec.tolist()
            if colour_field in fields:
                colour = colours.get(item.id)
                hs[colour_field] = None if colour is None else colour.tolist()
            if fused_field in fields:
                hs[fused_field] = (
                    fused_vector(self.settings, self.encoders, text_vec, image_vec)
                    if text_vec is not None and image_vec is not None
                    else None
                )
            hs[CONTENT_HASH_FIELD] = item.content
            hs[MODEL_VERSION_FIELD] = version
            hs[EMBEDDED_AT_FIELD] = now
            item.hs = hs

    def _embed_photos(
        self, items: list[_Doc], config: AttachConfig, fields: set[str], report: AttachedReport
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({id: image vector}, {id: colour vector})`` of the items whose photo reads and decodes; each
        other item with a photo is reported in ``photo_failed``. Decoded a chunk (:data:`PHOTO_CHUNK`) at a
        time, then released."""
        from hybrid_search.media.images import load_image

        images: dict[str, Any] = {}
        colours: dict[str, Any] = {}
        want_image = VECTOR_FIELDS["image"] in fields and "image" in self.encoders
        want_colour = VECTOR_FIELDS["colour"] in fields and "colour" in self.encoders
        if not (want_image or want_colour):
            return images, colours

        def embed(chunk: list[tuple[str, Any]]) -> None:
            decoded = [image for _id, image in chunk]
            image_rows = embed_inputs(self.encoders, "image", decoded) if want_image else None
            colour_rows = embed_inputs(self.encoders, "colour", decoded) if want_colour else None
            for n, (doc_id, _image) in enumerate(chunk):
                if image_rows is not None:
                    images[doc_id] = image_rows[n]
                if colour_rows is not None:
                    colours[doc_id] = colour_rows[n]

        chunk: list[tuple[str, Any]] = []
        for item in items:
            if item.photo_ref is None:
                continue
            try:
                data = read_photo(item.photo_ref, base_dir=config.images.root, settings=self.settings)
                chunk.append((item.id, load_image(data, max_bytes=self.settings.image_max_bytes,
                                                  max_pixels=self.settings.image_max_pixels)))  # fmt: skip
            except ValidationError as exc:
                report.photo_failed.append({"id": item.id, "source": config.index,
                                            "reason": f"photo: {exc}; its text vector was written"})  # fmt: skip
                continue
            if len(chunk) >= PHOTO_CHUNK:
                embed(chunk)
                chunk = []
        if chunk:
            embed(chunk)
        report.images_embedded += len(images) or len(colours)
        return images, colours

    def _write(
        self,
        index: str,
        items: list[_Doc],
        sources: Mapping[str, EncoderRef],
        report: AttachedReport,
        *,
        refresh: bool,
    ) -> list[str]:
        """Write the items' ``hs_`` fields, each conditional on its version; returns the ids that conflicted."""
        if not items:
            return []
        updates = []
        for item in items:
            check_layer_fields(item.hs)
            assert all(name.startswith(HS_PREFIX) for name in item.hs)
            updates.append(
                ConditionalUpdate(item.id, item.version.seq_no, item.version.primary_term, item.hs)
            )
        result = self.engine.update_if_unchanged(index, updates, vector_sources=sources, refresh=refresh)
        transient = [e for e in result.errors if e.get("status") in TRANSIENT_STATUSES]
        if (
            transient
        ):  # the cluster is recovering or overloaded: the batch is retried (the writes are conditional)
            raise EngineUnavailableError(
                f"the engine could not write {len(transient)} of {len(updates)} documents now "
                f"(HTTP {transient[0]['status']}: {transient[0]['reason']}); the batch will be retried"
            )
        written = set(result.written)
        report.embedded.extend(i.id for i in items if i.id in written)
        report.missing.extend(result.missing)
        for error in result.errors:
            report.failed.append({"id": str(error.get("id")), "source": index,
                                  "reason": f"engine refused it: {error.get('reason')}"})  # fmt: skip
        return list(result.conflicts)


# ---- the enqueue side ------------------------------------------------------------------------------------


def id_batches(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    """``ids`` (duplicates dropped, order kept) in lists of at most ``size``."""
    batch: list[str] = []
    seen: set[str] = set()
    for doc_id in ids:
        if doc_id in seen:
            continue
        seen.add(doc_id)
        batch.append(doc_id)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class AttachedJob:
    """One job of ids of an attached index, sent to the workers batch by batch (:data:`EMBED_ATTACHED_TASK`)
    and recorded like an ingestion job (so ``/tasks/{id}`` and :func:`~hybrid_search.ingest.jobs.wait_for_job`
    follow it).

    ``job``: continue an earlier job (a resumed backfill); its batches are counted on from where it was.
    """

    def __init__(self, enqueuer: Enqueuer, index: str, *, job: str | None = None) -> None:
        self.enqueuer = enqueuer
        self.index = index
        tracker = enqueuer.tracker
        state = tracker.job(job) if job is not None else {}
        if job is None or not state:
            job = job or uuid.uuid4().hex
            tracker.start_job(job, index=index, total=0, batches=0, read_errors=0)
            state = {}
        self.id: str = job
        self.batches = int(state.get("batches", 0))
        self.sent = int(state.get("total", 0))

    def send(self, ids: Sequence[str], *, batch_size: int | None = None) -> int:
        """Send ``ids`` in batches (default size: ``ingest_batch_size``); returns the batches sent."""
        settings = self.enqueuer.settings
        sent = 0
        for batch in id_batches(ids, batch_size or settings.ingest_batch_size):
            self.enqueuer.celery.send_task(
                EMBED_ATTACHED_TASK,
                kwargs={"job": self.id, "batch": self.batches, "index": self.index, "ids": batch},
                queue=settings.ingest_queue,
            )
            self.enqueuer.tracker.add_batches(self.id, 1, len(batch))
            self.batches += 1
            self.sent += len(batch)
            sent += 1
        return sent

    def job(self) -> Job:
        """The job as :func:`~hybrid_search.ingest.jobs.wait_for_job` follows it."""
        return Job(self.id, self.index, self.sent, 0, self.batches)


def enqueue_ids(enqueuer: Enqueuer, index: str, ids: Sequence[str], *, batch_size: int | None = None) -> Job:
    """Send the ids of changed documents of attached ``index`` to the workers, as one job."""
    attached = AttachedJob(enqueuer, index)
    attached.send(ids, batch_size=batch_size)
    return attached.job()


def given_up(index: str, ids: Sequence[str], why: str) -> AttachedReport:
    """A batch never embedded (the engine stayed unavailable, or the index is not attached): every id
    dead-lettered with the reason."""
    report = AttachedReport()
    report.failed = [{"id": doc_id, "source": index, "reason": why} for doc_id in ids]
    return report


__all__ = [
    "CONFLICT_RETRIES",
    "AttachedIngestor",
    "AttachedJob",
    "AttachedReport",
    "NotAttachedError",
    "check_layer_fields",
    "enqueue_ids",
    "given_up",
    "id_batches",
    "recorded_attachment",
    "source_fields",
]
