"""Backfill: give every document of an attached index its vectors, through the workers.

    result = backfill(engine, settings, config, wait=True)   # resumes a backfill that was stopped
    result.embedded, result.unchanged, result.failed

The scanner pages the index with a point in time and ``search_after`` (:func:`scan`), sorted by the id role's
keyword field (or, without one, ``_doc`` on OpenSearch and ``_shard_doc`` on Elasticsearch), reading only the role
fields and ``hs_content_hash`` / ``hs_model_version``. It counts the documents that are up to date itself and sends
the ids of the stale ones to the workers (:class:`~hybrid_search.ingest.attached.AttachedJob`, one job), which
embed them (:class:`~hybrid_search.ingest.attached.AttachedIngestor`).

After each page it checkpoints its position in Redis (``hybrid-search:attach:backfill:<index>``: the last sort
values, its counts and its job), so a backfill that was killed resumes where it stopped: a new point in time,
``search_after`` from the checkpoint, the same job. A finished backfill removes its checkpoint (the next one
starts over: everything embedded then counts as unchanged). Sorted by ``_shard_doc`` (Elasticsearch without an
id keyword field), positions do not outlive their point in time, and a stopped backfill starts over.

It also records, when the index has an ``updated_at`` role, the newest ``updated_at`` of the index when it began,
as the point :func:`hybrid_search.ingest.sync.sync_once` follows the shop's changes from.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from hybrid_search.catalog.attachment import AttachConfig, is_stale, model_version
from hybrid_search.engine import SearchEngine
from hybrid_search.ingest.attached import AttachedJob, source_fields
from hybrid_search.ingest.enqueue import Enqueuer
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.tracking import JOB_TTL_S, QueueUnavailableError
from hybrid_search.settings import Settings, redact_url

BACKFILL_KEY = "hybrid-search:attach:backfill:{index}"
SYNC_KEY = "hybrid-search:attach:sync:{index}"
PIT_KEEP_ALIVE = "5m"


# ---- checkpoints in Redis ---------------------------------------------------------------------------------


def load_checkpoint(client: redis.Redis, key: str) -> dict[str, Any] | None:
    raw = client.get(key)
    if raw is None:
        return None
    data = json.loads(raw if isinstance(raw, str | bytes) else str(raw))
    return data if isinstance(data, dict) else None


def save_checkpoint(client: redis.Redis, key: str, data: Mapping[str, Any]) -> None:
    client.set(key, json.dumps(dict(data)), ex=JOB_TTL_S)


# ---- the scan -------------------------------------------------------------------------------------------


def scan_sort(engine: SearchEngine, config: AttachConfig) -> list[dict[str, Any]]:
    """The order a scan pages in: the id role's keyword field, else the index order of the point in time:
    ``_doc`` (OpenSearch, where sorting on ``_id`` loads fielddata and is deprecated) / ``_shard_doc``
    (Elasticsearch, whose ``_id`` has no doc values)."""
    keyword = config.schema.keyword_field("id")
    if keyword is not None:
        return [{keyword: {"order": "asc"}}]
    return [{"_shard_doc": "asc"}] if engine.kind == "elasticsearch" else [{"_doc": "asc"}]


def resumable(sort: Sequence[Mapping[str, Any]]) -> bool:
    """Whether positions in this order outlive their point in time (``_shard_doc`` and ``_doc`` ones do not)."""
    return not any("_shard_doc" in clause or "_doc" in clause for clause in sort)


def scan(
    engine: SearchEngine,
    index: str,
    *,
    sort: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    page_size: int,
    query: Mapping[str, Any] | None = None,
    search_after: Sequence[Any] | None = None,
    first: Callable[[str], None] | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """The hits of ``query`` (default: every document), page by page, under one point in time (closed at the
    end, or when the caller stops). ``first(pit_id)``: called once the point in time is open, before the
    first page (to read something of the same snapshot)."""
    pit = engine.open_pit(index, keep_alive=PIT_KEEP_ALIVE)
    try:
        if first is not None:
            first(pit)
        after = list(search_after) if search_after else None
        while True:
            body: dict[str, Any] = {
                "size": page_size,
                "query": dict(query) if query else {"match_all": {}},
                "sort": [dict(s) for s in sort],
                "_source": list(fields),
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            response = engine.search_pit(pit, body, keep_alive=PIT_KEEP_ALIVE)
            pit = response.get("pit_id") or pit
            hits = list(response.get("hits", {}).get("hits", []))
            if not hits:
                return
            yield hits
            after = list(hits[-1]["sort"])
            if len(hits) < page_size:
                return
    finally:
        engine.close_pit(pit)


def newest_updated(engine: SearchEngine, pit: str, config: AttachConfig) -> int | None:
    """The newest ``updated_at`` of the point in time, in epoch milliseconds (None: no such role or values)."""
    name = config.schema.keyword_field("updated_at")
    if name is None:
        return None
    body = {"size": 0, "track_total_hits": False, "aggs": {"newest": {"max": {"field": name}}}}
    value = engine.search_pit(pit, body, keep_alive=PIT_KEEP_ALIVE).get("aggregations", {})
    newest = (value.get("newest") or {}).get("value")
    return None if newest is None else int(newest)


@dataclass
class ScanProgress:
    """Where a scan is: documents read, found up to date, and sent to the workers; pages read."""

    index: str
    job: str
    total: int
    scanned: int = 0
    unchanged: int = 0
    queued: int = 0
    pages: int = 0


@dataclass
class BackfillResult:
    """What a backfill did. ``unchanged``: found up to date, by the scanner or by the workers;
    ``embedded``, ``failed``, ``missing`` (deleted by the shop before the workers got to them) and
    ``photo_failed`` are known once the job is waited for (``waited``)."""

    index: str
    job: str
    scanned: int
    queued: int
    pages: int
    resumed: bool
    waited: bool = False
    unchanged: int = 0
    embedded: int = 0
    failed: int = 0
    missing: int = 0
    photo_failed: int = 0
    conflicts_retried: int = 0
    dead_letters: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


def _redis_error(settings: Settings, exc: Exception) -> QueueUnavailableError:
    return QueueUnavailableError(f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}")


def finish(
    settings: Settings,
    result: BackfillResult,
    attached: AttachedJob,
    *,
    wait: bool,
    timeout_s: float | None = None,
    on_job: Callable[[dict[str, Any]], None] | None = None,
) -> BackfillResult:
    """With ``wait``: follow the job to its end and fill in what the workers did."""
    if not wait:
        return result
    summary = wait_for_job(settings, attached.job(), timeout_s=timeout_s, on_progress=on_job)
    state = attached.enqueuer.tracker.job(attached.id)
    result.waited = True
    result.embedded = int(summary["indexed"])
    result.unchanged += int(summary["skipped_unchanged"])
    result.failed = int(state.get("failed", 0))
    result.missing = int(state.get("missing", 0))
    result.photo_failed = int(state.get("photo_failed", 0))
    result.conflicts_retried = int(state.get("conflicts_retried", 0))
    result.dead_letters = str(summary["dead_letters"])
    return result


def backfill(
    engine: SearchEngine,
    settings: Settings,
    config: AttachConfig,
    *,
    progress: Callable[[ScanProgress], None] | None = None,
    resume: bool = True,
    wait: bool = False,
    enqueuer: Enqueuer | None = None,
    page_size: int | None = None,
    timeout_s: float | None = None,
    on_job: Callable[[dict[str, Any]], None] | None = None,
) -> BackfillResult:
    """Scan the attached index and send its stale documents to the workers (see the module docstring).

    ``progress``: called after each page, once it is checkpointed (an exception it raises stops the backfill
    there: the next one resumes after that page). ``resume=False``: forget a checkpoint and start over.
    ``wait``: follow the job to its end (``on_job`` gets its state at each poll). ``page_size``: documents
    per page (default ``attach_scan_page_size``); ids go to the workers ``ingest_batch_size`` at a time.
    """
    own = enqueuer is None
    enqueuer = enqueuer if enqueuer is not None else Enqueuer(settings)
    try:
        return _backfill(engine, settings, config, enqueuer, progress=progress, resume=resume, wait=wait,
                         page_size=page_size or settings.attach_scan_page_size, timeout_s=timeout_s,
                         on_job=on_job)  # fmt: skip
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise _redis_error(settings, exc) from None
    finally:
        if own:
            enqueuer.close()


def _backfill(
    engine: SearchEngine,
    settings: Settings,
    config: AttachConfig,
    enqueuer: Enqueuer,
    *,
    progress: Callable[[ScanProgress], None] | None,
    resume: bool,
    wait: bool,
    page_size: int,
    timeout_s: float | None,
    on_job: Callable[[dict[str, Any]], None] | None,
) -> BackfillResult:
    index = config.index
    client = enqueuer.tracker.redis
    key = BACKFILL_KEY.format(index=index)
    sort = scan_sort(engine, config)
    state = load_checkpoint(client, key) if resume else None
    if state is not None and (not resumable(sort) or state.get("sort") != sort):
        state = None  # positions of another order (or of a point in time that is gone): start over
    attached = AttachedJob(enqueuer, index, job=None if state is None else str(state["job"]))
    at = ScanProgress(index, attached.id, engine.count(index))
    if state is not None:
        at.scanned, at.unchanged = int(state["scanned"]), int(state["unchanged"])
        at.queued, at.pages = int(state["queued"]), int(state["pages"])
    checkpoint: dict[str, Any] = {
        "job": attached.id,
        "sort": sort,
        "search_after": None if state is None else state.get("search_after"),
        "sync_from": None if state is None else state.get("sync_from"),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if state is None
        else state.get("started_at"),
    }
    version = model_version(engine.vector_records(index))

    def first(pit: str) -> None:
        if state is None:  # where a sync follows from: the index as this backfill's first snapshot has it
            checkpoint["sync_from"] = newest_updated(engine, pit, config)

    for hits in scan(engine, index, sort=sort, fields=source_fields(config), page_size=page_size,
                     search_after=checkpoint["search_after"], first=first):  # fmt: skip
        stale = [str(h["_id"]) for h in hits if is_stale(h.get("_source") or {}, config, version)]
        attached.send(stale)
        at.scanned += len(hits)
        at.unchanged += len(hits) - len(stale)
        at.queued += len(stale)
        at.pages += 1
        checkpoint["search_after"] = list(hits[-1]["sort"])
        save_checkpoint(client, key, {**checkpoint, "scanned": at.scanned, "unchanged": at.unchanged,
                                      "queued": at.queued, "pages": at.pages})  # fmt: skip
        if progress is not None:
            progress(at)
    if checkpoint["sync_from"] is not None:
        save_checkpoint(client, SYNC_KEY.format(index=index), {"newest": checkpoint["sync_from"]})
    client.delete(key)  # done: the next backfill starts over
    result = BackfillResult(index, attached.id, at.scanned, at.queued, at.pages, resumed=state is not None,
                            unchanged=at.unchanged)  # fmt: skip
    return finish(settings, result, attached, wait=wait, timeout_s=timeout_s, on_job=on_job)


__all__ = [
    "BACKFILL_KEY",
    "SYNC_KEY",
    "BackfillResult",
    "ScanProgress",
    "backfill",
    "finish",
    "load_checkpoint",
    "newest_updated",
    "resumable",
    "save_checkpoint",
    "scan",
    "scan_sort",
]
