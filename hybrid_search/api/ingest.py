"""Enqueue products posted to the API: validated here, embedded and written by the workers.

Sent through the same :class:`~hybrid_search.ingest.enqueue.Enqueuer` as the CLI's (by task name, so the API
needs no worker code), with the same job record in Redis, so ``/tasks/{id}`` and ``hybrid-search`` read one
format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hybrid_search.catalog import validate_product
from hybrid_search.errors import ValidationError
from hybrid_search.ingest.enqueue import Enqueuer

if TYPE_CHECKING:
    from hybrid_search.api.state import Services

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
    products = validate_products(records)
    enqueuer = Enqueuer(services.settings, tracker=services.tracker, celery=services.celery)
    return enqueuer.products(products).id


__all__ = ["enqueue_products", "validate_products"]
