"""Thin tasks: deserialize, call library code, record the outcome, retry on transient failures.

The work itself is :class:`hybrid_search.ingest.pipeline.Ingestor`; each worker process builds one (and so loads
each model once) on its first task.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import redis

from hybrid_search.engine import create_engine
from hybrid_search.errors import EngineUnavailableError
from hybrid_search.indexing import configured_encoders
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.queue import INGEST_TASK
from hybrid_search.settings import get_settings
from workers.app import app

log = logging.getLogger(__name__)


@functools.cache
def _context() -> tuple[Ingestor, Tracker]:
    settings = get_settings()
    encoders = configured_encoders(settings)
    return Ingestor(settings, create_engine(settings), encoders), Tracker(connect(settings.redis_url))


@app.task(  # type: ignore[untyped-decorator]
    bind=True,
    name=INGEST_TASK,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(EngineUnavailableError, redis.ConnectionError, redis.TimeoutError),
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
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
    report = ingestor.ingest(
        records, index=index, base_dir=Path(base_dir) if base_dir else None, sources=sources
    )
    tracker.finish_batch(job, batch, report.summary(), alias=index, failed=report.failed)
    log.info("job %s batch %d: %s", job, batch, report.summary())
    return report.summary()
