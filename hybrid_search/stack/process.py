"""Processes of the local stack: find tools, spawn detached servers, check and stop them by pid.

Shared by the OpenSearch nodes and Redis (:mod:`.manager`) and the Elasticsearch node (:mod:`.es_node`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from hybrid_search.errors import StackError

log = logging.getLogger(__name__)

INSTALL_HINTS = {
    "java": "Java 17+ (a JDK: the launcher runs as a single-file source program). "
    "Debian/Ubuntu: apt-get install openjdk-17-jdk-headless",
    "mvn": "Apache Maven (resolves the engine jars from Maven Central). Debian/Ubuntu: apt-get install maven",
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


def require_tool(tool: str) -> str:
    """The tool's path on PATH, or a :class:`StackError` saying how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise StackError(f"{tool} not found on PATH: install {INSTALL_HINTS[tool]}")
    return path


def pid_alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs (not a zombie) with ``marker`` in its command line (a reused pid is not ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return marker in cmdline and state != "Z"


def read_pid(path: Path, marker: str | None) -> int | None:
    """The pid in ``path`` if that process is alive and is ours (``marker`` in its command line), else None.

    ``marker=None`` only checks that the process exists and is not a zombie: for a process spawned a moment ago,
    whose ``/proc/<pid>/cmdline`` reads empty until its ``exec`` has finished.
    """
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    if marker is None:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return pid if state != "Z" else None
    return pid if pid_alive(pid, marker) else None


def spawn_detached(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> int:
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
    return os.posix_spawn(
        cmd[0], cmd, env if env is not None else dict(os.environ), file_actions=actions, setsid=True
    )


def stop_pid(pid: int, marker: str, what: str, echo: Callable[[str], None], timeout_s: float = 60.0) -> None:
    """SIGTERM, wait up to ``timeout_s`` for the process to exit, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid, marker):
        if time.monotonic() > deadline:
            echo(f"{what} did not stop in {timeout_s:.0f}s: killing it")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            break
        time.sleep(0.2)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_root(port: int) -> dict[str, Any] | None:
    """``GET /`` of an engine on loopback: its info document, or None when nothing engine-like answers."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2.0)
        data: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) and "version" in data else None


def engine_label(info: dict[str, Any]) -> str:
    """``opensearch 2.19.1`` / ``elasticsearch 8.19.21`` from a root document."""
    version = info.get("version", {})
    # OpenSearch names its distribution; Elasticsearch's root document has no such field
    name = version.get("distribution") or ("elasticsearch" if "build_flavor" in version else "engine")
    return f"{name} {version.get('number', '?')}"


__all__ = [
    "INSTALL_HINTS",
    "ComponentStatus",
    "engine_label",
    "http_root",
    "pid_alive",
    "read_pid",
    "require_tool",
    "spawn_detached",
    "stop_pid",
    "tail",
]
