"""Thin tasks: deserialize, call library code, record the outcome, retry on transient failures.

The work itself is :class:`hybrid_search.ingest.pipeline.Ingestor` (``ingest_batch``: catalogue products into
the own index) and :class:`hybrid_search.ingest.attached.AttachedIngestor` (``embed_attached``: ids of a shop's
attached index, whose ``hs_`` fields it writes conditionally); each worker process builds them (and so loads
each model once, for both) on its first task. Both tasks behave alike below.

Delivery is at least once (late acknowledgement; a batch whose worker died is delivered again), and running a
batch twice changes nothing: products are upserted by id and :meth:`Tracker.finish_batch` counts a batch once.
Failures:

- the engine cannot be reached or cannot take the writes now: the batch is retried with jittered exponential
  backoff, up to ``HYBRID_SEARCH_INGEST_MAX_RETRIES`` times; then its products are dead-lettered with the reason
  (never dropped silently) and the batch counts as done, so the job ends;
- Redis drops the connection: each command is retried for about :data:`REDIS_RETRY_S` seconds; past that the
  batch goes back on the queue (rejected with requeue, or delivered again after the visibility timeout).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from celery.exceptions import Reject
from celery.utils.time import get_exponential_backoff_interval

from hybrid_search.encoders.roles import configured_encoders
from hybrid_search.engine import create_engine
from hybrid_search.errors import EngineUnavailableError
from hybrid_search.ingest.attached import AttachedIngestor, AttachedReport, NotAttachedError, given_up
from hybrid_search.ingest.pipeline import BatchReport, Ingestor
from hybrid_search.ingest.queue import EMBED_ATTACHED_TASK, INGEST_TASK, retry_backoff_max
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.ingest.workers import apply_worker_threads
from hybrid_search.settings import get_settings
from workers.app import app

log = logging.getLogger(__name__)

REDIS_RETRY_S = 60.0  # how long Redis commands ride out a Redis restart, then the batch is requeued
RETRY_BACKOFF_FACTOR = 2  # first retry within 2 s, then 4, 8, ... (full jitter) up to retry_backoff_max


@functools.cache
def _context() -> tuple[Ingestor, Tracker]:
    settings = get_settings()
    apply_worker_threads(settings)
    encoders = configured_encoders(settings)
    tracker = Tracker(connect(settings.redis_url, retry_for_s=REDIS_RETRY_S))
    return Ingestor(settings, create_engine(settings), encoders), tracker


@functools.cache
def _attached() -> AttachedIngestor:
    """The attached-index ingestor of this process: the own ingestor's engine client and encoders (one set of
    models per process)."""
    ingestor, _tracker = _context()
    return AttachedIngestor(ingestor.settings, ingestor.engine, ingestor.encoders)


def _backoff(retries: int) -> int:
    return int(
        get_exponential_backoff_interval(
            RETRY_BACKOFF_FACTOR, retries, retry_backoff_max(get_settings()), full_jitter=True
        )
    )


def _record(
    tracker: Tracker,
    job: str,
    batch: int,
    index: str,
    summary: dict[str, Any],
    failed: Sequence[dict[str, Any]],
) -> None:
    """Count the batch in the job, once; Redis still away after REDIS_RETRY_S: back on the queue (or, if that
    fails too, delivered again after the visibility timeout); what was written is written, so the next run only
    counts the batch."""
    try:
        counted = tracker.finish_batch(job, batch, summary, alias=index, failed=failed)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("job %s batch %d: cannot record it in Redis (%s); requeued", job, batch, exc)
        raise Reject(exc, requeue=True) from None
    if counted:
        log.info("job %s batch %d: %s", job, batch, summary)
    else:
        log.warning("job %s batch %d was delivered again: already counted, nothing counted twice", job, batch)


def _given_up(records: Sequence[dict[str, Any]], sources: Sequence[str], why: str) -> BatchReport:
    """A batch the engine never took: every product dead-lettered with the reason, none dropped."""
    report = BatchReport()
    for n, record in enumerate(records):
        raw_id = record.get("id") if isinstance(record, dict) else None
        source = sources[n] if n < len(sources) else f"record {n + 1}"
        report.failed.append({"id": None if raw_id is None else str(raw_id)[:256], "source": source,
                              "reason": why})  # fmt: skip
    return report


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=INGEST_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=get_settings().ingest_max_retries,
)
def ingest_batch(
    self: Any,
    job: str,
    batch: int,
    index: str,
    records: list[dict[str, Any]],
    sources: list[str],
    base_dir: str | None,
) -> dict[str, Any]:
    ingestor, tracker = _context()
    log.info(
        "job %s batch %d: started, %d records, attempt %d", job, batch, len(records), self.request.retries + 1
    )
    try:
        report = ingestor.ingest(
            records, index=index, base_dir=Path(base_dir) if base_dir else None, sources=sources
        )
    except EngineUnavailableError as exc:
        retries = int(self.request.retries)
        if retries < self.max_retries:
            countdown = _backoff(retries)
            log.warning("job %s batch %d: %s; retry %d in %ds", job, batch, exc, retries + 1, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        why = f"not indexed: the engine was unavailable through {retries} retries ({exc}); ingest it again"
        log.error("job %s batch %d: %s", job, batch, why)
        report = _given_up(records, sources, why)
    _record(tracker, job, batch, index, report.summary(), report.failed)
    return report.summary()


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=EMBED_ATTACHED_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=get_settings().ingest_max_retries,
)
def embed_attached(self: Any, job: str, batch: int, index: str, ids: list[str]) -> dict[str, int]:
    """Embed the stale documents among ``ids`` of the attached ``index`` (:class:`AttachedIngestor`)."""
    _ingestor, tracker = _context()
    log.info("job %s batch %d: started, %d ids of %s, attempt %d", job, batch, len(ids), index,
             self.request.retries + 1)  # fmt: skip
    report: AttachedReport
    try:
        report = _attached().embed_index(index, ids)
    except NotAttachedError as exc:
        report = given_up(index, ids, f"not embedded: {exc}")
    except EngineUnavailableError as exc:
        retries = int(self.request.retries)
        if retries < self.max_retries:
            countdown = _backoff(retries)
            log.warning("job %s batch %d: %s; retry %d in %ds", job, batch, exc, retries + 1, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        why = f"not embedded: the engine was unavailable through {retries} retries ({exc}); sync it again"
        log.error("job %s batch %d: %s", job, batch, why)
        report = given_up(index, ids, why)
    _record(tracker, job, batch, index, report.summary(), report.dead_letters())
    return report.summary()
