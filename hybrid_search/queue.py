"""The Celery application, configured from the settings: used by the workers and by the clients that enqueue.

Clients send tasks by name (:data:`INGEST_TASK`), so enqueuing needs neither torch nor the worker code.
Reliability choices: late acknowledgement and one prefetched task per process (a killed worker's batch is
redelivered, never lost), JSON only, bounded retries with exponential backoff in the tasks.
"""

from __future__ import annotations

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
        # a batch not acknowledged within this time (its worker died) is delivered again
        broker_transport_options={"visibility_timeout": 3600},
        worker_send_task_events=True,
        task_send_sent_event=True,
    )
    return app


__all__ = ["INGEST_TASK", "WORKER_ENV", "make_celery"]
