"""Ingestion state in Redis, shared by every worker and client: job progress and the dead-letter store.

Keys (``<alias>`` is the index alias or name written to):

    hybrid-search:job:<job>             hash: total, batches, read_errors, indexed, failed, unchanged,
                                        text_embedded, images_embedded, missing, conflicts_retried,
                                        photo_failed, batches_done, index, started_at
    hybrid-search:job:<job>:done        set of finished batch numbers: a batch redelivered after a worker
                                        died counts once
    hybrid-search:dead-letters:<alias>  list of JSON ``{"id", "source", "reason", "job", "at"}``, newest last

Jobs expire after a week; dead letters stay until ``hybrid-search dead-letters --clear``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from hybrid_search.errors import HybridSearchError

JOB_TTL_S = 7 * 24 * 3600
# the last three are counted by the batches of an attached index (hybrid_search.ingest.attached): documents the
# shop deleted before they were embedded, writes retried after the shop wrote in between, photos not readable
COUNTERS = (
    "indexed",
    "failed",
    "unchanged",
    "text_embedded",
    "images_embedded",
    "missing",
    "conflicts_retried",
    "photo_failed",
)


class QueueUnavailableError(HybridSearchError):
    """Redis (the queue and its state) cannot be reached."""


def connect(url: str, *, retry_for_s: float = 0.0) -> redis.Redis:
    """A Redis client. ``retry_for_s``: keep retrying a command that lost its connection for about that long
    (jittered exponential backoff capped at 2 s), so a Redis restart does not fail the caller; 0: fail fast.

    Every write the workers send is idempotent (see :meth:`Tracker.finish_batch`), so repeating one whose reply
    was lost is safe."""
    if retry_for_s <= 0:
        return redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
    retry = Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.1), retries=max(3, math.ceil(retry_for_s)))
    return redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30, retry=retry
    )


def _job_key(job: str) -> str:
    return f"hybrid-search:job:{job}"


def dead_letter_key(alias: str) -> str:
    return f"hybrid-search:dead-letters:{alias}"


class Tracker:
    """Job progress and dead letters for one Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def start_job(self, job: str, *, index: str, total: int, batches: int, read_errors: int) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        key = _job_key(job)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"index": index, "total": total, "batches": batches, "read_errors": read_errors,
                                "batches_done": 0, "started_at": now, **dict.fromkeys(COUNTERS, 0)})  # fmt: skip
        pipe.expire(key, JOB_TTL_S)
        pipe.execute()

    def add_batches(self, job: str, batches: int, total: int) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrby(_job_key(job), "batches", batches)
        pipe.hincrby(_job_key(job), "total", total)
        pipe.execute()

    def set_read_errors(self, job: str, count: int) -> None:
        """Records of the job's catalogue that were invalid (dead-lettered before any batch was sent)."""
        self.redis.hset(_job_key(job), "read_errors", count)

    def finish_batch(
        self,
        job: str,
        batch: int,
        summary: Mapping[str, int],
        *,
        alias: str,
        failed: Iterable[Mapping[str, Any]] = (),
    ) -> bool:
        """Count a finished batch and store its dead letters, atomically and once.

        Returns False when the batch was already counted (a redelivery after its worker died between writing
        and acknowledging): nothing is counted or dead-lettered twice.
        """
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        letters = [json.dumps({**dict(e), "job": job, "at": now}, ensure_ascii=False) for e in failed]
        counts = [str(int(summary.get(name, 0))) for name in COUNTERS]
        done = self._finish(
            keys=[_job_key(job), _job_key(job) + ":done", dead_letter_key(alias)],
            args=[batch, JOB_TTL_S, *COUNTERS, *counts, *letters],
        )
        return bool(done)

    _FINISH_LUA = """
    if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    local n = {n}
    for i = 1, n do redis.call('HINCRBY', KEYS[1], ARGV[2 + i], ARGV[2 + n + i]) end
    redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
    for i = 3 + 2 * n, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
    return 1
    """.replace("{n}", str(len(COUNTERS)))

    @property
    def _finish(self) -> Any:
        return self.redis.register_script(self._FINISH_LUA)

    def job(self, job: str) -> dict[str, Any]:
        raw: dict[bytes, bytes] = self.redis.hgetall(_job_key(job))  # type: ignore[assignment]
        out: dict[str, Any] = {}
        for k, v in raw.items():
            key, value = k.decode(), v.decode()
            out[key] = int(value) if value.lstrip("-").isdigit() else value
        return out

    def dead_letter(self, alias: str, entries: Iterable[Mapping[str, Any]], *, job: str | None) -> int:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        payloads = [json.dumps({**dict(e), "job": job, "at": now}, ensure_ascii=False) for e in entries]
        if payloads:
            self.redis.rpush(dead_letter_key(alias), *payloads)
        return len(payloads)

    def dead_letters(self, alias: str, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.redis.lrange(dead_letter_key(alias), -limit, -1)]

    def dead_letter_count(self, alias: str) -> int:
        return int(self.redis.llen(dead_letter_key(alias)))

    def clear_dead_letters(self, alias: str) -> int:
        count = self.dead_letter_count(alias)
        self.redis.delete(dead_letter_key(alias))
        return count


__all__ = ["COUNTERS", "QueueUnavailableError", "Tracker", "connect", "dead_letter_key"]
