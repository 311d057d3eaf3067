"""Start, stop and inspect the local stack: OpenSearch 2.19 + k-NN assembled from Maven Central, and Redis.

Layout under ``settings.stack_dir``::

    engine/pom.xml, engine/Launcher.java   copied from the package
    engine/classpath.txt, engine/knn/      the node's jars (resolved once by Maven into ~/.m2, then reused)
    engine/node-<i>/                       data and config of node i
    logs/node-<i>.log, logs/redis.log      what each process prints
    run/node-<i>.pid, run/redis.pid        pids of what ``up`` started
    redis/                                 Redis data (AOF on)
    stack.json                             the shape last started (nodes and ports), read by status and down

Every operation is idempotent: ``up`` leaves running components alone, ``down`` of a stopped stack is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from hybrid_search.errors import StackError
from hybrid_search.settings import Settings

log = logging.getLogger(__name__)

CLUSTER_NAME = "hybrid-search"
KNN_PLUGIN_CLASS = "org.opensearch.knn.plugin.KNNPlugin"
INSTALL_HINTS = {
    "java": "Java 17+ (a JDK: the launcher runs as a single-file source program). "
    "Debian/Ubuntu: apt-get install openjdk-17-jdk-headless",
    "mvn": "Apache Maven (resolves the OpenSearch jars from Maven Central). Debian/Ubuntu: apt-get install maven",
    "redis-server": "Redis. Debian/Ubuntu: apt-get install redis-server",
}


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    address: str
    up: bool
    detail: str = ""
    pid: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"{tool} not found on PATH: install {INSTALL_HINTS[tool]}")
    return path


def _pid_alive(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def _spawn_detached(cmd: list[str], log_path: Path) -> int:
    """Start ``cmd`` in its own session, output appended to ``log_path``; it outlives this process.

    ``posix_spawn`` rather than ``Popen``: no handle object is left to warn when it is collected while the server
    runs on (which it is meant to), and no fork of a possibly multi-threaded interpreter.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), flags, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(cmd[0], cmd, dict(os.environ), file_actions=actions, setsid=True)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """The local stack described by ``settings`` (ports, folder, heap)."""

    def __init__(self, settings: Settings, *, echo: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.root = settings.stack_dir
        self.echo = echo or (lambda message: log.info("%s", message))

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

    def _nodes(self, count: int | None = None) -> list[dict[str, Any]]:
        """Node i: name, HTTP and transport ports (consecutive from the configured ones).

        Without ``count``, the shape that ``up`` last started (from ``stack.json``), else one node.
        """
        if count is None:
            count = int(self._state().get("nodes", 1))
        http, transport = self.settings.stack_http_port, self.settings.stack_transport_port
        return [{"name": f"node-{i + 1}", "http": http + i, "transport": transport + i} for i in range(count)]

    # ---- engine jars ----------------------------------------------------------------------------------

    def resolve_engine(self) -> tuple[str, Path]:
        """Resolve (once) the node's classpath with Maven; returns ``(classpath, launcher source)``."""
        _require("java")
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
            mvn = _require("mvn")
            self.echo("resolving OpenSearch 2.19 + k-NN from Maven Central (first time only, ~150 MB)...")
            pom = str(self.engine_dir / "pom.xml")
            shutil.rmtree(knn_dir, ignore_errors=True)
            steps = [
                [mvn, "-B", "-q", "-f", pom, "dependency:build-classpath", "-Dmdep.excludeTypes=zip",
                 f"-Dmdep.outputFile={cp_file}"],
                [mvn, "-B", "-q", "-f", pom, "dependency:unpack-dependencies", "-Dmdep.includeTypes=zip",
                 f"-DoutputDirectory={knn_dir}"],
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

    # ---- engine nodes ---------------------------------------------------------------------------------

    def _http_ok(self, port: int) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0)
            data: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return data if isinstance(data, dict) and "version" in data else None

    def _node_pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, "Launcher.java") else None

    def _start_node(
        self, node: dict[str, Any], nodes: list[dict[str, Any]], classpath: str, launcher: Path
    ) -> None:
        name = node["name"]
        if self._node_pid(name) is not None and self._http_ok(node["http"]):
            self.echo(f"engine {name} already up on 127.0.0.1:{node['http']}")
            return
        if self._http_ok(node["http"]) is not None:
            raise StackError(
                f"port {node['http']} already answers with another engine; stop it or set HYBRID_SEARCH_STACK_HTTP_PORT"
            )
        home = self.engine_dir / name
        home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            _require("java"),
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
        pid = _spawn_detached(cmd, log_path)
        (self.run_dir / f"{name}.pid").write_text(str(pid))
        self.echo(f"engine {name} starting on 127.0.0.1:{node['http']} (pid {pid}, log {log_path})")

    def _wait_engine(self, nodes: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + self.settings.stack_start_timeout_s
        port = nodes[0]["http"]
        while True:
            for node in nodes:
                if self._node_pid(node["name"]) is None:
                    log_path = self.logs_dir / f"{node['name']}.log"
                    raise StackError(
                        f"engine {node['name']} exited while starting; last lines of {log_path}:\n{_tail(log_path)}"
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

    # ---- redis ----------------------------------------------------------------------------------------

    def _redis_pid(self) -> int | None:
        try:
            pid = int((self.run_dir / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid, "redis-server") else None

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
        server = _require("redis-server")
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

    # ---- public ---------------------------------------------------------------------------------------

    def up(self, *, nodes: int = 1, engine: bool = True, redis: bool = True) -> list[ComponentStatus]:
        """Start what is not running yet and wait until it answers; returns :meth:`status`."""
        if nodes not in (1, 3):
            raise StackError(f"the local stack runs 1 or 3 engine nodes, not {nodes}")
        self.root.mkdir(parents=True, exist_ok=True)
        if engine:
            previous = self._state()
            running = [n for n in self._nodes(int(previous.get("nodes", 1))) if self._node_pid(n["name"])]
            if running and int(previous.get("nodes", 1)) != nodes:
                raise StackError(
                    f"a {previous.get('nodes')}-node engine is running; `hybrid-search stack down` before "
                    f"starting {nodes} node(s)"
                )
            layout = self._nodes(nodes)
            (self.root / "stack.json").write_text(
                json.dumps(
                    {"nodes": nodes, "http_port": layout[0]["http"], "transport_port": layout[0]["transport"]}
                )
            )
            classpath, launcher = self.resolve_engine()
            for node in layout:
                self._start_node(node, layout, classpath, launcher)
            self._wait_engine(layout)
            self.echo(
                f"engine up: http://127.0.0.1:{layout[0]['http']} ({nodes} node(s)); logs in {self.logs_dir}"
            )
        if redis:
            self._start_redis()
        return self.status()

    def _stop_pid(self, pid: int, marker: str, what: str, timeout_s: float = 60.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid, marker):
            if time.monotonic() > deadline:
                self.echo(f"{what} did not stop in {timeout_s:.0f}s: killing it")
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
                break
            time.sleep(0.2)

    def down(self, *, engine: bool = True, redis: bool = True) -> list[ComponentStatus]:
        """Stop what this stack started (idempotent); returns :meth:`status`."""
        if engine:
            for node in self._nodes():
                pid = self._node_pid(node["name"])
                if pid is not None:
                    self._stop_pid(pid, "Launcher.java", f"engine {node['name']}")
                    self.echo(f"engine {node['name']} stopped")
                (self.run_dir / f"{node['name']}.pid").unlink(missing_ok=True)
        if redis:
            pid = self._redis_pid()
            if pid is not None:
                self._stop_pid(pid, "redis-server", "redis")
                self.echo("redis stopped")
            (self.run_dir / "redis.pid").unlink(missing_ok=True)
        return self.status()

    def status(self) -> list[ComponentStatus]:
        """Each component, up or down, with its address."""
        out = []
        for node in self._nodes():
            address = f"http://127.0.0.1:{node['http']}"
            info = self._http_ok(node["http"])
            pid = self._node_pid(node["name"])
            if info is not None:
                detail = (
                    f"{info['version'].get('distribution', 'engine')} {info['version'].get('number', '?')}"
                )
                if pid is None:
                    detail += " (not started by this stack)"
                out.append(ComponentStatus(f"engine {node['name']}", address, True, detail, pid))
            else:
                detail = "starting or not answering" if pid is not None else "not running"
                out.append(ComponentStatus(f"engine {node['name']}", address, False, detail, pid))
        address = f"redis://127.0.0.1:{self.settings.stack_redis_port}"
        up = self._redis_ping()
        out.append(
            ComponentStatus("redis", address, up, "answers PING" if up else "not running", self._redis_pid())
        )
        return out


__all__ = ["INSTALL_HINTS", "ComponentStatus", "Stack"]
