"""Start, stop and inspect the local stack: OpenSearch 2.19 + k-NN and/or Elasticsearch 8.19, both assembled from
Maven Central, and Redis.

Layout under ``settings.stack_dir``::

    engine/pom.xml, engine/Launcher.java   copied from the package
    engine/classpath.txt, engine/knn/      the OpenSearch jars (resolved once by Maven into ~/.m2, then reused)
    engine/node-<i>/                       data and config of OpenSearch node i
    elasticsearch/                         the Elasticsearch node: build/ and home/ (see :mod:`.es_node`)
    logs/node-<i>.log, logs/es-node-1.log, logs/redis.log      what each process prints
    run/node-<i>.pid, run/es-node-1.pid, run/redis.pid         pids of what ``up`` started
    logs/worker.log, run/worker.pid        the ingestion worker (``up(workers=True)``, see hybrid_search.ingest.workers)
    redis/                                 Redis data (AOF on)
    stack.json                             what ``up`` started (engines, nodes, ports), read by status and down

Every operation is idempotent: ``up`` leaves running components alone, ``down`` of a stopped stack is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from hybrid_search.errors import StackError
from hybrid_search.ingest.workers import WORKER_MARKER, log_offset, wait_until_ready, worker_command
from hybrid_search.settings import Settings
from hybrid_search.stack.es_node import DEFAULT_HTTP_PORT, DEFAULT_TRANSPORT_PORT, ElasticsearchNode
from hybrid_search.stack.process import (
    INSTALL_HINTS,
    ComponentStatus,
    engine_label,
    http_root,
    read_pid,
    require_tool,
    spawn_detached,
    stop_pid,
    tail,
)

log = logging.getLogger(__name__)

CLUSTER_NAME = "hybrid-search"


ENGINES = ("opensearch", "elasticsearch")
ENGINE_CHOICES = (*ENGINES, "both")


def select_engines(choice: str | bool, *, all_if_true: bool = False) -> tuple[str, ...]:
    """``opensearch``, ``elasticsearch`` or ``both``; True: OpenSearch (or every engine with ``all_if_true``)."""
    if choice is True:
        return ENGINES if all_if_true else ("opensearch",)
    if choice is False:
        return ()
    if choice == "both":
        return ENGINES
    if choice in ENGINES:
        return (str(choice),)
    raise StackError(f"unknown engine {choice!r}; expected one of {', '.join(ENGINE_CHOICES)}")


class Stack:
    """The local stack described by ``settings`` (ports, folder, heap).

    The Elasticsearch node's ports are not settings: pass them here (``up`` records them in ``stack.json``, which
    ``status`` and ``down`` read); by default the recorded ones, else 9400 (HTTP) and 9500 (transport).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        echo: Callable[[str], None] | None = None,
        es_http_port: int | None = None,
        es_transport_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.root = settings.stack_dir
        self.echo = echo or (lambda message: log.info("%s", message))
        recorded = self._state().get("elasticsearch", {})
        self.es = ElasticsearchNode(
            self.root,
            http_port=es_http_port or int(recorded.get("http_port", DEFAULT_HTTP_PORT)),
            transport_port=es_transport_port or int(recorded.get("transport_port", DEFAULT_TRANSPORT_PORT)),
            heap=settings.stack_heap,
            start_timeout_s=settings.stack_start_timeout_s,
            echo=self.echo,
        )

    # ---- layout ---------------------------------------------------------------------------------------

    @property
    def engine_dir(self) -> Path:
        return self.root / "engine"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def _state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / "stack.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _write_state(self, **changes: Any) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "stack.json").write_text(json.dumps({**self._state(), **changes}))

    def _recorded_engines(self) -> list[str]:
        """The engines ``up`` started and ``down`` has not stopped since (none recorded: OpenSearch)."""
        return [e for e in ENGINES if e in self._state().get("engines", [])] or ["opensearch"]

    def _nodes(self, count: int | None = None) -> list[dict[str, Any]]:
        """OpenSearch node i: name, HTTP and transport ports (consecutive from the configured ones).

        Without ``count``, the shape that ``up`` last started (from ``stack.json``), else one node.
        """
        if count is None:
            count = int(self._state().get("nodes", 1))
        http, transport = self.settings.stack_http_port, self.settings.stack_transport_port
        return [{"name": f"node-{i + 1}", "http": http + i, "transport": transport + i} for i in range(count)]

    # ---- OpenSearch jars ------------------------------------------------------------------------------

    def resolve_engine(self) -> tuple[str, Path]:
        """Resolve (once) the OpenSearch node's classpath with Maven; returns ``(classpath, launcher source)``."""
        require_tool("java")
        self.engine_dir.mkdir(parents=True, exist_ok=True)
        package_java = resources.files("hybrid_search") / "stack" / "java"
        for name in ("pom.xml", "Launcher.java"):
            target = self.engine_dir / name
            content = (package_java / name).read_bytes()
            if not target.exists() or target.read_bytes() != content:
                target.write_bytes(content)
                (self.engine_dir / "classpath.txt").unlink(missing_ok=True)
        cp_file = self.engine_dir / "classpath.txt"
        knn_dir = self.engine_dir / "knn"
        if not cp_file.exists() or not any(knn_dir.glob("opensearch-knn-*.jar")):
            mvn = require_tool("mvn")
            self.echo("resolving OpenSearch 2.19 + k-NN from Maven Central (first time only, ~150 MB)...")
            pom = str(self.engine_dir / "pom.xml")
            shutil.rmtree(knn_dir, ignore_errors=True)
            steps = [
                [mvn, "-B", "-q", "-f", pom, "dependency:build-classpath", "-Dmdep.excludeTypes=zip",
                 f"-Dmdep.outputFile={cp_file}"],
                [mvn, "-B", "-q", "-f", pom, "dependency:unpack-dependencies", "-Dmdep.includeTypes=zip",
                 f"-DoutputDirectory={knn_dir}", f"-DmarkersDirectory={knn_dir / '.markers'}"],
            ]  # fmt: skip
            for cmd in steps:
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
                if done.returncode != 0:
                    cp_file.unlink(missing_ok=True)
                    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln] or [
                        "(no output)"
                    ]
                    raise StackError(f"Maven could not resolve the OpenSearch jars: {lines[0].strip()}")
        jars = [line for line in cp_file.read_text().strip().split(os.pathsep) if line]
        jars += sorted(str(p) for p in knn_dir.glob("*.jar"))
        missing = [j for j in jars if not Path(j).exists()]
        if missing:
            cp_file.unlink(missing_ok=True)
            raise StackError(
                f"the cached engine classpath names missing jars ({missing[0]}); run stack up again"
            )
        return os.pathsep.join(jars), self.engine_dir / "Launcher.java"

    # ---- OpenSearch nodes -----------------------------------------------------------------------------

    def _node_pid(self, name: str) -> int | None:
        return read_pid(self.run_dir / f"{name}.pid", "Launcher.java")

    def _start_node(
        self, node: dict[str, Any], nodes: list[dict[str, Any]], classpath: str, launcher: Path
    ) -> None:
        name = node["name"]
        if self._node_pid(name) is not None and http_root(node["http"]):
            self.echo(f"engine {name} already up on 127.0.0.1:{node['http']}")
            return
        if http_root(node["http"]) is not None:
            raise StackError(
                f"port {node['http']} already answers with another engine; stop it or set HYBRID_SEARCH_STACK_HTTP_PORT"
            )
        home = self.engine_dir / name
        home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            require_tool("java"),
            f"-Xms{self.settings.stack_heap}",
            f"-Xmx{self.settings.stack_heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-Dlog4j2.formatMsgNoLookups=true",
            "-cp",
            classpath,
            str(launcher),
            "--home", str(home),
            "--node-name", name,
            "--cluster-name", CLUSTER_NAME,
            "--http-port", str(node["http"]),
            "--transport-port", str(node["transport"]),
        ]  # fmt: skip
        if len(nodes) > 1:
            cmd += [
                "--seed-hosts", ",".join(f"127.0.0.1:{n['transport']}" for n in nodes),
                "--initial-managers", ",".join(n["name"] for n in nodes),
            ]  # fmt: skip
        log_path = self.logs_dir / f"{name}.log"
        pid = spawn_detached(cmd, log_path)
        (self.run_dir / f"{name}.pid").write_text(str(pid))
        self.echo(f"engine {name} starting on 127.0.0.1:{node['http']} (pid {pid}, log {log_path})")

    def _wait_engine(self, nodes: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + self.settings.stack_start_timeout_s
        port = nodes[0]["http"]
        while True:
            for node in nodes:
                if read_pid(self.run_dir / f"{node['name']}.pid", None) is None:  # just spawned: see read_pid
                    log_path = self.logs_dir / f"{node['name']}.log"
                    raise StackError(
                        f"engine {node['name']} exited while starting; last lines of {log_path}:\n{tail(log_path)}"
                    )
            try:
                health = httpx.get(
                    f"http://127.0.0.1:{port}/_cluster/health",
                    params={"wait_for_status": "yellow", "wait_for_nodes": str(len(nodes)), "timeout": "2s"},
                    timeout=5.0,
                ).json()
                if health.get("status") in ("yellow", "green") and health.get("number_of_nodes") == len(
                    nodes
                ):
                    return
            except (httpx.HTTPError, ValueError):
                time.sleep(1.0)
            if time.monotonic() > deadline:
                raise StackError(
                    f"engine not healthy after {self.settings.stack_start_timeout_s:.0f}s; logs in {self.logs_dir}"
                )

    def _start_opensearch(self, nodes: int) -> list[dict[str, Any]]:
        previous = self._state()
        running = [n for n in self._nodes(int(previous.get("nodes", 1))) if self._node_pid(n["name"])]
        if running and int(previous.get("nodes", 1)) != nodes:
            raise StackError(
                f"a {previous.get('nodes')}-node engine is running; `hybrid-search stack down` before "
                f"starting {nodes} node(s)"
            )
        layout = self._nodes(nodes)
        self._write_state(nodes=nodes, http_port=layout[0]["http"], transport_port=layout[0]["transport"])
        classpath, launcher = self.resolve_engine()
        for node in layout:
            self._start_node(node, layout, classpath, launcher)
        return layout

    def _check_es_ports(self, nodes: int) -> None:
        """The Elasticsearch node's ports must differ from each other and from every OpenSearch node's."""
        taken = {p for n in self._nodes(nodes) for p in (n["http"], n["transport"])}
        taken.add(self.settings.stack_redis_port)
        es_ports = (self.es.http_port, self.es.transport_port)
        if es_ports[0] == es_ports[1] or taken & set(es_ports):
            raise StackError(
                f"the Elasticsearch ports {es_ports[0]}/{es_ports[1]} clash with each other or with the stack's "
                f"OpenSearch/Redis ports {sorted(taken)}; pick others with --es-http-port/--es-transport-port"
            )

    # ---- redis ----------------------------------------------------------------------------------------

    def _redis_pid(self) -> int | None:
        return read_pid(self.run_dir / "redis.pid", "redis-server")

    def _redis_ping(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.settings.stack_redis_port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _start_redis(self) -> None:
        port = self.settings.stack_redis_port
        if self._redis_ping():
            owner = "" if self._redis_pid() else " (not started by this stack)"
            self.echo(f"redis already up on 127.0.0.1:{port}{owner}")
            return
        server = require_tool("redis-server")
        data = self.root / "redis"
        for folder in (data, self.logs_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--daemonize", "yes",
            "--pidfile", str(self.run_dir / "redis.pid"), "--logfile", str(self.logs_dir / "redis.log"),
            "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise StackError(f"redis-server failed to start: {(done.stderr or done.stdout).strip()}")
        deadline = time.monotonic() + 20
        while not self._redis_ping():
            if time.monotonic() > deadline:
                raise StackError(f"redis did not answer on port {port}; log: {self.logs_dir / 'redis.log'}")
            time.sleep(0.1)
        self.echo(f"redis up on 127.0.0.1:{port} (log {self.logs_dir / 'redis.log'})")

    # ---- workers --------------------------------------------------------------------------------------

    def _worker_pid(self) -> int | None:
        return read_pid(self.run_dir / "worker.pid", WORKER_MARKER)

    def _start_worker(self) -> None:
        """One ``hybrid-search workers`` process (its own concurrency setting), detached like the engines."""
        if self._worker_pid() is not None:
            self.echo(f"workers already up on queue {self.settings.ingest_queue}")
            return
        try:
            import celery  # noqa: F401
            import torch  # noqa: F401
        except ImportError:
            raise StackError(
                "workers need the `workers` extra: pip install 'hybrid-search[workers]'"
            ) from None
        for folder in (self.logs_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / "worker.log"
        start = log_offset(log_path)
        command = worker_command()
        pid = spawn_detached(list(command.argv), log_path, env=command.env)
        (self.run_dir / "worker.pid").write_text(str(pid))

        def alive() -> bool:
            return read_pid(self.run_dir / "worker.pid", None) is not None

        if not wait_until_ready(log_path, alive, offset=start, timeout_s=120, poll_s=0.3):
            raise StackError(f"the worker did not start; last lines of {log_path}:\n{tail(log_path)}")
        self.echo(f"workers up on queue {self.settings.ingest_queue} (pid {pid}, log {log_path})")

    def _worker_status(self) -> ComponentStatus:
        pid = self._worker_pid()
        detail = (
            f"celery, queue {self.settings.ingest_queue}, concurrency {self.settings.worker_concurrency}"
            if pid is not None
            else "not running"
        )
        return ComponentStatus("workers", self.settings.redis_url, pid is not None, detail, pid)

    # ---- public ---------------------------------------------------------------------------------------

    def up(
        self, *, nodes: int = 1, engine: str | bool = True, redis: bool = True, workers: bool = False
    ) -> list[ComponentStatus]:
        """Start what is not running yet and wait until it answers; returns :meth:`status`.

        ``engine``: ``"opensearch"`` (or True, the default), ``"elasticsearch"``, ``"both"``, or False for none.
        ``nodes`` (1 or 3) is the OpenSearch cluster's size; Elasticsearch always runs one node. Both engines'
        JVMs start before either is waited for.
        """
        if nodes not in (1, 3):
            raise StackError(f"the local stack runs 1 or 3 engine nodes, not {nodes}")
        engines = select_engines(engine)
        self.root.mkdir(parents=True, exist_ok=True)
        if "elasticsearch" in engines:
            self._check_es_ports(nodes)
        if engines:
            recorded = set(self._state().get("engines", [])) | set(engines)
            self._write_state(engines=[e for e in ENGINES if e in recorded])
        layout = self._start_opensearch(nodes) if "opensearch" in engines else []
        if "elasticsearch" in engines:
            self._write_state(
                elasticsearch={"http_port": self.es.http_port, "transport_port": self.es.transport_port}
            )
            self.es.start()
        if layout:
            self._wait_engine(layout)
            self.echo(
                f"engine up: http://127.0.0.1:{layout[0]['http']} ({nodes} node(s)); logs in {self.logs_dir}"
            )
        if "elasticsearch" in engines:
            self.es.wait()
            self.echo(f"elasticsearch up: {self.es.address}; log {self.es.log_path}")
        if redis:
            self._start_redis()
        if workers:
            self._start_worker()
        return self.status()

    def down(self, *, engine: str | bool = True, redis: bool = True) -> list[ComponentStatus]:
        """Stop what this stack started (idempotent); returns :meth:`status`.

        ``engine``: True (the default) stops every engine; ``"opensearch"``, ``"elasticsearch"`` or ``"both"``
        only those; False none.
        """
        engines = select_engines(engine, all_if_true=True)
        if "opensearch" in engines:
            for node in self._nodes():
                pid = self._node_pid(node["name"])
                if pid is not None:
                    stop_pid(pid, "Launcher.java", f"engine {node['name']}", self.echo)
                    self.echo(f"engine {node['name']} stopped")
                (self.run_dir / f"{node['name']}.pid").unlink(missing_ok=True)
        if "elasticsearch" in engines:
            self.es.stop()
        if engines and (self.root / "stack.json").exists():
            self._write_state(engines=[e for e in self._state().get("engines", []) if e not in engines])
        if redis:  # the workers go with their broker
            pid = self._worker_pid()
            if pid is not None:
                stop_pid(pid, WORKER_MARKER, "workers", self.echo)
                self.echo("workers stopped")
            (self.run_dir / "worker.pid").unlink(missing_ok=True)
            pid = self._redis_pid()
            if pid is not None:
                stop_pid(pid, "redis-server", "redis", self.echo)
                self.echo("redis stopped")
            (self.run_dir / "redis.pid").unlink(missing_ok=True)
        return self.status()

    def status(self) -> list[ComponentStatus]:
        """Each component, up or down, with its address: the engines ``up`` started, and Redis."""
        out = []
        shown = self._recorded_engines()
        if "opensearch" in shown:
            for node in self._nodes():
                address = f"http://127.0.0.1:{node['http']}"
                info = http_root(node["http"])
                pid = self._node_pid(node["name"])
                if info is not None:
                    detail = engine_label(info) + ("" if pid is not None else " (not started by this stack)")
                    out.append(ComponentStatus(f"engine {node['name']}", address, True, detail, pid))
                else:
                    detail = "starting or not answering" if pid is not None else "not running"
                    out.append(ComponentStatus(f"engine {node['name']}", address, False, detail, pid))
        if "elasticsearch" in shown or self.es.pid() is not None:
            out.append(self.es.status())
        address = f"redis://127.0.0.1:{self.settings.stack_redis_port}"
        up = self._redis_ping()
        out.append(
            ComponentStatus("redis", address, up, "answers PING" if up else "not running", self._redis_pid())
        )
        if (self.run_dir / "worker.pid").exists():
            out.append(self._worker_status())
        return out


__all__ = ["ENGINES", "ENGINE_CHOICES", "INSTALL_HINTS", "ComponentStatus", "Stack", "select_engines"]
