"""Helpers of the API, voice and browser tests: the Luma catalogue in a private index, and a real server process.

``luma_index`` fills a new ``test-api-<random>`` alias with the 199 Luma products through the library
:class:`Ingestor` (real MiniLM, EfficientNet-Lite0 and colour vectors). ``ApiServer`` runs ``hybrid-search serve``
as a subprocess (uvicorn) on a free port with that alias, a private ingest queue and the Luma folder as photo
root, and waits until it answers. ``Worker`` runs ``hybrid-search workers`` (Celery) as a subprocess with the
environment given (its queue, its encoders), started by the library's
:func:`~hybrid_search.ingest.workers.start_worker`, and waits until it is ready.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hybrid_search.catalog import Product, open_catalogue
from hybrid_search.encoders.roles import configured_encoders, encoder_records
from hybrid_search.engine import create_engine, definition_from_settings
from hybrid_search.errors import HybridSearchError
from hybrid_search.ingest.pipeline import Ingestor
from hybrid_search.ingest.workers import start_worker, stop_worker
from hybrid_search.settings import Settings

REPO = Path(__file__).resolve().parents[1]
ARTEFACTS = REPO / "tests" / "artefacts"


def datasets() -> Path:
    return Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))


def luma_folder() -> Path:
    folder = datasets() / "luma"
    if not (folder / "products_flat.csv").is_file():
        pytest.fail(f"the Luma catalogue is missing at {folder}; set HYBRID_SEARCH_DATASETS", pytrace=False)
    return folder


def luma_products() -> dict[str, Product]:
    return {p.id: p for p in open_catalogue(luma_folder()).records() if isinstance(p, Product)}


@contextmanager
def luma_index(settings: Settings, prefix: str = "test-api") -> Iterator[str]:
    """A private alias holding the Luma catalogue with real vectors; deleted afterwards."""
    folder = luma_folder()
    catalogue = open_catalogue(folder)
    records = [p.to_input() for p in catalogue.records() if isinstance(p, Product)]
    alias = f"{prefix}-{uuid.uuid4().hex[:10]}"
    encoders = configured_encoders(settings)
    with create_engine(settings) as engine:
        engine.create_index(alias, definition_from_settings(settings, encoder_records(settings, encoders)))
        try:
            ingestor = Ingestor(settings, engine, encoders)
            for start in range(0, len(records), 64):
                report = ingestor.ingest(
                    records[start : start + 64], index=alias, base_dir=catalogue.base_dir
                )
                assert report.failed == [], report.failed
            engine.refresh(alias)
            assert engine.count(alias) == len(records)
            yield alias
        finally:
            for name in engine.versions(alias).values():
                engine.delete_index(name)


_SHARED: dict[str, str] = {}


def shared_luma_alias(request: pytest.FixtureRequest, settings: Settings) -> str:
    """One Luma index per test process, whichever test module asks first; deleted when the session ends."""
    if "luma" not in _SHARED:
        manager = luma_index(settings)
        _SHARED["luma"] = manager.__enter__()

        def cleanup() -> None:
            _SHARED.pop("luma", None)
            manager.__exit__(None, None, None)

        request.config.add_cleanup(cleanup)
    return _SHARED["luma"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """``hybrid-search serve`` in a subprocess; ``url`` once it answers."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = {**os.environ, **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 240.0) -> ApiServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hybrid_search.cli", "serve", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the API server exited; its log:\n{self.log.read_text()[-4000:]}", pytrace=False)
            try:
                httpx.get(self.url + "/openapi.json", timeout=2.0)
                return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"the API server did not answer; its log:\n{self.log.read_text()[-4000:]}", pytrace=False
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class Worker:
    """``hybrid-search workers`` in a subprocess, with the environment given (its queue, its encoders).

    ``node`` is its Celery node name (``<prefix>-<random>@%h``); the constructor returns once the worker's log
    says it is ready, and fails the test with the log's end when it exits or is not ready within ``timeout_s``.
    """

    def __init__(
        self, env: Mapping[str, str], log: Path, *, prefix: str = "test", timeout_s: float = 180.0
    ) -> None:
        self.node = f"{prefix}-{uuid.uuid4().hex[:6]}@%h"
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")  # this worker's output only
        try:
            self.process = start_worker(log, env=env, node=self.node, wait_s=timeout_s)
        except HybridSearchError:
            pytest.fail(f"the worker did not start; its log:\n{self.text()[-3000:]}", pytrace=False)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL if it has not exited within 60 s."""
        if self.process.poll() is None:
            stop_worker(self.process, timeout_s=60)


@contextmanager
def api_server(env: Mapping[str, Any], name: str) -> Iterator[ApiServer]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}-{uuid.uuid4().hex[:6]}.log"
    server = ApiServer({k: str(v) for k, v in env.items()}, log).start()
    try:
        yield server
    finally:
        server.stop()


def server_env(alias: str, queue: str, **extra: Any) -> dict[str, str]:
    """The environment of a test server: its alias, its queue, the Luma photos."""
    return {
        "HYBRID_SEARCH_INDEX_ALIAS": alias,
        "HYBRID_SEARCH_INGEST_QUEUE": queue,
        "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(luma_folder())]),
        **{k: str(v) for k, v in extra.items()},
    }


@dataclass
class Shared:
    """What the API tests of one process share: the Luma alias, a worker on a private queue, a server."""

    alias: str
    queue: str
    url: str
    settings: Settings


def shared_api(request: pytest.FixtureRequest, settings: Settings) -> Shared:
    """The process's API server on the Luma alias, with a worker on its private queue (built once)."""
    if "api" in _SHARED_API:
        return _SHARED_API["api"]
    alias = shared_luma_alias(request, settings)
    queue = f"test-api-{uuid.uuid4().hex[:8]}"
    env = server_env(alias, queue)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    worker = start_worker(log_dir / f"{queue}-worker.log", env={**os.environ, **env})
    request.config.add_cleanup(lambda: stop_worker(worker))
    server = ApiServer(env, log_dir / f"{queue}-server.log").start()
    request.config.add_cleanup(server.stop)
    _SHARED_API["api"] = Shared(alias, queue, server.url, settings.model_copy(update={"ingest_queue": queue,
                                "index_alias": alias, "image_roots": [luma_folder()]}))  # fmt: skip
    return _SHARED_API["api"]


_SHARED_API: dict[str, Shared] = {}


def speak(text: str, path: Path, *, voice: str = "en", speed: int = 150) -> Path:
    """``text`` spoken by espeak-ng into a WAV file (fails the test when espeak-ng is missing)."""
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
    except FileNotFoundError:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng)", pytrace=False)
    return path
