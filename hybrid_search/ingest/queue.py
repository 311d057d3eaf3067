"""The Celery application, configured from the settings: used by the workers and by the clients that enqueue.

Clients send tasks by name (:data:`INGEST_TASK`), so enqueuing needs neither torch nor the worker code.
Reliability choices: late acknowledgement and one prefetched task per process (a killed worker's batch is
redelivered, never lost: at once when only its pool process died, after the visibility timeout when the whole
worker did), JSON only, bounded retries with exponential backoff in the tasks.
"""

from __future__ import annotations

from typing import Any

from hybrid_search.settings import Settings

INGEST_TASK = "hybrid_search.ingest_batch"
EMBED_ATTACHED_TASK = "hybrid_search.embed_attached"  # ids of an attached (shop) index to embed


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
        task_routes={
            INGEST_TASK: {"queue": settings.ingest_queue},
            EMBED_ATTACHED_TASK: {"queue": settings.ingest_queue},
        },
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


__all__ = ["EMBED_ATTACHED_TASK", "INGEST_TASK", "make_celery", "retry_backoff_max", "transport_options"]
