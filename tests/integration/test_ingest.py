"""Ingestion through real Celery workers and Redis into the real engine, with the real encoders.

A worker process (``hybrid-search workers``) is started on a queue of its own, so a developer's workers never
take these batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Worker

from hybrid_search.catalog import open_catalogue
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import create_engine, definition_from_settings
from hybrid_search.ingest.enqueue import enqueue_catalogue
from hybrid_search.ingest.jobs import wait_for_job
from hybrid_search.ingest.tracking import Tracker, connect
from hybrid_search.settings import Settings, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

DATASETS = Path(
    os.environ.get("HYBRID_SEARCH_DATASETS", Path(__file__).resolve().parents[3] / "shared" / "datasets")
)
LUMA = DATASETS / "luma"


@pytest.fixture(scope="module")
def luma() -> Path:
    if not (LUMA / "products_flat.csv").is_file():
        pytest.fail(f"the Luma catalogue is missing at {LUMA} (set HYBRID_SEARCH_DATASETS)", pytrace=False)
    return LUMA


@pytest.fixture(scope="module")
def queue_settings(luma: Path) -> Iterator[Settings]:
    """Settings of this module's worker: its own queue; photos may also come from the Luma folder."""
    queue = f"test-ingest-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "HYBRID_SEARCH_INGEST_QUEUE": queue,
        "HYBRID_SEARCH_IMAGE_ROOTS": json.dumps([str(luma)]),
    }
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"{queue}.log"
    worker = Worker(env, log, prefix="test-ingest")
    yield load_settings(ingest_queue=queue, image_roots=[luma])
    worker.stop()


@pytest.fixture(scope="module")
def index(queue_settings: Settings) -> Iterator[str]:
    alias = f"test-ingest-{uuid.uuid4().hex[:8]}"
    with create_engine(queue_settings) as engine:
        engine.create_index(alias, definition_from_settings(queue_settings, encoder_records(queue_settings)))
        yield alias
        for name in engine.versions(alias).values():
            engine.delete_index(name)
    Tracker(connect(queue_settings.redis_url)).clear_dead_letters(alias)


def ingest(settings: Settings, path: Path, index: str) -> dict[str, Any]:
    job = enqueue_catalogue(settings, open_catalogue(path), index=index, batch_size=16)
    result = wait_for_job(settings, job, timeout_s=600)
    with create_engine(settings) as engine:
        engine.refresh(index)
    return result


def luma_jsonl(luma: Path, target: Path, change: dict[str, dict[str, Any]] | None = None) -> Path:
    """The Luma catalogue as JSONL with absolute photo paths, optionally with some fields changed."""
    with target.open("w") as out:
        for product in open_catalogue(luma).records():
            record = product.to_input(luma)  # type: ignore[union-attr]
            record.update((change or {}).get(record["id"], {}))
            out.write(json.dumps(record) + "\n")
    return target


def test_luma_catalogue_through_workers(
    queue_settings: Settings, index: str, luma: Path, tmp_path: Path
) -> None:
    expected = sorted(p.id for p in open_catalogue(luma).records())  # type: ignore[union-attr]
    assert len(expected) == 199

    first = ingest(queue_settings, luma, index)
    assert (first["read"], first["indexed"], first["dead_lettered"]) == (199, 199, 0)
    assert (first["text_embedded"], first["images_embedded"]) == (199, 199)
    with create_engine(queue_settings) as engine:
        assert engine.count(index) == 199
        stored = engine.get_fields(
            index, expected, ["id", "text_vector", "image_vector", "colour_vector", "fused_vector"]
        )
        assert sorted(stored) == expected
        for doc in stored.values():
            assert len(doc["text_vector"]) == 384
            assert len(doc["image_vector"]) == 1280
            assert len(doc["colour_vector"]) == 1024  # colour-hellinger: HSV 16x8x8
            assert len(doc["fused_vector"]) == 384 + 1280

    again = ingest(queue_settings, luma, index)
    assert (again["indexed"], again["skipped_unchanged"]) == (199, 199)
    assert (again["text_embedded"], again["images_embedded"]) == (0, 0)

    changed = luma_jsonl(
        luma, tmp_path / "luma.jsonl", {"MH01": {"title": "Chaz Kangaroo Hoodie, new edition"}}
    )
    third = ingest(queue_settings, changed, index)
    assert (third["indexed"], third["text_embedded"], third["images_embedded"]) == (199, 1, 0)
    with create_engine(queue_settings) as engine:
        assert engine.get_document(index, "MH01")["title"] == "Chaz Kangaroo Hoodie, new edition"  # type: ignore[index]
        assert engine.count(index) == 199


def test_poisoned_records_are_dead_lettered_and_the_rest_lands(
    queue_settings: Settings, index: str, luma: Path, tmp_path: Path
) -> None:
    photo = next((luma / "pub/media/catalog/product/m/h").glob("*.jpg"))
    (tmp_path / "broken.jpg").write_bytes(photo.read_bytes()[:300])
    (tmp_path / "page.jpg").write_bytes(b"<!doctype html><html><body>not a photo</body></html>")
    (tmp_path / "good.jpg").write_bytes(photo.read_bytes())
    good = [
        {"id": f"ok-{n}", "title": f"Good product {n}", "images": ["good.jpg"], "price": 10 + n}
        for n in range(3)
    ]
    poisoned = [
        {"title": "no id"},
        {"id": "no-title"},
        {"id": "bad-price", "title": "Bad price", "price": "twelve"},
        {"id": "truncated-photo", "title": "Truncated", "images": ["broken.jpg"]},
        {"id": "html-photo", "title": "HTML", "images": ["page.jpg"]},
        {"id": "escape", "title": "Escape", "images": ["../../../../etc/passwd"]},
        {"id": "loopback", "title": "Loopback", "images": ["http://127.0.0.1:9200/"]},
        {"id": "metadata", "title": "Metadata", "images": ["http://169.254.169.254/latest/meta-data/"]},
        {"id": "file-url", "title": "File URL", "images": ["file:///etc/passwd"]},
        {"id": "ok-0", "title": "Duplicate of ok-0"},
    ]
    catalogue = tmp_path / "poisoned.jsonl"
    catalogue.write_text("".join(json.dumps(r) + "\n" for r in [*good, *poisoned]) + "{not json\n")
    tracker = Tracker(connect(queue_settings.redis_url))
    tracker.clear_dead_letters(index)

    result = ingest(queue_settings, catalogue, index)

    assert result["indexed"] == 3
    assert result["dead_lettered"] == len(poisoned) + 1
    letters = [(str(d["id"]), d["reason"]) for d in tracker.dead_letters(index, 100)]
    expected = {
        "None": "id: Field required",
        "no-title": "title: Field required",
        "bad-price": "price must be a number",
        "truncated-photo": "corrupt jpeg",
        "html-photo": "unsupported format: html",
        "escape": "outside the catalogue folder",
        "loopback": "address not allowed",
        "metadata": "address not allowed",
        "file-url": "scheme not allowed",
        "ok-0": "duplicate id",
    }
    for doc_id, fragment in expected.items():
        assert any(i == doc_id and fragment in reason for i, reason in letters), (doc_id, fragment, letters)
    assert any(i == "None" and "not valid JSON" in reason for i, reason in letters), letters
    with create_engine(queue_settings) as engine:
        assert sorted(engine.get_fields(index, [g["id"] for g in good], ["id"])) == ["ok-0", "ok-1", "ok-2"]


def test_reindex_fills_a_new_version_and_swaps_the_alias(
    queue_settings: Settings, luma: Path, tmp_path: Path
) -> None:
    alias = f"test-reindex-{uuid.uuid4().hex[:8]}"
    photo = next((luma / "pub/media/catalog/product/m/h").glob("*.jpg"))
    (tmp_path / "p.jpg").write_bytes(photo.read_bytes())
    catalogue = write_jsonl_records(
        tmp_path / "c.jsonl",
        [{"id": f"r{n}", "title": f"Trail jacket {n}", "images": ["p.jpg"]} for n in range(5)],
    )
    env = {
        **os.environ,
        "HYBRID_SEARCH_INDEX_ALIAS": alias,
        "HYBRID_SEARCH_INGEST_QUEUE": queue_settings.ingest_queue,
    }
    cli = [sys.executable, "-m", "hybrid_search.cli"]
    try:
        first = subprocess.run([*cli, "ingest", str(catalogue), "--wait", "--json"], env=env, capture_output=True,
                               text=True, timeout=300, check=True)  # fmt: skip
        assert json.loads(first.stdout)["indexed"] == 5
        with create_engine(queue_settings) as engine:
            assert engine.resolve_alias(alias) == [f"{alias}-v1"]
        done = subprocess.run([*cli, "reindex", str(catalogue), "--json"], env=env, capture_output=True, text=True,
                              timeout=300, check=True)  # fmt: skip
        result = json.loads(done.stdout)
        assert (result["index"], result["indexed"], result["text_embedded"], result["swapped"]) == (
            f"{alias}-v2", 5, 5, True,
        )  # fmt: skip
        with create_engine(queue_settings) as engine:
            assert engine.resolve_alias(alias) == [f"{alias}-v2"]
            assert engine.count(alias) == 5
            assert engine.count(f"{alias}-v1") == 5  # the old version stays until deleted
    finally:
        with create_engine(queue_settings) as engine:
            for name in engine.versions(alias).values():
                engine.delete_index(name)


def write_jsonl_records(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_workers_started_without_a_name_answer_each_for_their_own_queue(tmp_path: Path) -> None:
    """Two workers on one host, neither given a node name: each gets one of its own, so a remote control
    broadcast (what ``/health`` asks) hears both, and each for its own queue (with Celery's shared default
    name, one reply replaced the other and ``/health`` missed a worker that was consuming)."""
    from hybrid_search.ingest.workers import start_worker, stop_worker, workers_on_queue

    queues = [f"test-names-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    started = []
    try:
        for queue in queues:
            env = {**os.environ, "HYBRID_SEARCH_INGEST_QUEUE": queue}
            started.append(start_worker(tmp_path / f"{queue}.log", env=env))
        names = [workers_on_queue(load_settings(ingest_queue=queue), timeout_s=5.0) for queue in queues]
    finally:
        for worker in started:
            stop_worker(worker)
    assert [len(n) for n in names] == [1, 1], names
    assert names[0] != names[1] and all(n[0].startswith("ingest-") for n in names), names
