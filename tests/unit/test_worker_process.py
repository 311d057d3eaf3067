"""Starting a worker: one command line and environment for everyone, readiness read from its log, the ``celery
worker`` arguments; and the two small pure pieces of following a job and saving a tuned configuration."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

import pytest

from hybrid_search.evaluation.data import fingerprint
from hybrid_search.evaluation.tuned import tuned_config
from hybrid_search.evaluation.tuning import Fold, FusionConfig, TuneReport
from hybrid_search.ingest.enqueue import Job
from hybrid_search.ingest.jobs import progress, summary
from hybrid_search.ingest.workers import (
    WORKER_ENV,
    WORKER_MARKER,
    celery_worker_argv,
    log_offset,
    says_ready,
    wait_until_ready,
    worker_command,
    worker_env,
)
from hybrid_search.settings import load_settings

pytestmark = pytest.mark.unit


def test_the_worker_command_is_this_interpreter_running_the_cli() -> None:
    command = worker_command(env={}, loglevel="warning")
    assert command.argv == (sys.executable, "-m", "hybrid_search.cli", "workers", "--loglevel", "warning")
    assert WORKER_MARKER in " ".join(command.argv)  # how the stack recognises its worker's pid
    named = worker_command(env={}, node="w1@%h")
    assert named.argv[-2:] == ("-n", "w1@%h")


def test_the_allocator_settings_fill_in_what_the_environment_lacks() -> None:
    env = worker_env({"HYBRID_SEARCH_INGEST_QUEUE": "q", "MALLOC_TOP_PAD_": "7"})
    assert env["HYBRID_SEARCH_INGEST_QUEUE"] == "q"
    assert env["MALLOC_TOP_PAD_"] == "7"  # the caller's own value wins
    assert {k: env[k] for k in WORKER_ENV if k != "MALLOC_TOP_PAD_"} == {
        k: v for k, v in WORKER_ENV.items() if k != "MALLOC_TOP_PAD_"
    }
    assert worker_command(env={"A": "1"}).env == {**WORKER_ENV, "A": "1"}


def test_readiness_is_read_from_the_log_after_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    assert log_offset(log) == 0 and not says_ready(log)
    log.write_bytes(b"[2024] celery@host ready.\n")
    assert says_ready(log)
    offset = log_offset(log)
    assert not says_ready(log, offset)  # an earlier run's line does not count
    with log.open("ab") as handle:
        handle.write(b"starting\n[2025] celery@host ready.\n")
    assert says_ready(log, offset)


def test_waiting_ends_when_ready_when_the_worker_exits_or_at_the_deadline(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_bytes(b"celery@host ready.\n")
    assert wait_until_ready(log, lambda: True, timeout_s=5, poll_s=0.01)
    offset = log_offset(log)
    started = time.monotonic()
    assert not wait_until_ready(log, lambda: False, offset=offset, timeout_s=30, poll_s=0.01)
    assert time.monotonic() - started < 5  # an exited worker is not waited for
    assert not wait_until_ready(log, lambda: True, offset=offset, timeout_s=0.05, poll_s=0.01)


def test_celery_worker_arguments_default_to_the_settings() -> None:
    settings = load_settings(worker_concurrency=3, ingest_queue="products-q")
    assert celery_worker_argv(settings) == [
        "worker", "--concurrency=3", "--queues=products-q", "--loglevel=info", "--prefetch-multiplier=1",
        "--without-gossip", "--without-mingle", f"--hostname=ingest-{os.getpid()}@%h",
    ]  # fmt: skip
    # a node name given is kept, and no other is added
    given = celery_worker_argv(settings, concurrency=1, queues="a,b", loglevel="debug", extra=["-n", "x@%h"])
    assert not any(a.startswith("--hostname") for a in given)
    assert given[1:4] == ["--concurrency=1", "--queues=a,b", "--loglevel=debug"] and given[-2:] == [
        "-n",
        "x@%h",
    ]


def test_progress_and_summary_count_the_invalid_records_as_failed() -> None:
    settings = load_settings(redis_url="redis://:secret@127.0.0.1:6379/0")
    job = Job("j1", "products", read=10, read_errors=2, batches=3)
    state = {"indexed": 6, "failed": 1, "unchanged": 4, "text_embedded": 2, "images_embedded": 1}
    assert progress(job, state) == (7, 3)
    assert progress(job, {}) == (0, 2)
    result = summary(settings, job, state)
    assert {k: result[k] for k in ("read", "indexed", "skipped_unchanged", "dead_lettered")} == {
        "read": 12, "indexed": 6, "skipped_unchanged": 4, "dead_lettered": 3,
    }  # fmt: skip


def _report() -> TuneReport:
    configs = [
        FusionConfig("linear", (("bm25", 0.3), ("text_knn", 0.7)), 100, normaliser="minmax"),
        FusionConfig("rrf", (("bm25", 0.5), ("text_knn", 0.5)), 100, rank_constant=60.0),
    ]
    folds = [Fold(1, 0, 0.6, 0.5, (0, 1)), Fold(2, 0, 0.7, 0.3, (2, 3))]
    return TuneReport(metric="ndcg@10", qids=["q1", "q2", "q3", "q4"], configs=configs, families={"all": folds},
                      best=0, best_mean=0.62, held_out={}, baseline="bm25 alone")  # fmt: skip


def test_the_tuned_configuration_is_the_best_one_and_how_it_was_found() -> None:
    at = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    saved = tuned_config(_report(), folds=2, at=at)
    assert {k: saved[k] for k in ("fusion", "normaliser", "rank_window", "weights")} == {
        "fusion": "linear", "normaliser": "minmax", "rank_window": 100, "weights": {"bm25": 0.3, "text_knn": 0.7},
    }  # fmt: skip
    assert saved["tuning"] == {
        "metric": "ndcg@10", "queries": 4, "queries_fingerprint": fingerprint(["q1", "q2", "q3", "q4"]),
        "folds": 2, "configurations": 2, "fit_mean": 0.62, "cv_mean": pytest.approx(0.4),
        "at": "2025-01-02T03:04:05+00:00",
    }  # fmt: skip


def test_a_fitted_model_decides_the_fusion_of_the_saved_configuration() -> None:
    fitted = {"fusion": "learned", "rank_window": 200, "learned": {"kind": "ranker"}}
    saved = tuned_config(_report(), folds=2, fitted=fitted)
    assert (
        saved["fusion"] == "learned"
        and saved["rank_window"] == 200
        and saved["learned"] == {"kind": "ranker"}
    )
    assert saved["weights"] == {"bm25": 0.3, "text_knn": 0.7}  # the best global weights stay beside the model
