"""The local stack command: status of up and down components, idempotent up/down, the three-node cluster, and the
Elasticsearch node (`stack up --engine elasticsearch`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hybrid_search.errors import StackError
from hybrid_search.settings import Settings, load_settings
from hybrid_search.stack import Stack
from hybrid_search.stack.es_node import LAUNCHER_CLASS
from hybrid_search.stack.process import pid_alive

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hybrid_search.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture
def es_stack(settings: Settings) -> Stack:
    """The running stack, which must hold an Elasticsearch node (CI starts both engines; locally: skip)."""
    stack = Stack(settings)
    if stack.es.pid() is None or not stack.es.status().up:
        message = (
            f"the local stack has no Elasticsearch node up at {stack.es.address}; "
            "start it with `hybrid-search stack up --engine elasticsearch`"
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return stack


def test_status_of_the_running_stack(settings: Settings) -> None:
    rows = {s.name: s for s in Stack(settings).status()}
    assert rows["engine node-1"].up, rows
    assert rows["engine node-1"].address == f"http://127.0.0.1:{settings.stack_http_port}"
    assert rows["engine node-1"].detail.startswith("opensearch 2.19.")
    assert rows["redis"].up and rows["redis"].address == f"redis://127.0.0.1:{settings.stack_redis_port}"


def test_up_is_idempotent_on_a_running_stack(settings: Settings) -> None:
    said: list[str] = []
    rows = Stack(settings, echo=said.append).up()
    assert all(r.up for r in rows)
    assert any("already up" in line for line in said), said
    assert any("redis already up" in line for line in said), said


def test_engine_answers_as_opensearch_with_the_knn_plugin(settings: Settings) -> None:
    root = httpx.get(f"http://127.0.0.1:{settings.stack_http_port}/", timeout=5).json()
    assert root["version"]["distribution"] == "opensearch"
    assert root["version"]["number"].startswith("2.19.")
    plugins = httpx.get(f"http://127.0.0.1:{settings.stack_http_port}/_cat/plugins", timeout=5).text
    assert "org.opensearch.knn.plugin.KNNPlugin" in plugins


def test_elasticsearch_node_of_the_running_stack(es_stack: Stack) -> None:
    rows = {s.name: s for s in es_stack.status()}
    es = rows["engine es-node-1"]
    assert es.up and es.pid is not None, es
    assert es.detail.startswith("elasticsearch 8.19."), es
    root = httpx.get(f"{es.address}/", timeout=5)
    assert (
        root.headers["x-elastic-product"] == "Elasticsearch"
    )  # what the Python client's product check reads
    assert root.json()["version"]["number"].startswith("8.19.")
    nodes = httpx.get(f"{es.address}/_nodes/plugins", timeout=5).json()["nodes"]
    modules = {m["name"] for node in nodes.values() for m in node["modules"]}
    assert modules == {"transport-netty4", "hybrid-search-analysis", "hybrid-search-root"}
    said: list[str] = []
    Stack(es_stack.settings, echo=said.append).up(engine="elasticsearch", redis=False)
    assert "engine es-node-1 already up on 127.0.0.1:" in " ".join(said), said


def test_elasticsearch_node_up_status_down_in_a_separate_stack(tmp_path: Path) -> None:
    """A fresh stack folder: Maven builds the node, it starts, answers, stops; up and down are idempotent."""
    settings = load_settings(
        stack_dir=tmp_path, stack_http_port=free_port(), stack_redis_port=free_port(), stack_heap="384m"
    )
    http, transport = free_port(), free_port()
    stack = Stack(settings, es_http_port=http, es_transport_port=transport)
    try:
        rows = {s.name: s for s in stack.up(engine="elasticsearch", redis=False)}
        assert "engine node-1" not in rows  # OpenSearch was not asked for
        es = rows["engine es-node-1"]
        assert (es.up, es.address) == (True, f"http://127.0.0.1:{http}")
        assert es.detail.startswith("elasticsearch 8.19.")
        assert (tmp_path / "logs" / "es-node-1.log").exists()
        state = json.loads((tmp_path / "stack.json").read_text())
        assert state["engines"] == ["elasticsearch"]
        assert state["elasticsearch"] == {"http_port": http, "transport_port": transport}
        # a Stack built without ports finds them in stack.json (this is what `stack status` does)
        again = {s.name: s for s in Stack(settings).status()}
        assert again["engine es-node-1"].up and again["engine es-node-1"].pid == es.pid
    finally:
        stack.down()
    env = {
        "HYBRID_SEARCH_STACK_DIR": str(tmp_path),
        "HYBRID_SEARCH_STACK_HTTP_PORT": str(settings.stack_http_port),
        "HYBRID_SEARCH_STACK_REDIS_PORT": str(settings.stack_redis_port),
    }
    done = cli("stack", "status", "--json", env=env)
    assert done.returncode == 3
    assert [(c["name"], c["up"]) for c in json.loads(done.stdout)] == [
        ("engine node-1", False),
        ("redis", False),
    ]
    assert es.pid is not None and not pid_alive(es.pid, LAUNCHER_CLASS)  # (a zombie until pytest reaps it)
    assert {s.name: s for s in Stack(settings).down()}["engine node-1"].detail == "not running"  # idempotent


def test_elasticsearch_ports_must_not_clash_with_the_stack(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(stack_dir=tmp_path, stack_http_port=port, stack_redis_port=free_port())
    with pytest.raises(StackError, match=f"Elasticsearch ports {port}/9500 clash"):
        Stack(settings, es_http_port=port).up(engine="both", redis=False)
    done = cli("stack", "up", "--engine", "solr", env={"HYBRID_SEARCH_STACK_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert (
        done.stderr.strip() == "error: unknown engine 'solr'; expected one of opensearch, elasticsearch, both"
    )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_down_and_up_components_in_a_separate_stack(tmp_path: Path) -> None:
    """A second stack in its own folder: its engine port is unused (down); its Redis and worker go up, then down."""
    settings = load_settings(stack_dir=tmp_path, stack_http_port=free_port(), stack_redis_port=free_port())
    stack = Stack(settings)
    rows = {s.name: s for s in stack.status()}
    assert not rows["engine node-1"].up and rows["engine node-1"].detail == "not running"
    assert not rows["redis"].up
    rows = {s.name: s for s in stack.up(engine=False, workers=True)}
    assert rows["redis"].up and rows["redis"].pid is not None
    assert (tmp_path / "logs" / "redis.log").exists()
    assert not rows["engine node-1"].up
    assert rows["workers"].up and rows["workers"].detail == "celery, queue ingest, concurrency 1"
    assert b" ready." in (tmp_path / "logs" / "worker.log").read_bytes()
    rows = {s.name: s for s in stack.down()}
    assert not rows["redis"].up
    assert "workers" not in rows  # shown only while this stack has one
    stack.down()  # idempotent
    env = {
        "HYBRID_SEARCH_STACK_DIR": str(tmp_path),
        "HYBRID_SEARCH_STACK_HTTP_PORT": str(settings.stack_http_port),
        "HYBRID_SEARCH_STACK_REDIS_PORT": str(settings.stack_redis_port),
    }
    done = cli("stack", "status", "--json", env=env)
    assert done.returncode == 3
    assert [(c["name"], c["up"]) for c in json.loads(done.stdout)] == [
        ("engine node-1", False),
        ("redis", False),
    ]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_missing_tools_are_named_with_how_to_install(tmp_path: Path, engine: str) -> None:
    env = {"PATH": str(tmp_path), "HYBRID_SEARCH_STACK_DIR": str(tmp_path / "s"),
           "HYBRID_SEARCH_STACK_HTTP_PORT": str(free_port()), "HYBRID_SEARCH_STACK_REDIS_PORT": str(free_port()),
           "HYBRID_SEARCH_STACK_ES_HTTP_PORT": str(free_port())}  # fmt: skip
    done = cli("stack", "up", "--engine", engine, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: java not found on PATH: install Java 17+ (a JDK: the launcher runs as a single-file source "
        "program). Debian/Ubuntu: apt-get install openjdk-17-jdk-headless"
    ]


@pytest.mark.cluster
def test_three_node_cluster(tmp_path: Path) -> None:
    http, transport = 9250, 9350
    settings = load_settings(
        stack_dir=tmp_path, stack_http_port=http, stack_transport_port=transport,
        stack_redis_port=free_port(), stack_heap="384m",
    )  # fmt: skip
    stack = Stack(settings)
    try:
        rows = stack.up(nodes=3, redis=False)
        engines = [r for r in rows if r.name.startswith("engine")]
        assert [(r.name, r.up, r.address) for r in engines] == [
            (f"engine node-{i + 1}", True, f"http://127.0.0.1:{http + i}") for i in range(3)
        ]
        health = httpx.get(f"http://127.0.0.1:{http + 2}/_cluster/health", timeout=10).json()
        assert health["number_of_nodes"] == 3
        # an index with one replica goes green: copies live on different nodes
        body = {"settings": {"index": {"number_of_shards": 2, "number_of_replicas": 1}}}
        assert httpx.put(f"http://127.0.0.1:{http}/replicated", json=body, timeout=30).status_code == 200
        green = httpx.get(
            f"http://127.0.0.1:{http + 1}/_cluster/health/replicated",
            params={"wait_for_status": "green", "timeout": "60s"}, timeout=70,
        ).json()  # fmt: skip
        assert green["status"] == "green" and green["active_shards"] == 4
    finally:
        rows = stack.down()
    assert not any(r.up for r in rows)
