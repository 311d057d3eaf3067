"""A three-node OpenSearch cluster (an index of 3 shards with 1 replica) loses a node (SIGKILL, the elected
master) during a stream of hybrid searches and an ingestion: searches keep succeeding, the ingestion finishes.

The client is given the three nodes' URLs (``HYBRID_SEARCH_ENGINE_URL`` comma-separated): a request that cannot
reach the dead node is retried on another one. A search fails when it raises, or when the engine answers with
shard failures (a partial result). The invariant: no failure once the cluster has noticed the loss (its health
counts two nodes); the failures before that are counted and reported (target zero as well).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_support import (
    FaultStack,
    delivery_figures,
    index_state,
    luma_jsonl,
    private_index,
    record_figures,
    seed_engine_jars,
    wait_until,
    workers,
)

from hybrid_search.catalog import open_catalogue
from hybrid_search.engine import SearchRequest, create_engine
from hybrid_search.ingest.enqueue import Job, enqueue_catalogue
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.search import SearchQuery, SearchService, search_encoders
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.models, pytest.mark.cluster]

CLUSTER_HTTP, CLUSTER_TRANSPORT = 9610, 9710  # nodes on 9610-9612 / 9710-9712
QUERIES = ["jacket", "yoga pants for women", "water bottle", "hoodie", "running shorts", "tank top", "bag",
           "red t-shirt", "warm winter coat", "leggings"]  # fmt: skip
AFTER_NOTICE_S = 10.0  # searching goes on at least this long after the cluster noticed
AFTER_NOTICE_SEARCHES = 20  # and for at least this many searches


@pytest.fixture
def cluster(
    tmp_path_factory: pytest.TempPathFactory, engine_jars: Path, text_model: Any
) -> Iterator[FaultStack]:
    root = tmp_path_factory.mktemp("fault-cluster")
    seed_engine_jars(engine_jars, root)
    stack = FaultStack(
        root,
        text_model.folder,
        http_port=CLUSTER_HTTP,
        transport_port=CLUSTER_TRANSPORT,
        nodes=3,
        heap="384m",
    )
    try:
        stack.up()
        text_model.path()
        yield stack
    finally:
        stack.down()


@dataclass
class SearchStream:
    """Searches in a thread, each a hybrid search (BM25 + text kNN, linear fusion) through :class:`SearchService`
    and a count through the engine adapter checked for shard failures; every outcome is timed."""

    settings: Settings
    alias: str
    outcomes: list[tuple[float, str | None]] = field(default_factory=list)  # (monotonic time, error or None)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        engine = create_engine(self.settings)
        service = SearchService(self.settings, engine, search_encoders(self.settings))
        n = 0
        try:
            while not self.stop.is_set():
                error = None
                try:
                    response = service.search(
                        SearchQuery(text=QUERIES[n % len(QUERIES)], size=10), index=self.alias
                    )
                    if not response.hits:
                        error = "no hits"
                    raw = engine.search(self.alias, SearchRequest(query={"match_all": {}}, size=0))
                    shards = raw.get("_shards", {})
                    if shards.get("failed", 0) or raw.get("timed_out"):
                        error = f"partial result: {shards}"
                except Exception as exc:  # every failure counts, whatever raised it
                    error = f"{type(exc).__name__}: {exc}"
                self.outcomes.append((time.monotonic(), error))
                n += 1
                time.sleep(0.02)
        finally:
            engine.close()

    def failures(self, start: float, end: float = float("inf")) -> list[str]:
        return [e for t, e in self.outcomes if start <= t < end and e is not None]

    def count(self, start: float, end: float = float("inf")) -> int:
        return sum(1 for t, _e in self.outcomes if start <= t < end)


def batches_done(settings: Settings, job: Job) -> int:
    return int(Tracker(connect(settings.redis_url)).job(job.id).get("batches_done", 0))


def node_count(port: int) -> int:
    try:
        return int(httpx.get(f"http://127.0.0.1:{port}/_cluster/health", timeout=2).json()["number_of_nodes"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def test_searches_survive_losing_a_node_and_ingestion_resumes(cluster: FaultStack, tmp_path: Path) -> None:
    settings, env = cluster.settings_for(
        ingest_queue=f"faults-cluster-{uuid.uuid4().hex[:8]}", index_shards=3, index_replicas=1,
        ingest_max_retries=40,
    )  # fmt: skip
    first, first_ids = luma_jsonl(tmp_path, limit=40, name="first.jsonl")
    rest, rest_ids = luma_jsonl(tmp_path, skip=40, name="rest.jsonl")
    started = time.monotonic()
    with private_index(settings, "faults-cluster") as alias, workers(env, tmp_path, 1, "cluster") as running:
        with create_engine(settings) as engine:
            assert engine.health(wait_for_status="green", timeout_s=60).status == "green"
        job = enqueue_catalogue(settings, open_catalogue(first), index=alias, batch_size=8)
        assert wait_for_job(settings, job, timeout_s=300)["indexed"] == len(first_ids)

        stream = SearchStream(settings, alias)
        thread = threading.Thread(target=stream.run, name="search-stream", daemon=True)
        thread.start()
        try:
            wait_until(lambda: stream.count(0) >= 20, 120, "the first searches")
            job = enqueue_catalogue(settings, open_catalogue(rest), index=alias, batch_size=8)
            wait_until(lambda: batches_done(settings, job) >= 2, 120, "the ingestion to be under way")
            master = httpx.get(f"http://127.0.0.1:{CLUSTER_HTTP}/_cat/master?format=json", timeout=10).json()
            victim = master[0]["node"]
            survivor = next(p for n, p in enumerate(cluster.http_ports) if f"node-{n + 1}" != victim)
            killed_at = time.monotonic()
            cluster.kill_node(victim)
            wait_until(lambda: node_count(survivor) == 2, 120, "the cluster to notice the lost node")
            noticed_at = time.monotonic()
            result = wait_for_job(settings, job, timeout_s=300)
            wait_until(
                lambda: (
                    time.monotonic() - noticed_at >= AFTER_NOTICE_S
                    and stream.count(noticed_at) >= AFTER_NOTICE_SEARCHES
                ),
                120,
                "searches after the loss",
            )
        finally:
            stream.stop.set()
            thread.join(timeout=60)
        with create_engine(settings) as engine:
            state = index_state(engine, alias, first_ids + rest_ids)
            health = engine.health()
        figures = delivery_figures(running)

    before, during = stream.failures(0, killed_at), stream.failures(killed_at, noticed_at)
    after = stream.failures(noticed_at)
    assert after == [], after[:5]
    assert stream.count(noticed_at) >= AFTER_NOTICE_SEARCHES
    assert result["indexed"] == len(rest_ids), result
    assert (state["lost"], state["duplicates"], state["indexed"]) == (0, 0, 199), state
    assert health.number_of_nodes == 2
    record_figures(
        "cluster_node_loss",
        {
            "node_killed": victim,
            "killed_was_master": True,
            "seconds_to_notice": round(noticed_at - killed_at, 1),
            "searches": len(stream.outcomes),
            "searches_before_kill": stream.count(0, killed_at),
            "searches_until_noticed": stream.count(killed_at, noticed_at),
            "searches_after_noticed": stream.count(noticed_at),
            "failed_searches_before_kill": len(before),
            "failed_searches_until_noticed": len(during),
            "failed_searches_after_noticed": len(after),
            "failure_examples": (before + during)[:3],
            "products_expected": 199,
            "products_indexed": state["indexed"],
            "products_lost": state["lost"],
            "duplicates": state["duplicates"],
            "cluster_after": f"{health.status}, {health.number_of_nodes} nodes",
            **figures,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
