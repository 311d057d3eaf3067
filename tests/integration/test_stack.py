"""The local stack command: status of up and down components, idempotent up/down, the three-node cluster."""

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

from hybrid_search.settings import Settings, load_settings
from hybrid_search.stack import Stack

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


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_down_and_up_components_in_a_separate_stack(tmp_path: Path) -> None:
    """A second stack in its own folder: its engine port is unused (down); its Redis goes up, then down."""
    settings = load_settings(stack_dir=tmp_path, stack_http_port=free_port(), stack_redis_port=free_port())
    stack = Stack(settings)
    rows = {s.name: s for s in stack.status()}
    assert not rows["engine node-1"].up and rows["engine node-1"].detail == "not running"
    assert not rows["redis"].up
    rows = {s.name: s for s in stack.up(engine=False)}
    assert rows["redis"].up and rows["redis"].pid is not None
    assert (tmp_path / "logs" / "redis.log").exists()
    assert not rows["engine node-1"].up
    rows = {s.name: s for s in stack.down()}
    assert not rows["redis"].up
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


def test_missing_tools_are_named_with_how_to_install(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HYBRID_SEARCH_STACK_DIR": str(tmp_path / "s"),
           "HYBRID_SEARCH_STACK_HTTP_PORT": str(free_port()), "HYBRID_SEARCH_STACK_REDIS_PORT": str(free_port())}  # fmt: skip
    done = cli("stack", "up", env=env)
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
