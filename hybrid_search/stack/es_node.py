"""One Elasticsearch 8 node for the local stack, built from Maven Central artifacts (there is no distribution there).

Maven resolves the server jar ``org.elasticsearch:elasticsearch`` and the ``transport-netty4`` plugin and builds our
Java project (``hybrid_search/stack/elasticsearch/``): a launcher that starts the node through the public ``Node``
constructor, and two modules standing in for unpublished ones (english/cjk analysis from Lucene classes; ``GET /``).

Layout under ``<stack dir>/elasticsearch``::

    build/                 a copy of the package's Java project and Maven's target/ (built once, then reused)
    build/source.sha256    what was built: Maven runs again only when the sources or the version change
    home/config/           log4j2.properties: the node logs to its console, i.e. <stack dir>/logs/es-node-1.log
    home/modules/<name>/   transport-netty4 (+ netty jars), hybrid-search-analysis, hybrid-search-root
    home/data/             the node's data

plus ``<stack dir>/logs/es-node-1.log``, ``<stack dir>/logs/es-build.log`` and ``<stack dir>/run/es-node-1.pid``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import httpx

from hybrid_search.errors import StackError
from hybrid_search.stack.process import (
    ComponentStatus,
    engine_label,
    http_root,
    read_pid,
    require_tool,
    spawn_detached,
    stop_pid,
    tail,
)

ES_VERSION = "8.19.21"
NODE_NAME = "es-node-1"
CLUSTER_NAME = "hybrid-search-es"
LAUNCHER_CLASS = "io.hybridsearch.elasticsearch.Launcher"
DEFAULT_HTTP_PORT = 9400
DEFAULT_TRANSPORT_PORT = 9500
_ARTIFACT = "hybrid-search-es-1"
_MODULES_JAR = f"{_ARTIFACT}-modules.jar"

# module folder -> (plugin class, description). No `modulename` in the descriptors: each loads as a classic
# plugin, so the server jars can stay on the class path (the jar's own netty4 descriptor names a Java module).
MODULES = {
    "transport-netty4": ("org.elasticsearch.transport.netty4.Netty4Plugin", "Netty 4 based transport implementation"),
    "hybrid-search-analysis": (
        "io.hybridsearch.elasticsearch.modules.LuceneAnalysisPlugin",
        "english and cjk analyzers, asciifolding and a few filters, from Lucene (stand-in for analysis-common)",
    ),
    "hybrid-search-root": (
        "io.hybridsearch.elasticsearch.modules.RootInfoPlugin",
        "GET / and HEAD / (stand-in for rest-root)",
    ),
}  # fmt: skip

# the distribution's own JVM options that matter here (netty without Unsafe and without recycler caches)
JVM_OPTIONS = (
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    "-Dfile.encoding=UTF-8",
    "-Dlog4j2.formatMsgNoLookups=true",
    "-Dio.netty.noUnsafe=true",
    "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "--enable-native-access=ALL-UNNAMED",
)


def _project_files() -> dict[str, bytes]:
    """The Java project shipped in the package: relative path -> content (pom.xml, log4j2.properties, sources)."""
    files: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            rel = prefix + child.name
            if child.is_dir() and child.name != "target":
                walk(child, rel + "/")
            elif rel in ("pom.xml", "log4j2.properties") or (
                rel.startswith("src/") and rel.endswith(".java")
            ):
                files[rel] = child.read_bytes()

    walk(resources.files("hybrid_search") / "stack" / "elasticsearch", "")
    return files


def _descriptor(name: str, classname: str, description: str) -> str:
    return "".join(
        f"{key}={value}\n"
        for key, value in (
            ("description", description),
            ("version", ES_VERSION),
            ("name", name),
            ("java.version", "17"),
            ("elasticsearch.version", ES_VERSION),
            ("classname", classname),
        )
    )


class ElasticsearchNode:
    """The stack's Elasticsearch node: build, start, wait, stop, status (every operation idempotent)."""

    def __init__(
        self,
        root: Path,
        *,
        http_port: int,
        transport_port: int,
        heap: str,
        start_timeout_s: float,
        echo: Callable[[str], None],
    ) -> None:
        self.dir = root / "elasticsearch"
        self.logs_dir = root / "logs"
        self.run_dir = root / "run"
        self.http_port = http_port
        self.transport_port = transport_port
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.echo = echo

    @property
    def name(self) -> str:
        return NODE_NAME

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.logs_dir / f"{NODE_NAME}.log"

    @property
    def _pid_file(self) -> Path:
        return self.run_dir / f"{NODE_NAME}.pid"

    # ---- build ----------------------------------------------------------------------------------------

    def build(self) -> Path:
        """Build (once) the launcher and modules with Maven; returns the Maven ``target`` folder."""
        require_tool("java")
        build, target = self.dir / "build", self.dir / "build" / "target"
        files = _project_files()
        digest = hashlib.sha256(ES_VERSION.encode())
        for rel in sorted(files):
            digest.update(rel.encode() + b"\0" + files[rel])
        stamp = build / "source.sha256"
        if stamp.exists() and stamp.read_text() == digest.hexdigest() and self._built(target):
            return target
        mvn = require_tool("mvn")
        self.echo(
            f"building the Elasticsearch {ES_VERSION} node from Maven Central (first time only, ~45 MB)..."
        )
        shutil.rmtree(build, ignore_errors=True)
        for rel, content in files.items():
            (build / rel).parent.mkdir(parents=True, exist_ok=True)
            (build / rel).write_bytes(content)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        build_log = self.logs_dir / "es-build.log"
        cmd = [mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(build / "pom.xml"), "package",
               "-Dmaven.test.skip=true", f"-Des.version={ES_VERSION}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        build_log.write_text(done.stdout + done.stderr)
        if done.returncode != 0 or not self._built(target):
            errors = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if "ERROR" in ln]
            first = errors[0] if errors else f"exit status {done.returncode}"
            raise StackError(
                f"Maven could not build the Elasticsearch node: {first} (full output: {build_log})"
            )
        stamp.write_text(digest.hexdigest())
        return target

    @staticmethod
    def _built(target: Path) -> bool:
        try:
            jars = (target / "classpath.txt").read_text().strip().split(os.pathsep)
        except OSError:
            return False
        jars += [str(target / f"{_ARTIFACT}.jar"), str(target / _MODULES_JAR)]
        return all(Path(j).is_file() for j in jars) and any(
            (target / "transport-netty4").glob("transport-netty4-*.jar")
        )

    def _lay_out_home(self, target: Path) -> Path:
        """``home/``: config and the three module folders, fresh from the build; data is kept."""
        home = self.dir / "home"
        modules = home / "modules"
        shutil.rmtree(modules, ignore_errors=True)
        for folder, (classname, description) in MODULES.items():
            (modules / folder).mkdir(parents=True)
            (modules / folder / "plugin-descriptor.properties").write_text(
                _descriptor(folder, classname, description)
            )
            jars = (
                (target / "transport-netty4").glob("*.jar")
                if folder == "transport-netty4"
                else [target / _MODULES_JAR]
            )
            for jar in jars:
                shutil.copy2(jar, modules / folder / jar.name)
        for folder in ("config", "data", "plugins"):
            (home / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy2(self.dir / "build" / "log4j2.properties", home / "config" / "log4j2.properties")
        # on Java 21+ ES's native provider dlopen()s libzstd.so from es.nativelibs.path (the distribution ships
        # it there); Debian has libzstd.so.1. Java 17 uses JNA instead and needs none of this.
        native = home / "lib" / "platform" / "linux-x64"
        native.mkdir(parents=True, exist_ok=True)
        link = native / "libzstd.so"
        for candidate in ("/usr/lib/x86_64-linux-gnu/libzstd.so.1", "/lib/x86_64-linux-gnu/libzstd.so.1"):
            if Path(candidate).exists() and not link.is_symlink():
                link.symlink_to(candidate)
        return home

    # ---- process --------------------------------------------------------------------------------------

    def pid(self) -> int | None:
        return read_pid(self._pid_file, LAUNCHER_CLASS)

    def start(self) -> bool:
        """Start the node unless it runs; True when it was started (then :meth:`wait` for it)."""
        if self.pid() is not None and http_root(self.http_port) is not None:
            self.echo(f"engine {NODE_NAME} already up on 127.0.0.1:{self.http_port}")
            return False
        if self.pid() is None and http_root(self.http_port) is not None:
            raise StackError(
                f"port {self.http_port} already answers with another engine; stop it or pick another port "
                "with --es-http-port"
            )
        if self.pid() is not None:
            return True  # started earlier and still starting: wait for it
        target = self.build()
        home = self._lay_out_home(target)
        classpath = os.pathsep.join(
            [str(target / f"{_ARTIFACT}.jar"), (target / "classpath.txt").read_text().strip()]
        )
        cmd = [
            require_tool("java"), f"-Xms{self.heap}", f"-Xmx{self.heap}", *JVM_OPTIONS,
            f"-Des.nativelibs.path={home / 'lib' / 'platform' / 'linux-x64'}",
            "-cp", classpath, LAUNCHER_CLASS,
            "--home", str(home), "--node-name", NODE_NAME, "--cluster-name", CLUSTER_NAME,
            "--http-port", str(self.http_port), "--transport-port", str(self.transport_port),
        ]  # fmt: skip
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pid = spawn_detached(cmd, self.log_path)
        self._pid_file.write_text(str(pid))
        self.echo(
            f"engine {NODE_NAME} (Elasticsearch {ES_VERSION}) starting on 127.0.0.1:{self.http_port} "
            f"(pid {pid}, log {self.log_path})"
        )
        return True

    def wait(self) -> None:
        """Until cluster health is yellow or green; a node that exits raises with the end of its log."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if read_pid(self._pid_file, None) is None:  # just spawned: its command line may read empty yet
                raise StackError(
                    f"engine {NODE_NAME} exited while starting; last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                health = httpx.get(
                    f"{self.address}/_cluster/health",
                    params={"wait_for_status": "yellow", "timeout": "2s"},
                    timeout=5.0,
                ).json()
                if health.get("status") in ("yellow", "green"):
                    return
            except (httpx.HTTPError, ValueError):
                time.sleep(0.5)
            if time.monotonic() > deadline:
                raise StackError(
                    f"engine {NODE_NAME} not healthy after {self.start_timeout_s:.0f}s; log: {self.log_path}"
                )

    def stop(self) -> bool:
        """Stop the node if this stack started it; True when it was running."""
        pid = self.pid()
        if pid is not None:
            stop_pid(pid, LAUNCHER_CLASS, f"engine {NODE_NAME}", self.echo)
            self.echo(f"engine {NODE_NAME} stopped")
        self._pid_file.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> ComponentStatus:
        info = http_root(self.http_port)
        pid = self.pid()
        if info is None:
            detail = "starting or not answering" if pid is not None else "not running"
            return ComponentStatus(f"engine {NODE_NAME}", self.address, False, detail, pid)
        detail = engine_label(info) + ("" if pid is not None else " (not started by this stack)")
        return ComponentStatus(f"engine {NODE_NAME}", self.address, True, detail, pid)


__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_TRANSPORT_PORT",
    "ES_VERSION",
    "LAUNCHER_CLASS",
    "ElasticsearchNode",
]
