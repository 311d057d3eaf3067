"""Ingesting the Luma catalogue through real workers while they, the engine or Redis fail.

Each test ingests the 199 Luma products plus five deliberately bad records (:data:`BAD_RECORDS`) into a new alias,
through a queue of its own, in batches of 4, injects its fault in the middle, and then asserts the same exact
invariant once the job has settled: every product is in the index exactly once (count and ids match the
catalogue), no duplicate, the job counted 199 indexed, and the dead letters are exactly the five bad records,
each once.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fault_support import (
    BAD_RECORDS,
    BATCH_SIZE,
    VISIBILITY_TIMEOUT_S,
    FaultStack,
    Worker,
    check_dead_letters,
    delivery_figures,
    index_state,
    luma_with_bad_records,
    private_index,
    record_figures,
    wait_until,
    workers,
)

from hybrid_search.catalog import open_catalogue
from hybrid_search.engine import create_engine
from hybrid_search.ingest.enqueue import Job, enqueue_catalogue
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.models]

SETTLE_TIMEOUT_S = 420  # the whole job, faults included


def batches_done(settings: Settings, job: Job) -> int:
    return int(Tracker(connect(settings.redis_url)).job(job.id).get("batches_done", 0))


def settle_and_check(
    settings: Settings, job: Job, alias: str, expected: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for the job, then the invariants: every product once, nothing lost, only the bad records dead."""
    result = wait_for_job(settings, job, timeout_s=SETTLE_TIMEOUT_S, poll_s=0.5)
    with create_engine(settings) as engine:
        state = index_state(engine, alias, expected)
    assert (state["lost"], state["duplicates"], state["mismatched_ids"]) == (0, 0, []), state
    assert state["indexed"] == len(expected) == 199, state
    assert result["indexed"] == 199, result  # each batch counted once, however often it ran
    assert result["dead_lettered"] == len(BAD_RECORDS), result
    check_dead_letters(settings, alias)
    assert Tracker(connect(settings.redis_url)).job(job.id)["batches_done"] == job.batches
    return result, state


def next_victim(
    settings: Settings, job: Job, running: list[Worker], kind: str, *, after: int, timeout_s: float = 120
) -> tuple[Worker | None, int]:
    """A worker in the middle of a batch (with a pool process, for a pool kill), once the job has done more than
    ``after`` batches; the job must not have ended yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = batches_done(settings, job)
        assert done < job.batches, f"the job ended before every kill ({done} of {job.batches} batches done)"
        if done > after:
            for worker in running:
                if worker.alive() and worker.busy() and (kind != "pool" or worker.pool_pids()):
                    return worker, done
        time.sleep(0.05)
    return None, -1


def in_flight(worker: Worker) -> str | None:
    """The task the worker has received and not ended yet (concurrency 1, prefetch 1: at most one)."""
    current = None
    for task, event in worker.tasks():
        if event == "received":
            current = task
        elif task == current:
            current = None
    return current


def test_sigkilled_workers_lose_and_duplicate_nothing(fault_stack: FaultStack, tmp_path: Path) -> None:
    """Two workers; four times, one in the middle of a batch is SIGKILLed: twice only its pool process (the OOM
    killer's choice: the process holding the model), twice the whole worker, which a new one replaces."""
    settings, env = fault_stack.settings_for(ingest_queue=f"faults-kill-{uuid.uuid4().hex[:8]}")
    catalogue, expected = luma_with_bad_records(tmp_path)
    plan = ["pool", "worker", "pool", "worker"]
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    with private_index(settings, "faults-kill") as alias, workers(env, tmp_path, 2, "kill") as running:
        everyone = list(running)
        job = enqueue_catalogue(settings, open_catalogue(catalogue), index=alias, batch_size=BATCH_SIZE)
        assert job.batches >= 45, job
        for n, kind in enumerate(plan):
            # spread through the job: kill n once more than (n + 1) / (kills + 2) of the batches are done
            after = (n + 1) * job.batches // (len(plan) + 2)
            victim, done = next_victim(settings, job, running, kind, after=after)
            assert victim is not None, f"no worker was in the middle of a batch for kill {n + 1}"
            task = in_flight(victim)  # the batch the kill is meant to interrupt (it may end just before)
            if kind == "pool":
                pids = victim.kill_pool()
                assert pids, victim.name
            else:
                victim.kill()
                running.remove(victim)
                replacement = Worker(env, tmp_path, f"kill-r{n}").start(wait=False)
                running.append(replacement)
                everyone.append(replacement)
            kills.append({"kind": kind, "worker": victim.name, "batches_done": done, "of": job.batches,
                          "task": task, "victim": victim})  # fmt: skip
        assert all(w.alive() for w in running), [w.name for w in running if not w.alive()]
        _result, state = settle_and_check(settings, job, alias, expected)
        figures = delivery_figures(everyone)
    assert len(kills) == len(plan)
    # every batch a kill interrupted (its worker never logged it succeeded) was delivered again and redone;
    # a batch that ended in the instant between choosing the victim and the kill was not interrupted
    received = Counter(t for w in everyone for t, event in w.tasks() if event == "received")
    interrupted = []
    for kill in kills:
        victim = kill.pop("victim")
        task = kill["task"]
        kill["interrupted"] = task is not None and (task, "succeeded") not in victim.tasks()
        if kill["interrupted"]:
            interrupted.append(task)
            assert received[task] >= 2, (kill, figures)
    assert interrupted, ("no kill interrupted a batch", kills)
    # a redelivered batch can be killed again (the kills come in a row): count each batch once
    assert figures["batches_redelivered"] >= len(set(interrupted)), figures
    record_figures(
        "sigkill_workers",
        {
            "kills_survived": len(kills),
            "kills_interrupting_a_batch": len(interrupted),
            "batches_interrupted": len(set(interrupted)),
            "kills": kills,
            "products_expected": len(expected),
            "products_indexed": state["indexed"],
            "products_lost": state["lost"],
            "duplicates": state["duplicates"],
            "dead_letters": len(BAD_RECORDS),
            "dead_letters_expected": len(BAD_RECORDS),
            **figures,
            "batches": job.batches,
            "visibility_timeout_s": VISIBILITY_TIMEOUT_S,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def test_engine_stopped_and_restarted_during_ingestion(fault_stack: FaultStack, tmp_path: Path) -> None:
    """The engine is stopped with batches still queued, stays down a while, and comes back: the workers' retries
    (jittered exponential backoff) carry the ingestion through, nothing is lost or dead-lettered for it."""
    settings, env = fault_stack.settings_for(
        ingest_queue=f"faults-engine-{uuid.uuid4().hex[:8]}", ingest_max_retries=40
    )
    catalogue, expected = luma_with_bad_records(tmp_path)
    started = time.monotonic()
    with private_index(settings, "faults-engine") as alias, workers(env, tmp_path, 2, "engine") as running:
        job = enqueue_catalogue(settings, open_catalogue(catalogue), index=alias, batch_size=BATCH_SIZE)
        wait_until(lambda: batches_done(settings, job) >= 3, 120, "the first batches")
        before = batches_done(settings, job)
        stopped_at = time.monotonic()
        fault_stack.stop_engine()
        during = batches_done(settings, job)
        # down long enough that every worker hits the outage and backs off
        wait_until(lambda: delivery_figures(running)["retries"] >= 2, 60, "the workers to retry")
        time.sleep(5)
        stalled = batches_done(settings, job)
        fault_stack.start_engine()
        downtime = time.monotonic() - stopped_at
        result, state = settle_and_check(settings, job, alias, expected)
        figures = delivery_figures(running)
    assert figures["retries"] >= 2, figures
    record_figures(
        "engine_stop_restart",
        {
            "engine_down_s": round(downtime, 1),
            "batches_done_before_stop": before,
            "batches_done_while_down": stalled - during,
            "products_expected": len(expected),
            "products_indexed": state["indexed"],
            "products_lost": state["lost"],
            "duplicates": state["duplicates"],
            "dead_letters": result["dead_lettered"],
            **figures,
            "batches": job.batches,
            "seconds": round(time.monotonic() - started, 1),
        },
    )


def test_redis_killed_and_restarted_during_ingestion(fault_stack: FaultStack, tmp_path: Path) -> None:
    """Redis (AOF, fsync every second) is SIGKILLed with batches queued and in flight, then restarted from its
    append-only file: the queued batches survive, the ones in flight are finished or delivered again, the job's
    counters and dead letters stay exact."""
    settings, env = fault_stack.settings_for(ingest_queue=f"faults-redis-{uuid.uuid4().hex[:8]}")
    catalogue, expected = luma_with_bad_records(tmp_path)
    started = time.monotonic()
    with private_index(settings, "faults-redis") as alias, workers(env, tmp_path, 2, "redis") as running:
        job = enqueue_catalogue(settings, open_catalogue(catalogue), index=alias, batch_size=BATCH_SIZE)
        wait_until(lambda: batches_done(settings, job) >= 3, 120, "the first batches")
        client = Tracker(connect(settings.redis_url)).redis
        queued_before = int(client.llen(settings.ingest_queue))
        done_before = batches_done(settings, job)
        killed_at = time.monotonic()
        fault_stack.kill_redis()
        time.sleep(3)
        fault_stack.start_redis()
        downtime = time.monotonic() - killed_at
        client = Tracker(connect(settings.redis_url)).redis
        done_after = batches_done(settings, job)
        result, state = settle_and_check(settings, job, alias, expected)
        figures = delivery_figures(running)
        assert all(w.alive() for w in running), [w.tail() for w in running if not w.alive()]
    assert queued_before > 0 and done_after >= done_before, (queued_before, done_before, done_after)
    record_figures(
        "redis_kill_restart",
        {
            "redis_down_s": round(downtime, 1),
            "batches_queued_at_kill": queued_before,
            "batches_done_at_kill": done_before,
            "batches_done_after_restart": done_after,
            "products_expected": len(expected),
            "products_indexed": state["indexed"],
            "products_lost": state["lost"],
            "duplicates": state["duplicates"],
            "dead_letters": result["dead_lettered"],
            **figures,
            "batches": job.batches,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
