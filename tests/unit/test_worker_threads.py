"""Torch threads per worker process: the setting, else the cores shared out between the worker processes."""

from __future__ import annotations

import pytest

from hybrid_search.ingest.workers import worker_torch_threads
from hybrid_search.settings import load_settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("concurrency", "cores", "threads"),
    [(1, 2, 2), (2, 2, 1), (3, 2, 1), (2, 8, 4), (3, 8, 2), (1, 1, 1)],
)
def test_cores_are_shared_out_between_processes(concurrency: int, cores: int, threads: int) -> None:
    settings = load_settings(worker_concurrency=concurrency)
    assert worker_torch_threads(settings, cores=cores) == threads


def test_the_setting_wins() -> None:
    settings = load_settings(worker_concurrency=4, worker_torch_threads=3)
    assert worker_torch_threads(settings, cores=2) == 3


def test_without_cores_given_it_reads_this_machine() -> None:
    assert worker_torch_threads(load_settings(worker_concurrency=1)) >= 1
