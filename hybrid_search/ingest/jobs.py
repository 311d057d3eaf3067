"""Following an enqueued job (:class:`~hybrid_search.ingest.enqueue.Job`) to the end, and what it did."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from hybrid_search.ingest.enqueue import Job
from hybrid_search.ingest.tracking import QueueUnavailableError, Tracker, connect, dead_letter_key
from hybrid_search.settings import Settings, redact_url


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
                raise QueueUnavailableError(
                    f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}"
                ) from None
            time.sleep(min(1.0, poll_s * 2))
            continue
        if on_progress is not None:
            on_progress(state)
        if int(state.get("batches_done", 0)) >= job.batches:
            return summary(settings, job, state)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job.id}: {state.get('batches_done')} of {job.batches} batches done")
        time.sleep(poll_s)


def progress(job: Job, state: dict[str, Any]) -> tuple[int, int]:
    """``(products done, products failed)`` of a job from its state (:meth:`Tracker.job`); failed includes the
    catalogue's invalid records."""
    failed = int(state.get("failed", 0))
    return int(state.get("indexed", 0)) + failed, failed + job.read_errors


def summary(settings: Settings, job: Job, state: dict[str, Any]) -> dict[str, Any]:
    """What the job did, as ``hybrid-search ingest --json`` prints it; ``state`` as :meth:`Tracker.job` reads it
    (``{}`` for a job only just queued)."""
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


__all__ = ["progress", "summary", "wait_for_job"]
