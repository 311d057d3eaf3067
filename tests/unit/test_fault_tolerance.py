"""The settings and pure functions behind the guarantees under faults (the faults suite, tests/faults, runs them
against real processes): several engine URLs, the queue's visibility timeout and retry backoff, given-up batches."""

from __future__ import annotations

import pytest

from hybrid_search.engine import create_engine
from hybrid_search.engine.base import TRANSIENT_STATUSES
from hybrid_search.errors import ConfigurationError
from hybrid_search.ingest.queue import make_celery, retry_backoff_max, transport_options
from hybrid_search.settings import load_settings

pytestmark = pytest.mark.unit


def test_several_engine_urls_are_checked_one_by_one_and_all_reach_the_client() -> None:
    settings = load_settings(
        engine_url="http://127.0.0.1:9610, http://127.0.0.1:9611/ ,http://127.0.0.1:9612"
    )
    assert settings.engine_url == "http://127.0.0.1:9610,http://127.0.0.1:9611,http://127.0.0.1:9612"
    with create_engine(settings) as engine:
        hosts = [c.host for c in engine._client.transport.connection_pool.connections]  # type: ignore[attr-defined]
    assert sorted(hosts) == [f"http://127.0.0.1:{port}" for port in (9610, 9611, 9612)]  # shuffled: spread
    with pytest.raises(
        ConfigurationError, match="engine_url must start with http:// or https://, got 'ftp://b'"
    ):
        load_settings(engine_url="http://a:9200,ftp://b")
    with pytest.raises(ConfigurationError, match="must not carry credentials"):
        load_settings(engine_url="http://a:9200,http://user:secret@b:9200")
    with pytest.raises(ConfigurationError, match="got ''"):
        load_settings(engine_url="http://a:9200,")


@pytest.mark.parametrize(
    ("timeout", "restore_every", "backoff_max"),
    [(300.0, 10, 60), (20.0, 5, 10), (5.0, 1, 2), (3600.0, 10, 60)],
)
def test_visibility_timeout_sets_the_restore_sweep_and_caps_the_retry_backoff(
    timeout: float, restore_every: int, backoff_max: int
) -> None:
    settings = load_settings(ingest_visibility_timeout_s=timeout)
    assert transport_options(settings) == {
        "visibility_timeout": timeout,
        "unacked_restore_interval": restore_every,
        "unacked_restore_throttle": 1,
    }
    assert retry_backoff_max(settings) == backoff_max
    assert backoff_max < timeout  # a retry waiting in its worker is never delivered a second time meanwhile
    app = make_celery(settings)
    try:
        assert app.conf.broker_transport_options["visibility_timeout"] == timeout
        assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
        assert app.conf.worker_prefetch_multiplier == 1
    finally:
        app.close()


def test_visibility_timeout_bounds() -> None:
    assert load_settings().ingest_visibility_timeout_s == 300.0
    with pytest.raises(ConfigurationError, match="HYBRID_SEARCH_INGEST_VISIBILITY_TIMEOUT_S"):
        load_settings(ingest_visibility_timeout_s=1)


def test_transient_statuses_are_overload_and_recovery_only() -> None:
    assert frozenset({429, 502, 503, 504}) == TRANSIENT_STATUSES
    assert not {400, 401, 403, 404, 409, 500} & TRANSIENT_STATUSES


def test_a_batch_given_up_dead_letters_every_record_with_the_reason() -> None:
    from workers.tasks import _given_up

    report = _given_up(
        [{"id": "a", "title": "A"}, {"title": "no id"}, {"id": 7, "title": "number"}],
        ["c.jsonl#1", "c.jsonl#2"],
        "not indexed: the engine was unavailable",
    )
    assert report.summary()["failed"] == 3 and report.indexed == []
    assert [(f["id"], f["source"]) for f in report.failed] == [
        ("a", "c.jsonl#1"), (None, "c.jsonl#2"), ("7", "record 3"),
    ]  # fmt: skip
    assert {f["reason"] for f in report.failed} == {"not indexed: the engine was unavailable"}
