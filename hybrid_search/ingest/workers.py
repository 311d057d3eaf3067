"""Ingestion worker processes: how one is started, how it is known to be ready, and what it sets up for itself.

A worker is ``python -m hybrid_search.cli workers``: Celery (:mod:`workers.app`) consuming the ingest queue.
Everything that starts one (the ``workers`` command re-executing itself, ``hybrid-search run``, ``hybrid-search
stack up``, the tests) takes its command line and environment from :func:`worker_command`, so every worker runs
with glibc's allocator settings (:data:`WORKER_ENV`), which glibc reads at start-up only, and each waits for it
with :func:`wait_until_ready`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, get_settings

# glibc allocator settings for worker processes: without them batched CPU inference spends most of its time in
# page faults (see hybrid_search/encoders/image.py). glibc reads them at start-up only.
WORKER_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}
KEEP_MALLOC_ENV = "HYBRID_SEARCH_KEEP_MALLOC"  # "1": the `workers` command keeps the allocator as it finds it
CONCURRENCY_ENV = "HYBRID_SEARCH_WORKER_CONCURRENCY"
CLI_MODULE = "hybrid_search.cli"
WORKER_MARKER = f"{CLI_MODULE} workers"  # in every worker's command line: how a pid is recognised as a worker
READY = b" ready."  # what Celery logs once the worker consumes its queues


@dataclass(frozen=True)
class WorkerCommand:
    """The command line and the environment of one worker process."""

    argv: tuple[str, ...]
    env: dict[str, str]


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) with :data:`WORKER_ENV` for the variables it does not set."""
    return {**WORKER_ENV, **(os.environ if env is None else env)}


def worker_command(
    *, env: Mapping[str, str] | None = None, node: str | None = None, loglevel: str = "info"
) -> WorkerCommand:
    """How to start one worker: this interpreter running ``hybrid_search.cli workers``.

    ``env``: the environment it starts from (default: this process's), completed by :func:`worker_env`.
    ``node``: a Celery node name of its own (``name@%h``); Celery warns about two workers with one name.
    """
    argv = [sys.executable, "-m", CLI_MODULE, "workers", "--loglevel", loglevel]
    if node is not None:
        argv += ["-n", node]
    return WorkerCommand(tuple(argv), worker_env(env))


def log_offset(log: Path) -> int:
    """Where output written to ``log`` from now on starts (its size; 0 when it does not exist yet)."""
    return log.stat().st_size if log.exists() else 0


def says_ready(log: Path, offset: int = 0) -> bool:
    """Whether the worker's log, from ``offset`` on, says that it is ready."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            return READY in handle.read()
    except FileNotFoundError:
        return False


def wait_until_ready(
    log: Path,
    alive: Callable[[], bool],
    *,
    offset: int = 0,
    timeout_s: float = 180.0,
    poll_s: float = 0.5,
) -> bool:
    """Poll the worker's log (from ``offset``) until it says ready: True; False once ``alive()`` says it exited
    or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not says_ready(log, offset):
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def tail_of(log: Path, chars: int = 2000) -> str:
    """The end of a worker's log, for an error message."""
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def start_worker(
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    node: str | None = None,
    loglevel: str = "info",
    wait_s: float | None = 180.0,
) -> subprocess.Popen[bytes]:
    """Start one worker (:func:`worker_command`) as a child process, its output appended to ``log``.

    It leads a session of its own, so that it and its pool processes can be signalled as one process group. With
    ``wait_s``, returns once its log says it is ready, else kills it and raises :class:`HybridSearchError` with
    the log's end; with ``wait_s=None``, returns at once (then :func:`wait_until_ready`).
    """
    command = worker_command(env=env, node=node, loglevel=loglevel)
    log.parent.mkdir(parents=True, exist_ok=True)
    offset = log_offset(log)
    with log.open("ab") as out:
        worker = subprocess.Popen(  # noqa: S603 - this same program with fixed arguments
            list(command.argv),
            env=command.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if wait_s is not None and not wait_until_ready(
        log, lambda: worker.poll() is None, offset=offset, timeout_s=wait_s
    ):
        worker.kill()
        worker.wait()
        raise HybridSearchError(f"the worker did not start (log {log}):\n{tail_of(log)}")
    return worker


def stop_worker(worker: subprocess.Popen[Any], *, timeout_s: float = 30.0) -> None:
    """SIGTERM (Celery's warm shutdown: the batch in hand is finished), then SIGKILL after ``timeout_s``."""
    worker.terminate()
    try:
        worker.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def workers_on_queue(settings: Settings, timeout_s: float = 2.0) -> list[str]:
    """Names of the Celery workers that consume the settings' ingest queue."""
    from hybrid_search.ingest.queue import make_celery

    app = make_celery(settings)
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    finally:
        app.close()
    return [
        name
        for name, queues in replies.items()
        if any(q.get("name") == settings.ingest_queue for q in queues)
    ]


# ---- inside the worker process ----------------------------------------------------------------------------


def reexec_with_worker_env(args: Sequence[str]) -> None:
    """Run ``python -m hybrid_search.cli <args>`` again in place of this process, with :data:`WORKER_ENV`, unless
    the environment has it already or ``HYBRID_SEARCH_KEEP_MALLOC=1``. Does not return when it re-executes."""
    if all(k in os.environ for k in WORKER_ENV) or os.environ.get(KEEP_MALLOC_ENV) == "1":
        return
    os.execvpe(sys.executable, [sys.executable, "-m", CLI_MODULE, *args], worker_env())  # noqa: S606


def share_concurrency(concurrency: int) -> None:
    """Tell this worker's pool processes, which read their settings from the environment, how many they are:
    it decides their torch threads (:func:`worker_torch_threads`)."""
    os.environ[CONCURRENCY_ENV] = str(concurrency)
    get_settings.cache_clear()


def celery_worker_argv(
    settings: Settings,
    *,
    concurrency: int | None = None,
    queues: str | None = None,
    loglevel: str = "info",
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery worker`` arguments of an ingestion worker: one prefetched task per process (with late
    acknowledgement, a killed process's batch is redelivered), no gossip or mingle between workers.

    Unless ``extra`` names the node (``-n``/``--hostname``), it is ``ingest-<pid>@<host>``: unique on its host.
    Celery's default (``celery@<host>``) is the same for every worker of a host, and the replies of a remote
    control broadcast are keyed by node name, so one worker's reply would hide another's (``/health`` would
    then miss the worker that consumes its queue).
    """
    named = any(a in ("-n", "--hostname") or a.startswith(("-n", "--hostname=")) for a in extra)
    return [
        "worker",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={queues or settings.ingest_queue}",
        f"--loglevel={loglevel}",
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        *([] if named else [f"--hostname=ingest-{os.getpid()}@%h"]),
        *extra,
    ]


def worker_torch_threads(settings: Settings, cores: int | None = None) -> int:
    """Torch intra-op threads for one worker process: the setting, or the CPU cores shared out between processes.

    Several single-threaded processes beat one process with as many threads: each process's engine round trips
    and bookkeeping (waiting on a bulk write, Redis) then overlap with another process's inference instead of
    leaving the cores idle, and oversubscribed threads (processes x threads > cores) spin waiting for each other.
    """
    if settings.worker_torch_threads > 0:
        return settings.worker_torch_threads
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // settings.worker_concurrency)


def apply_worker_threads(settings: Settings) -> int:
    """Set torch's intra-op threads in this worker process (see :func:`worker_torch_threads`); returns them."""
    threads = worker_torch_threads(settings)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the workers extra
        return threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


__all__ = [
    "WORKER_ENV",
    "WORKER_MARKER",
    "WorkerCommand",
    "apply_worker_threads",
    "celery_worker_argv",
    "log_offset",
    "reexec_with_worker_env",
    "says_ready",
    "share_concurrency",
    "start_worker",
    "stop_worker",
    "tail_of",
    "wait_until_ready",
    "worker_command",
    "worker_env",
    "worker_torch_threads",
    "workers_on_queue",
]
