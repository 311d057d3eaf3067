"""What the fault-injection tests share: their own stacks, worker processes they can kill, the Luma catalogue with
deliberately bad records, the index checks, and the figures they report.

Everything here is real: the engine nodes, Redis (AOF on) and the Celery workers are processes started by these
tests, in a temporary stack folder, on ports of their own (OpenSearch 9600+/9700+, Redis on a free port), so the
shared local stack is never touched. A process is only ever killed by the pid these tests started (a worker by
its process group, which it leads).

Encoders: the model is not the subject here, the delivery guarantees are. Text goes through the real ``hf-text``
encoder code (tokenizer, model, mean pooling) with a tiny BERT of fixed random weights (MiniLM's tokenizer, one
32-wide layer), and the colour histogram is the image encoder, so a batch costs the workers little CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from api_support import luma_folder, luma_products

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, SearchRequest, create_engine, definition_from_settings
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.ingest.workers import log_offset, start_worker, wait_until_ready
from hybrid_search.settings import Settings, load_settings
from hybrid_search.stack import Stack
from hybrid_search.stack.process import pid_alive, read_pid

REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = REPO / "tests" / "artefacts" / "faults"
SUMMARY = ARTEFACTS / "summary.json"
RECORDED: dict[str, dict[str, Any]] = {}  # this session's figures, printed at the end (see conftest)

# the model is not the subject: a tiny text model (see tiny_text_model), colour histograms as image vectors
LIGHT = {"image_encoder": "colour", "colour_vectors": False, "device": "cpu"}
VISIBILITY_TIMEOUT_S = 20.0  # a dead worker's batches come back after this (the product default is 300 s)
BATCH_SIZE = 4  # ~50 batches for the 199 Luma products: kills land in the middle of ingestion

# deliberately bad records mixed into the catalogue: the only dead letters allowed (id -> part of the reason)
BAD_RECORDS = {
    "bad-no-title": "title",
    "bad-price": "price must be a number",
    "bad-truncated-photo": "corrupt",
    "bad-html-photo": "unsupported format",
    None: "not valid JSON",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_of(overrides: Mapping[str, Any]) -> dict[str, str]:
    """``HYBRID_SEARCH_*`` variables for settings overrides (what a child process needs to get the same)."""
    out = {}
    for name, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = json.dumps([str(v) for v in value])
        else:
            text = str(value)
        out[f"HYBRID_SEARCH_{name.upper()}"] = text
    return out


def tiny_text_model(folder: Path) -> Path:
    """A BERT of one 32-wide layer with fixed random weights and MiniLM's tokenizer, for ``hf-text:<folder>``:
    deterministic vectors at a fraction of MiniLM's cost (its ranking quality does not matter here)."""
    import torch
    from transformers import BertConfig, BertModel

    from hybrid_search.encoders.text import minilm_folder

    source = minilm_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    config = BertConfig.from_pretrained(str(source), local_files_only=True)
    config.update({"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 128})  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


# ---- stacks -------------------------------------------------------------------------------------------------


def seed_engine_jars(source: Path, target: Path) -> None:
    """Give a new stack folder the OpenSearch classpath another one resolved (Maven runs once per session, at
    most): its ``engine/`` files, not the nodes' data. Nothing to copy from: nothing happens."""
    engine = source / "engine"
    if (target / "engine" / "classpath.txt").exists() or not (engine / "classpath.txt").is_file():
        return
    (target / "engine").mkdir(parents=True, exist_ok=True)
    for name in ("pom.xml", "Launcher.java", "classpath.txt"):
        if (engine / name).is_file():
            shutil.copy(engine / name, target / "engine" / name)
    (target / "engine" / "knn").mkdir(exist_ok=True)
    # only the jars: what the classpath takes from there (the rest is the plugin's unpacked docs, ~180 MB)
    for jar in (engine / "knn").glob("*.jar"):
        shutil.copy(jar, target / "engine" / "knn" / jar.name)


class FaultStack:
    """An OpenSearch node (or three) and a Redis of the tests' own, in ``root``."""

    def __init__(
        self, root: Path, text_model: Path, *, http_port: int, transport_port: int, nodes: int = 1,
        heap: str = "512m",
    ):  # fmt: skip
        self.root = root
        self.text_model = text_model
        self.nodes = nodes
        self.settings = load_settings(
            stack_dir=root, stack_http_port=http_port, stack_transport_port=transport_port,
            stack_redis_port=free_port(), stack_heap=heap, stack_start_timeout_s=240,
        )  # fmt: skip
        self.stack = Stack(self.settings, echo=self._echo)

    def _echo(self, line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} [stack {self.root.name}] {line}", flush=True)

    @property
    def http_ports(self) -> list[int]:
        return [self.settings.stack_http_port + i for i in range(self.nodes)]

    @property
    def engine_url(self) -> str:
        return ",".join(f"http://127.0.0.1:{port}" for port in self.http_ports)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.settings.stack_redis_port}/0"

    def up(self) -> None:
        rows = self.stack.up(nodes=self.nodes, engine="opensearch", redis=True)
        assert all(r.up for r in rows), rows

    def down(self) -> None:
        self.stack.down()

    def start_engine(self) -> None:
        self.stack.up(nodes=self.nodes, engine="opensearch", redis=False)

    def stop_engine(self) -> None:
        """SIGTERM every node and wait until it is gone (what an operator's restart does)."""
        self.stack.down(engine=True, redis=False)

    def node_pid(self, name: str) -> int | None:
        return read_pid(self.root / "run" / f"{name}.pid", "Launcher.java")

    def kill_node(self, name: str) -> int:
        pid = self.node_pid(name)
        assert pid is not None, f"engine {name} of {self.root} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid, "Launcher.java"), 30, f"engine {name} (pid {pid}) to die")
        return pid

    def redis_pid(self) -> int | None:
        return read_pid(self.root / "run" / "redis.pid", "redis-server")

    def kill_redis(self) -> int:
        pid = self.redis_pid()
        assert pid is not None, f"the Redis of {self.root} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid, "redis-server"), 30, f"redis (pid {pid}) to die")
        return pid

    def start_redis(self) -> None:
        self.stack.up(engine=False, redis=True)

    def settings_for(self, **overrides: Any) -> tuple[Settings, dict[str, str]]:
        """Settings for clients of this stack (and the same as environment variables for child processes)."""
        values = {
            **LIGHT,
            "text_encoder": f"hf-text:{self.text_model}",
            "engine_url": self.engine_url,
            "redis_url": self.redis_url,
            "image_roots": [luma_folder()],
            "ingest_visibility_timeout_s": VISIBILITY_TIMEOUT_S,
            "voice_enabled": False,
            **overrides,
        }
        return load_settings(**values), env_of(values)


def wait_until(check: Any, timeout_s: float, what: str, poll_s: float = 0.2) -> float:
    """Poll ``check()`` until true; returns the seconds it took, fails the test naming ``what`` otherwise."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}", pytrace=False)
        time.sleep(poll_s)
    return time.monotonic() - started


# ---- workers ------------------------------------------------------------------------------------------------

_STARTED = re.compile(rb"ForkPoolWorker-\d+\] job [0-9a-f]+ batch \d+: started")
_TASK = re.compile(
    rb"Task hybrid_search\.ingest_batch\[([0-9a-f-]+)\] (received|succeeded|retry|raised|rejected)"
)


class Worker:
    """One ``hybrid-search workers`` process (concurrency 1: a main process and one pool process), leading its
    own process group so that it can be SIGKILLed whole."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, name: str) -> None:
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.log = log_dir / f"worker-{self.name}.log"
        self.env = {**os.environ, **env, "HYBRID_SEARCH_WORKER_CONCURRENCY": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.offset = 0  # where this start's output begins in the log

    def start(self, *, wait: bool = True) -> Worker:
        """Start it through the library (its command line and allocator settings); ``wait``: until ready."""
        self.offset = log_offset(self.log)
        # a node name of its own: Celery warns about duplicates
        self.process = start_worker(self.log, env=self.env, node=f"{self.name}@%h", wait_s=None)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = 180) -> None:
        if wait_until_ready(self.log, self.alive, offset=self.offset, timeout_s=timeout_s, poll_s=0.2):
            return
        if not self.alive():
            pytest.fail(f"worker {self.name} exited; its log:\n{self.tail()}", pytrace=False)
        pytest.fail(
            f"timed out after {timeout_s:.0f}s waiting for worker {self.name} to be ready", pytrace=False
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pool_pids(self) -> list[int]:
        """The pool processes (children of the main process) running now."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == self.pid and fields[0] != "Z":
                children.append(int(stat.parent.name))
        return children

    def tasks(self) -> list[tuple[str, str]]:
        """``(task id, event)`` for each task line of the log, in order."""
        return [(m.group(1).decode(), m.group(2).decode()) for m in _TASK.finditer(self.log.read_bytes())]

    def busy(self) -> bool:
        """The pool process has started a batch that has not ended (succeeded, retried, failed, or gone with a
        killed pool process) yet: the worker is in the middle of one (concurrency 1: one batch at a time)."""
        busy = False
        for line in self.log.read_bytes().splitlines():
            if _STARTED.search(line):
                busy = True
            elif b"WorkerLostError" in line or b"exited with 'signal" in line:
                busy = False
            else:
                found = _TASK.search(line)
                if found is not None and found.group(2) != b"received":
                    busy = False
        return busy

    def kill_pool(self) -> list[int]:
        """SIGKILL the pool process (what the OOM killer does to the process holding the model)."""
        pids = self.pool_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool, no chance to hand anything back."""
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # a pool process left behind, if any

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@contextmanager
def workers(env: Mapping[str, str], log_dir: Path, count: int, name: str = "w") -> Iterator[list[Worker]]:
    """``count`` workers, started in parallel and ready; every worker in the list (also those added later) is
    stopped afterwards."""
    started = [Worker(env, log_dir, f"{name}{n}").start(wait=False) for n in range(count)]
    running = list(started)
    try:
        for worker in started:
            worker.wait_ready()
        yield running
    finally:
        for worker in running:
            worker.stop()


def delivery_figures(all_workers: list[Worker]) -> dict[str, int]:
    """From the workers' logs: batches received, redelivered (the same task received again, not by a retry),
    retried after an error, and recorded a second time (finish_batch refused to count them twice)."""
    events = [e for w in all_workers for e in w.tasks()]
    received = Counter(task for task, event in events if event == "received")
    retries = sum(1 for _task, event in events if event == "retry")
    again = sum(w.log.read_bytes().count(b"was delivered again: already counted") for w in all_workers)
    return {
        "batches_received": sum(received.values()),
        "batches_redelivered": max(0, sum(received.values()) - len(received) - retries),
        "retries": retries,
        "batches_already_counted_on_redelivery": again,
    }


# ---- the catalogue ------------------------------------------------------------------------------------------


def luma_jsonl(
    folder: Path, *, limit: int | None = None, skip: int = 0, name: str = "catalogue.jsonl"
) -> tuple[Path, list[str]]:
    """Luma products ``skip`` to ``skip + limit`` as JSONL (absolute photo paths); the file and their ids."""
    products = list(luma_products().values())[skip:]
    products = products[:limit] if limit is not None else products
    path = folder / name
    path.write_text("".join(json.dumps(p.to_input(luma_folder())) + "\n" for p in products))
    return path, [p.id for p in products]


def luma_with_bad_records(folder: Path, limit: int | None = None, skip: int = 0) -> tuple[Path, list[str]]:
    """The Luma catalogue as JSONL (absolute photo paths) with :data:`BAD_RECORDS` spread through it.

    Returns the file and the ids of the good products, which must all be indexed."""
    photo = next((luma_folder() / "pub/media/catalog/product/m/h").glob("*.jpg"))
    (folder / "broken.jpg").write_bytes(photo.read_bytes()[:300])
    (folder / "page.jpg").write_bytes(b"<!doctype html><html><body>not a photo</body></html>")
    path, ids = luma_jsonl(folder, limit=limit, skip=skip)
    lines = path.read_text().splitlines()
    bad = [
        json.dumps({"id": "bad-no-title", "images": [str(photo)]}),
        json.dumps({"id": "bad-price", "title": "Bad price", "price": "twelve"}),
        json.dumps({"id": "bad-truncated-photo", "title": "Truncated photo", "images": ["broken.jpg"]}),
        json.dumps({"id": "bad-html-photo", "title": "A page, not a photo", "images": ["page.jpg"]}),
        "{not json",
    ]
    step = max(1, len(lines) // len(bad))
    for n, line in enumerate(bad):
        lines.insert(min(len(lines), n * step + step // 2 + n), line)
    path.write_text("\n".join(lines) + "\n")
    return path, ids


# ---- the index ----------------------------------------------------------------------------------------------


@contextmanager
def private_index(settings: Settings, prefix: str) -> Iterator[str]:
    """A new alias (``<prefix>-<random>-v1``) on the settings' engine, deleted afterwards with its dead letters."""
    alias = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with create_engine(settings) as engine:
        engine.create_index(alias, definition_from_settings(settings, encoder_records(settings)))
    try:
        yield alias
    finally:
        try:
            with create_engine(settings) as engine:
                for name in engine.versions(alias).values():
                    engine.delete_index(name)
            Tracker(connect(settings.redis_url)).clear_dead_letters(alias)
        except Exception as exc:  # the stack may be down after a failed test: nothing left to clean then
            print(f"cleanup of {alias}: {exc}")


def index_state(engine: SearchEngine, alias: str, expected: list[str]) -> dict[str, Any]:
    """Lost and duplicated products: the index against the catalogue's ids."""
    engine.refresh(alias)
    count = engine.count(alias)
    stored = engine.get_fields(alias, expected, ["id"])
    dups = engine.search(
        alias,
        SearchRequest(size=0, aggs={"ids": {"terms": {"field": "id", "min_doc_count": 2, "size": 10}}}),
    )["aggregations"]["ids"]["buckets"]
    extra = count - len(stored)
    return {
        "expected": len(expected),
        "indexed": count,
        "lost": len(set(expected) - set(stored)),
        "duplicates": len(dups) + max(0, extra),
        "mismatched_ids": sorted(i for i, doc in stored.items() if doc.get("id") != i)[:5],
    }


def check_dead_letters(settings: Settings, alias: str) -> list[str | None]:
    """The dead letters are exactly the deliberately bad records, each once, each with its reason."""
    letters = Tracker(connect(settings.redis_url)).dead_letters(alias, 1000)
    ids = [d.get("id") for d in letters]
    assert sorted(map(str, ids)) == sorted(map(str, BAD_RECORDS)), letters
    for letter in letters:
        assert BAD_RECORDS[letter.get("id")] in letter["reason"], letter
    return ids


# ---- figures ------------------------------------------------------------------------------------------------


def record_figures(test: str, figures: Mapping[str, Any]) -> None:
    """Add one test's figures to ``tests/artefacts/faults/summary.json`` (and print them)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        summary = json.loads(SUMMARY.read_text())
    except (OSError, ValueError):
        summary = {}
    summary[test] = {**figures, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RECORDED[test] = summary[test]
    SUMMARY.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"\nfault figures {test}: {json.dumps(dict(figures), sort_keys=True)}", flush=True)
