"""Enqueue products posted to the API: validated here, embedded and written by the workers.

The same task and kwargs as :func:`hybrid_search.ingest.jobs.enqueue_catalogue` (sent by name, so the API needs
no worker code), and the same job record in Redis, so ``/tasks/{id}`` and ``hybrid-search`` read one format.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis

from hybrid_search.catalog import validate_product
from hybrid_search.errors import ValidationError
from hybrid_search.ingest.queue import INGEST_TASK
from hybrid_search.ingest.tracking import QueueUnavailableError
from hybrid_search.settings import redact_url

if TYPE_CHECKING:
    from hybrid_search.api.app import Services

MAX_REPORTED = 5


def validate_products(records: Sequence[Any]) -> list[dict[str, Any]]:
    """Each record validated (as the workers will); any invalid one refuses the request, naming up to five."""
    problems: list[str] = []
    products: list[dict[str, Any]] = []
    seen: set[str] = set()
    first: int | None = None
    for n, record in enumerate(records):
        try:
            product = validate_product(record)
            if product.id in seen:
                raise ValueError(f"duplicate id {product.id!r}")
            seen.add(product.id)
            products.append(product.to_input())
        except ValueError as exc:
            first = n if first is None else first
            if len(problems) < MAX_REPORTED:
                problems.append(f"product {n}: {exc}")
    if problems:
        more = len(records) - len(products) - len(problems)
        tail = f" (and {more} more)" if more > 0 else ""
        raise ValidationError("invalid products: " + "; ".join(problems) + tail, field=f"products.{first}")
    return products


def enqueue_products(services: Services, records: Sequence[Any]) -> str:
    """Validate ``records`` and send them to the ingest queue in batches; returns the task (job) id."""
    settings = services.settings
    products = validate_products(records)
    job = uuid.uuid4().hex
    index = settings.index_alias
    size = settings.ingest_batch_size
    try:
        services.tracker.start_job(job, index=index, total=0, batches=0, read_errors=0)
        for batch, start in enumerate(range(0, len(products), size)):
            chunk = products[start : start + size]
            services.celery.send_task(
                INGEST_TASK,
                kwargs={
                    "job": job,
                    "batch": batch,
                    "index": index,
                    "records": chunk,
                    "sources": [f"api#{start + n}" for n in range(len(chunk))],
                    "base_dir": None,
                },
                queue=settings.ingest_queue,
            )
            services.tracker.add_batches(job, 1, len(chunk))
    except (redis.RedisError, OSError) as exc:
        raise QueueUnavailableError(
            f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}"
        ) from None
    return job


__all__ = ["enqueue_products", "validate_products"]
