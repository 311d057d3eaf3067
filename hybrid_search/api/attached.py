"""The hook a shop calls when it has written documents of its attached index: their ids go to the workers.

    POST /attached/{index}/changed   {"ids": ["MH01", "WJ12"]}   -> 202 {"task_id": ..., "status_url": ...}

The workers read each document again and embed it only when its content changed (a price update embeds
nothing; a deleted document is skipped). An index that is not attached (``hybrid-search attach apply``) is a 404.
Like ``POST /products``, it is a write: it needs an API key (or a loopback client when none is set).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from hybrid_search.api.errors import NotFoundError
from hybrid_search.api.schemas import ErrorOut
from hybrid_search.api.state import ServicesDep
from hybrid_search.errors import IndexNotFoundError
from hybrid_search.ingest.attached import enqueue_ids
from hybrid_search.ingest.enqueue import Enqueuer

MAX_IDS = 1000
CHANGED_PATH = "/attached/{index}/changed"

router = APIRouter()

DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class ChangedBody(BaseModel):
    """Ids of the documents the shop wrote (created, changed or deleted)."""

    ids: list[DocumentId] = Field(min_length=1, max_length=MAX_IDS, examples=[["MH01", "WJ12"]])


class ChangedOut(BaseModel):
    task_id: str
    status: str
    index: str
    ids: int
    batches: int
    status_url: str


@router.post(
    CHANGED_PATH,
    status_code=202,
    response_model=ChangedOut,
    responses={404: {"model": ErrorOut, "description": "The index is not attached."}},
    tags=["products"],
)
def changed(index: str, body: ChangedBody, services: ServicesDep) -> JSONResponse:
    """Enqueue the shop's changed documents for the workers (embedded when their content changed); follow the
    task at ``/tasks/{id}``."""
    try:
        attached = services.engine.attachment_meta(index)
    except IndexNotFoundError:
        attached = None
    if not attached:
        raise NotFoundError(
            f"the index {index!r} is not attached (hybrid-search attach apply --config FILE)", field="index"
        )
    enqueuer = Enqueuer(services.settings, tracker=services.tracker, celery=services.celery)
    job = enqueue_ids(enqueuer, index, body.ids)
    out: dict[str, Any] = {
        "task_id": job.id,
        "status": "queued",
        "index": index,
        "ids": job.read,
        "batches": job.batches,
        "status_url": f"/tasks/{job.id}",
    }
    return JSONResponse(out, status_code=202)


__all__ = ["CHANGED_PATH", "router"]
