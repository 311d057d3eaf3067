"""Sending products to the workers: the one :class:`Enqueuer`, used by the CLI, the API and ``hybrid-search run``.

Batches are sent by task name (:data:`~hybrid_search.ingest.queue.INGEST_TASK`), so enqueuing needs neither torch
nor the worker code. Each job gets one record in Redis (:class:`~hybrid_search.ingest.tracking.Tracker`), the
same whoever enqueued it, so ``/tasks/{id}``, ``hybrid-search ingest --wait`` and
:func:`hybrid_search.ingest.jobs.wait_for_job` read one format.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from hybrid_search.catalog import Catalogue, Product, RecordError
from hybrid_search.ingest.queue import INGEST_TASK, make_celery
from hybrid_search.ingest.tracking import QueueUnavailableError, Tracker, connect
from hybrid_search.settings import Settings, redact_url

# one batch as the task takes it: the products (catalogue input format) and where each came from
_Batch = tuple[list[dict[str, Any]], list[str]]


@dataclass(frozen=True)
class Job:
    """An enqueued job: its id, the index it writes to, the valid products sent, the invalid records
    dead-lettered before sending, and the batches sent."""

    id: str
    index: str
    read: int
    read_errors: int
    batches: int


class Enqueuer:
    """Sends product batches to the ingest queue and records each job in Redis.

    Make one per process (the API's lifespan, a CLI command) and reuse it. ``tracker`` and ``celery``: clients
    to borrow (left open by :meth:`close`); by default it makes its own from the settings.
    """

    def __init__(self, settings: Settings, *, tracker: Tracker | None = None, celery: Any = None) -> None:
        self.settings = settings
        self.tracker = tracker if tracker is not None else Tracker(connect(settings.redis_url))
        self._owns_celery = celery is None
        self.celery = make_celery(settings) if celery is None else celery

    def close(self) -> None:
        """Close the Celery app this enqueuer made (a borrowed one stays open)."""
        if self._owns_celery:
            self.celery.close()

    def __enter__(self) -> Enqueuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def catalogue(
        self, catalogue: Catalogue, *, index: str | None = None, batch_size: int | None = None
    ) -> Job:
        """Validate the catalogue and enqueue its products in batches; invalid records go to the dead letters.

        ``index``: the index or alias written to (default: the alias); ``batch_size``: products per task
        (default: the setting). Sources are ``<file name>#<record number>``.
        """
        size = batch_size or self.settings.ingest_batch_size
        errors: list[RecordError] = []

        def batches() -> Iterator[_Batch]:
            batch: list[tuple[str, Product]] = []
            for n, item in enumerate(catalogue.records(), 1):
                if isinstance(item, RecordError):
                    errors.append(item)
                    continue
                batch.append((f"{catalogue.path.name}#{n}", item))
                if len(batch) >= size:
                    yield [p.to_input() for _s, p in batch], [s for s, _p in batch]
                    batch = []
            if batch:
                yield [p.to_input() for _s, p in batch], [s for s, _p in batch]

        return self._enqueue(index, batches(), base_dir=catalogue.base_dir, errors=errors)

    def products(self, products: Sequence[Mapping[str, Any]], *, index: str | None = None) -> Job:
        """Enqueue products already validated (catalogue input format, as :meth:`Product.to_input` gives) in
        batches of the setting's size; their sources are ``api#<position>``."""
        size = self.settings.ingest_batch_size

        def batches() -> Iterator[_Batch]:
            for start in range(0, len(products), size):
                chunk = [dict(p) for p in products[start : start + size]]
                yield chunk, [f"api#{start + n}" for n in range(len(chunk))]

        return self._enqueue(index, batches(), base_dir=None, errors=None)

    def _enqueue(
        self,
        index: str | None,
        batches: Iterable[_Batch],
        *,
        base_dir: Path | None,
        errors: list[RecordError] | None,
    ) -> Job:
        """Start the job's record, send each batch and count it, then record the invalid records (``errors``,
        complete once ``batches`` is exhausted) as the job's read errors and dead letters."""
        index = index or self.settings.index_alias
        job = uuid.uuid4().hex
        read = sent = 0
        try:
            self.tracker.start_job(job, index=index, total=0, batches=0, read_errors=0)
            for records, sources in batches:
                self.celery.send_task(
                    INGEST_TASK,
                    kwargs={
                        "job": job,
                        "batch": sent,
                        "index": index,
                        "records": records,
                        "sources": sources,
                        "base_dir": None if base_dir is None else str(base_dir),
                    },
                    queue=self.settings.ingest_queue,
                )
                self.tracker.add_batches(job, 1, len(records))
                read += len(records)
                sent += 1
            if errors is not None:
                self.tracker.set_read_errors(job, len(errors))
                self.tracker.dead_letter(index, [e.as_dict() for e in errors], job=job)
        except (redis.RedisError, OSError) as exc:
            raise QueueUnavailableError(
                f"cannot reach Redis at {redact_url(self.settings.redis_url)}: {exc}"
            ) from None
        return Job(job, index, read, len(errors or ()), sent)


def enqueue_catalogue(
    settings: Settings, catalogue: Catalogue, *, index: str | None = None, batch_size: int | None = None
) -> Job:
    """One catalogue through an :class:`Enqueuer` of its own (scripts and tests that enqueue once)."""
    with Enqueuer(settings) as enqueuer:
        return enqueuer.catalogue(catalogue, index=index, batch_size=batch_size)


__all__ = ["Enqueuer", "Job", "enqueue_catalogue"]
