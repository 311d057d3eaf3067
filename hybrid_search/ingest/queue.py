"""The Celery application, configured from the settings: used by the workers and by the clients that enqueue.

Clients send tasks by name (:data:`INGEST_TASK`), so enqueuing needs neither torch nor the worker code.
Reliability choices: late acknowledgement and one prefetched task per process (a killed worker's batch is
redelivered, never lost: at once when only its pool process died, after the visibility timeout when the whole
worker did), JSON only, bounded retries with exponential backoff in the tasks.
"""

from __future__ import annotations

import os
from typing import Any

from hybrid_search.settings import Settings

INGEST_TASK = "hybrid_search.ingest_batch"

# glibc allocator settings for worker processes: without them batched CPU inference spends most of its time in
# page faults (see hybrid_search/encoders/image.py; 2-3x faster with them). glibc reads them at start-up only.
WORKER_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}


def transport_options(settings: Settings) -> dict[str, Any]:
    """Redis transport options: a batch taken but not acknowledged within the visibility timeout (its worker
    died) is put back on the queue by any live worker, which looks for such batches every few seconds (and at
    start-up)."""
    timeout = settings.ingest_visibility_timeout_s
    return {
        "visibility_timeout": timeout,
        "unacked_restore_interval": max(1, min(10, int(timeout // 4))),
        "unacked_restore_throttle": 1,
    }


def retry_backoff_max(settings: Settings) -> int:
    """Longest wait between two retries of a batch: 60 s, and under half the visibility timeout (a retry
    waits in its worker unacknowledged, and one held longer than the timeout would be delivered again)."""
    return max(1, min(60, int(settings.ingest_visibility_timeout_s // 2)))


def worker_torch_threads(settings: Settings, cores: int | None = None) -> int:
    """Torch intra-op threads for one worker process: the setting, or the CPU cores shared out between processes.

    Several single-threaded processes beat one process with as many threads: each process's engine round trips
    and bookkeeping (waiting on a bulk write, Redis) then overlap with another process's inference instead of
    leaving the cores idle, and oversubscribed threads (processes x threads > cores) spin waiting for each other.
    """
    if settings.worker_torch_threads > 0:
        return settings.worker_torch_threads
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // settings.worker_concurrency)


def apply_worker_threads(settings: Settings) -> int:
    """Set torch's intra-op threads in this worker process (see :func:`worker_torch_threads`); returns them."""
    threads = worker_torch_threads(settings)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the workers extra
        return threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def make_celery(settings: Settings) -> Any:
    """A Celery app for ``settings`` (Redis broker and result backend)."""
    from celery import Celery

    app = Celery("hybrid_search", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.ingest_queue,
        task_routes={INGEST_TASK: {"queue": settings.ingest_queue}},
        result_expires=24 * 3600,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings),
        # a result that cannot be stored (Redis restarting) is retried, not turned into a failed task
        result_backend_always_retry=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


__all__ = ["INGEST_TASK", "WORKER_ENV", "make_celery", "retry_backoff_max", "transport_options"]
