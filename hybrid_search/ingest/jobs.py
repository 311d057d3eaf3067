"""The client side of ingestion: read a catalogue, enqueue it in batches, follow the job to the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from hybrid_search.catalog import Catalogue, Product, RecordError
from hybrid_search.ingest.queue import INGEST_TASK, make_celery
from hybrid_search.ingest.tracking import QueueUnavailableError, Tracker, connect, dead_letter_key
from hybrid_search.settings import Settings


@dataclass(frozen=True)
class Job:
    id: str
    index: str
    read: int
    read_errors: int
    batches: int


def _batches(
    catalogue: Catalogue, size: int, errors: list[RecordError]
) -> Iterator[list[tuple[str, Product]]]:
    batch: list[tuple[str, Product]] = []
    for n, item in enumerate(catalogue.records(), 1):
        if isinstance(item, RecordError):
            errors.append(item)
            continue
        batch.append((f"{catalogue.path.name}#{n}", item))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def enqueue_catalogue(
    settings: Settings, catalogue: Catalogue, *, index: str | None = None, batch_size: int | None = None
) -> Job:
    """Validate the catalogue and enqueue its products in batches; invalid records go to the dead letters."""
    index = index or settings.index_alias
    size = batch_size or settings.ingest_batch_size
    job_id = uuid.uuid4().hex
    tracker = Tracker(connect(settings.redis_url))
    app = make_celery(settings)
    errors: list[RecordError] = []
    read = batches = 0
    try:
        tracker.start_job(job_id, index=index, total=0, batches=0, read_errors=0)
        for batch in _batches(catalogue, size, errors):
            app.send_task(
                INGEST_TASK,
                kwargs={
                    "job": job_id,
                    "batch": batches,
                    "index": index,
                    "records": [p.to_input() for _s, p in batch],
                    "sources": [s for s, _p in batch],
                    "base_dir": str(catalogue.base_dir),
                },
                queue=settings.ingest_queue,
            )
            tracker.add_batches(job_id, 1, len(batch))
            read += len(batch)
            batches += 1
        tracker.redis.hset(f"hybrid-search:job:{job_id}", "read_errors", len(errors))
        tracker.dead_letter(index, [e.as_dict() for e in errors], job=job_id)
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailableError(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
    finally:
        app.close()
    return Job(job_id, index, read, len(errors), batches)


def wait_for_job(
    settings: Settings,
    job: Job,
    *,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    redis_grace_s: float = 120.0,
) -> dict[str, Any]:
    """Poll the job until every batch is done; returns the summary (see :func:`summary`).

    A Redis outage shorter than ``redis_grace_s`` (a restart) is waited out: the job's state and its queued
    batches live in Redis (AOF), and the workers carry on when it is back.
    """
    tracker = Tracker(connect(settings.redis_url))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    down_since: float | None = None
    while True:
        try:
            state = tracker.job(job.id)
            down_since = None
        except redis.RedisError as exc:
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            if now - down_since >= redis_grace_s:
                raise QueueUnavailableError(f"cannot reach Redis at {settings.redis_url}: {exc}") from None
            time.sleep(min(1.0, poll_s * 2))
            continue
        if on_progress is not None:
            on_progress(state)
        if int(state.get("batches_done", 0)) >= job.batches:
            return summary(settings, job, state)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job.id}: {state.get('batches_done')} of {job.batches} batches done")
        time.sleep(poll_s)


def summary(settings: Settings, job: Job, state: dict[str, Any]) -> dict[str, Any]:
    failed = int(state.get("failed", 0))
    return {
        "job": job.id,
        "index": job.index,
        "read": job.read + job.read_errors,
        "indexed": int(state.get("indexed", 0)),
        "skipped_unchanged": int(state.get("unchanged", 0)),
        "dead_lettered": failed + job.read_errors,
        "text_embedded": int(state.get("text_embedded", 0)),
        "images_embedded": int(state.get("images_embedded", 0)),
        "dead_letters": f"{settings.redis_url} list {dead_letter_key(job.index)}",
    }


__all__ = ["Job", "enqueue_catalogue", "summary", "wait_for_job"]
