"""Backfilling a shop's attached index through real workers while they are SIGKILLed.

On the fault suite's own stack (an OpenSearch node and a Redis of its own, :class:`~fault_support.FaultStack`),
the shop (:class:`~shop_support.ShopWriter`) holds the 199 Luma products in its own index. The layer attaches to
it and backfills it in batches of 4 through two workers; three times a worker in the middle of a batch is
SIGKILLed (twice the whole worker, which a new one replaces, once only its pool process). Then:

- every document has current vectors (its ``hs_content_hash`` is the hash of its content, the model version
  and the vector sizes are the recorded ones);
- every document was written by the layer exactly once: its ``_version`` is 2 (the shop's load, then one
  conditional ``hs_`` write), however often its batch was delivered: a batch run again after a kill finds the
  documents its first run wrote up to date and writes only the others;
- the shop's fields are byte for byte what the shop wrote, and no document is lost or added;
- the job counted every batch once, and a second backfill finds nothing to embed.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import luma_products
from fault_support import VISIBILITY_TIMEOUT_S, FaultStack, Worker, record_figures, workers
from shop_support import ShopWriter, shop_document, write_attach_config

from hybrid_search.catalog.attachment import (
    CONTENT_HASH_FIELD,
    HS_PREFIX,
    MODEL_VERSION_FIELD,
    content_hash,
    load_attach_config,
    model_version,
)
from hybrid_search.engine import create_engine
from hybrid_search.ingest.attached import recorded_attachment
from hybrid_search.ingest.backfill import backfill
from hybrid_search.ingest.enqueue import Job
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.models]

BATCH_SIZE = 4  # ~50 batches for 199 documents: the kills land in the middle of the backfill
SETTLE_TIMEOUT_S = 420
_STARTED = re.compile(rb"ForkPoolWorker-\d+\] job [0-9a-f]+ batch \d+: started")
_TASK = re.compile(
    rb"Task hybrid_search\.embed_attached\[([0-9a-f-]+)\] (received|succeeded|retry|raised|rejected)"
)


def tasks(worker: Worker) -> list[tuple[str, str]]:
    """``(task id, event)`` of each ``embed_attached`` task line of the worker's log, in order."""
    return [(m.group(1).decode(), m.group(2).decode()) for m in _TASK.finditer(worker.log.read_bytes())]


def busy(worker: Worker) -> bool:
    """The pool process has started a batch that has not ended yet (concurrency 1: one at a time)."""
    now_busy = False
    for line in worker.log.read_bytes().splitlines():
        if _STARTED.search(line):
            now_busy = True
        elif b"WorkerLostError" in line or b"exited with 'signal" in line:
            now_busy = False
        else:
            found = _TASK.search(line)
            if found is not None and found.group(2) != b"received":
                now_busy = False
    return now_busy


def in_flight(worker: Worker) -> str | None:
    current = None
    for task, event in tasks(worker):
        if event == "received":
            current = task
        elif task == current:
            current = None
    return current


def batches_done(settings: Settings, job: Job) -> int:
    return int(Tracker(connect(settings.redis_url)).job(job.id).get("batches_done", 0))


@pytest.fixture
def shop(fault_stack: FaultStack) -> Iterator[tuple[ShopWriter, dict[str, dict[str, Any]]]]:
    """The shop's index on the fault stack with the 199 Luma products, and what the shop wrote."""
    writer = ShopWriter(fault_stack.engine_url, f"faults-shop-{uuid.uuid4().hex[:8]}")
    writer.create()
    documents = [shop_document(p) for p in luma_products().values()]
    try:
        writer.load(documents)
        yield writer, {d["sku"]: d for d in documents}
    finally:
        writer.drop()


def test_sigkilled_workers_embed_each_document_once(
    fault_stack: FaultStack, shop: tuple[ShopWriter, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    from hybrid_search.attach import apply_attachment, plan_attachment

    writer, written = shop
    settings, env = fault_stack.settings_for(
        ingest_queue=f"faults-attach-{uuid.uuid4().hex[:8]}", ingest_batch_size=BATCH_SIZE
    )
    plan = ["worker", "pool", "worker"]
    kills: list[dict[str, Any]] = []
    started = time.monotonic()
    with create_engine(settings) as engine:
        planned = plan_attachment(
            engine, load_attach_config(write_attach_config(tmp_path, writer.index)), settings
        )
        assert not planned.refused, planned.render()
        apply_attachment(engine, planned)
        config = recorded_attachment(engine, writer.index)
        with workers(env, tmp_path, 2, "attach") as running:
            everyone = list(running)
            result = backfill(engine, settings, config, wait=False)
            state = Tracker(connect(settings.redis_url)).job(result.job)
            job = Job(result.job, writer.index, int(state["total"]), 0, int(state["batches"]))
            assert result.queued == 199 and job.batches >= 45, result.as_dict()
            for n, kind in enumerate(plan):
                after = (n + 1) * job.batches // (len(plan) + 2)
                victim, done = None, -1
                deadline = time.monotonic() + 120
                while victim is None and time.monotonic() < deadline:
                    done = batches_done(settings, job)
                    assert done < job.batches, (
                        f"the backfill ended before every kill ({done} of {job.batches})"
                    )
                    if done > after:
                        victim = next(
                            (
                                w
                                for w in running
                                if w.alive() and busy(w) and (kind != "pool" or w.pool_pids())
                            ),
                            None,
                        )
                    if victim is None:
                        time.sleep(0.02)
                assert victim is not None, f"no worker was in the middle of a batch for kill {n + 1}"
                task = in_flight(victim)
                if kind == "pool":
                    assert victim.kill_pool(), victim.name
                else:
                    victim.kill()
                    running.remove(victim)
                    replacement = Worker(env, tmp_path, f"attach-r{n}").start(wait=False)
                    running.append(replacement)
                    everyone.append(replacement)
                kills.append({"kind": kind, "worker": victim.name, "batches_done": done, "task": task,
                              "victim": victim})  # fmt: skip
            summary = wait_for_job(settings, job, timeout_s=SETTLE_TIMEOUT_S, poll_s=0.5)
            job_state = Tracker(connect(settings.redis_url)).job(job.id)
            # a second backfill finds nothing to embed (its scan reads through search: refreshed first, so it
            # sees the last batch's writes, which a realtime get would see at once)
            engine.refresh(writer.index)
            again = backfill(engine, settings, config, wait=True, timeout_s=SETTLE_TIMEOUT_S)
        records = engine.vector_records(writer.index)

    # the documents: current vectors on each, the shop's fields as the shop wrote them, none lost or added
    sources = writer.sources()
    assert sorted(sources) == sorted(written), "documents lost or added"
    version = model_version(records)
    stale = [
        sku for sku, src in sources.items()
        if src.get(CONTENT_HASH_FIELD) != content_hash(src, config.schema, config.images)
        or src.get(MODEL_VERSION_FIELD) != version
        or any(not isinstance(src.get(name), list) or len(src[name]) != int(rec["dim"])
               for name, rec in records.items())
    ]  # fmt: skip
    assert stale == [], f"{len(stale)} documents without current vectors: {stale[:10]}"
    differ = [
        sku
        for sku, src in sources.items()
        if json.dumps({k: v for k, v in src.items() if not k.startswith(HS_PREFIX)})
        != json.dumps(written[sku])
    ]
    assert differ == [], f"shop fields changed on {differ[:10]}"
    # exactly once: each document's version is the shop's load plus one hs_ write
    with httpx.Client(base_url=fault_stack.engine_url.split(",")[0], timeout=60) as http:
        docs = http.post(
            f"/{writer.index}/_mget",
            json={"ids": sorted(written)},
            params={"_source": "false"},
        ).json()["docs"]
    writes = Counter(int(d["_version"]) - 1 for d in docs)
    assert writes == {1: 199}, f"hs_ writes per document: {dict(writes)} (expected one each)"
    # the job: every batch counted once; the embedded and the up-to-date make up every document
    assert int(job_state["batches_done"]) == job.batches, job_state
    assert summary["indexed"] + int(job_state.get("unchanged", 0)) == 199, (summary, job_state)
    assert int(job_state.get("failed", 0)) == 0 and int(job_state.get("missing", 0)) == 0, job_state
    assert (again.scanned, again.queued, again.embedded) == (199, 0, 0), again.as_dict()

    # each batch a kill interrupted was delivered again and finished
    received = Counter(t for w in everyone for t, event in tasks(w) if event == "received")
    interrupted = []
    for kill in kills:
        victim = kill.pop("victim")
        task = kill["task"]
        kill["interrupted"] = task is not None and (task, "succeeded") not in tasks(victim)
        if kill["interrupted"]:
            interrupted.append(task)
            assert received[task] >= 2, kill
            assert any((task, "succeeded") in tasks(w) for w in everyone), kill
    assert interrupted, ("no kill interrupted a batch", kills)
    record_figures(
        "attached_backfill_sigkill",
        {
            "kills_survived": len(kills),
            "kills_interrupting_a_batch": len(interrupted),
            "kills": kills,
            "documents": 199,
            "embedded_by_workers": summary["indexed"],
            "found_up_to_date_on_redelivery": int(job_state.get("unchanged", 0)),
            "hs_writes_per_document": dict(writes),
            "batches": job.batches,
            "batches_received": sum(received.values()),
            "visibility_timeout_s": VISIBILITY_TIMEOUT_S,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
