"""Sync: follow the shop's writes to an attached index, so new and changed documents get their vectors.

    result = sync_once(engine, settings, config, wait=True)
    follow(engine, settings, config)            # sync_once every attach_sync_interval_s, until interrupted

With an ``updated_at`` role, a sync reads the documents changed since the last one (a range query on that field
from the checkpoint minus ``attach_sync_overlap_s``, for clock skew between the shop's writers; paged under a
point in time like the backfill), sends the stale ones to the workers and moves the checkpoint
(``hybrid-search:attach:sync:<index>``) to the newest ``updated_at`` of the index it read. A backfill sets that
checkpoint too, to where the index stood when it began. Without an ``updated_at`` role (or ``full``), a sync is
the backfill's full scan comparing content hashes.

What the shop's writes lead to: a full overwrite drops the ``hs_`` fields, so the document is stale and embedded
again; a partial update of a price leaves its content hash as it was: nothing is embedded; a delete needs
nothing (a document already queued is skipped by the worker, never brought back); an insert is embedded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from hybrid_search.catalog.attachment import AttachConfig, is_stale, model_version
from hybrid_search.engine import SearchEngine
from hybrid_search.ingest.attached import AttachedJob, source_fields
from hybrid_search.ingest.backfill import (
    SYNC_KEY,
    BackfillResult,
    backfill,
    finish,
    load_checkpoint,
    newest_updated,
    save_checkpoint,
    scan,
    scan_sort,
)
from hybrid_search.ingest.enqueue import Enqueuer
from hybrid_search.ingest.tracking import QueueUnavailableError
from hybrid_search.settings import Settings, redact_url


def sync_once(
    engine: SearchEngine,
    settings: Settings,
    config: AttachConfig,
    *,
    wait: bool = False,
    full: bool = False,
    enqueuer: Enqueuer | None = None,
    page_size: int | None = None,
    timeout_s: float | None = None,
) -> BackfillResult:
    """One sync (see the module docstring); ``extra`` of the result holds ``mode`` (``changes`` or ``full``)
    and, for ``changes``, ``since`` and ``newest`` (epoch milliseconds; ``since`` None: the first sync)."""
    field = config.schema.keyword_field("updated_at")
    if field is None or full:
        result = backfill(engine, settings, config, wait=wait, enqueuer=enqueuer, page_size=page_size,
                          timeout_s=timeout_s)  # fmt: skip
        result.extra = {"mode": "full"}
        return result
    own = enqueuer is None
    enqueuer = enqueuer if enqueuer is not None else Enqueuer(settings)
    try:
        return _changes(engine, settings, config, enqueuer, field, wait=wait,
                        page_size=page_size or settings.attach_scan_page_size, timeout_s=timeout_s)  # fmt: skip
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise QueueUnavailableError(
            f"cannot reach Redis at {redact_url(settings.redis_url)}: {exc}"
        ) from None
    finally:
        if own:
            enqueuer.close()


def _changes(
    engine: SearchEngine,
    settings: Settings,
    config: AttachConfig,
    enqueuer: Enqueuer,
    field: str,
    *,
    wait: bool,
    page_size: int,
    timeout_s: float | None,
) -> BackfillResult:
    index = config.index
    client = enqueuer.tracker.redis
    key = SYNC_KEY.format(index=index)
    checkpoint = load_checkpoint(client, key) or {}
    since = checkpoint.get("newest")
    since = None if since is None else int(since)
    query = None
    if since is not None:
        start = since - int(settings.attach_sync_overlap_s * 1000)
        query = {"range": {field: {"gte": start, "format": "epoch_millis"}}}
    version = model_version(engine.vector_records(index))
    attached = AttachedJob(enqueuer, index)
    newest: list[int | None] = [since]

    def first(pit: str) -> None:
        seen = newest_updated(engine, pit, config)
        if seen is not None and (newest[0] is None or seen > newest[0]):
            newest[0] = seen

    scanned = unchanged = queued = pages = 0
    sort = [{field: {"order": "asc"}}, *scan_sort(engine, config)]
    for hits in scan(engine, index, sort=sort, fields=source_fields(config), page_size=page_size,
                     query=query, first=first):  # fmt: skip
        stale = [str(h["_id"]) for h in hits if is_stale(h.get("_source") or {}, config, version)]
        attached.send(stale)
        scanned += len(hits)
        unchanged += len(hits) - len(stale)
        queued += len(stale)
        pages += 1
    if newest[0] is not None:
        save_checkpoint(client, key, {"newest": newest[0]})
    result = BackfillResult(index, attached.id, scanned, queued, pages, resumed=False, unchanged=unchanged,
                            extra={"mode": "changes", "since": since, "newest": newest[0]})  # fmt: skip
    return finish(settings, result, attached, wait=wait, timeout_s=timeout_s)


def follow(
    engine: SearchEngine,
    settings: Settings,
    config: AttachConfig,
    *,
    interval_s: float | None = None,
    on_result: Callable[[BackfillResult], None] | None = None,
    stop: Callable[[], bool] | None = None,
    enqueuer: Enqueuer | None = None,
    full: bool = False,
) -> int:
    """:func:`sync_once` every ``interval_s`` (default ``attach_sync_interval_s``) until ``stop()`` says so or
    the process is interrupted (KeyboardInterrupt reaches the caller); returns the syncs run."""
    interval = settings.attach_sync_interval_s if interval_s is None else interval_s
    runs = 0
    while stop is None or not stop():
        result = sync_once(engine, settings, config, enqueuer=enqueuer, full=full)
        runs += 1
        if on_result is not None:
            on_result(result)
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and (stop is None or not stop()):
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    return runs


__all__ = ["follow", "sync_once"]
