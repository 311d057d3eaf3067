"""Fine-tune then reindex, for real: judgments -> ``hybrid-search finetune`` -> a new model folder -> workers
running that model -> ``hybrid-search reindex`` -> a new index version that records the model, alias swapped.

Real MiniLM (a short CPU training run), real Celery workers on a private queue, Redis and OpenSearch. The catalogue
is 40 Home Depot titles with their dev judgments (read from ../shared/datasets).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import Worker, datasets

from hybrid_search.engine import create_engine
from hybrid_search.evaluation.data import read_qrels, read_queries
from hybrid_search.ingest.tracking import connect
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hybrid_search.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small catalogue of judged Home Depot titles, with its queries and judgments."""
    hd = datasets() / "homedepot"
    if not (hd / "products.csv").is_file():
        pytest.fail(f"the Home Depot data is missing: {hd} (see ../shared/datasets/README.md)", pytrace=False)
    grades = read_qrels(hd / "qrels_dev.tsv")
    queries = {q.qid: q.text for q in read_queries(hd / "queries_dev.tsv")}
    chosen = [q for q in sorted(grades) if any(g >= 2.33 for g in grades[q].values())][:12]
    wanted = {d for q in chosen for d in grades[q]}
    folder = tmp_path_factory.mktemp("shop")
    with (hd / "products.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["product_uid"] in wanted]
    with (folder / "products.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["product_uid", "title"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in chosen))
    (folder / "qrels.tsv").write_text(
        "".join(f"{q}\t{d}\t{g}\n" for q in chosen for d, g in grades[q].items())
    )
    return {"catalogue": folder / "products.csv", "queries": folder / "queries.tsv", "qrels": folder / "qrels.tsv",
            "folder": folder}  # fmt: skip


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[dict[str, str]]:
    alias = f"test-finetune-{uuid.uuid4().hex[:8]}"
    queue = f"test-finetune-{uuid.uuid4().hex[:8]}"
    yield {**os.environ, "HYBRID_SEARCH_INDEX_ALIAS": alias, "HYBRID_SEARCH_INGEST_QUEUE": queue}
    with create_engine(settings) as engine:
        for index in engine.versions(alias).values():
            engine.delete_index(index)
    connect(settings.redis_url).delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


def run_ok(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = cli(env, *args, "--json")
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.timeout(1800)  # two worker start-ups, two ingestions and a training run on a shared 2-core host
def test_finetune_then_reindex_records_the_new_model_and_swaps_the_alias(
    shop: dict[str, Path], env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    alias = env["HYBRID_SEARCH_INDEX_ALIAS"]
    worker = Worker(env, tmp_path / "worker-zero-shot.log", prefix="finetune")
    try:
        first = run_ok(env, "ingest", str(shop["catalogue"]), "--wait")
    finally:
        worker.stop()
    products = first["indexed"]
    assert products >= 40 and first["dead_lettered"] == 0

    trained = run_ok(env, "finetune", str(shop["catalogue"]), "--queries", str(shop["queries"]),
                     "--qrels", str(shop["qrels"]), "--relevant-grade", "2.33", "--out", str(tmp_path / "models"),
                     "--epochs", "2", "--batch-size", "8", "--max-length", "24")  # fmt: skip
    folder = Path(trained["folder"])
    assert folder.is_dir() and (folder / "hybrid_search_model.json").is_file()
    assert (
        trained["pairs"] > 0
        and trained["steps"] > 0
        and trained["text_encoder"] == f"hf-text:{folder.resolve()}"
    )

    tuned_env = {**env, "HYBRID_SEARCH_TEXT_ENCODER": trained["text_encoder"]}
    worker = Worker(tuned_env, tmp_path / "worker-tuned.log", prefix="finetune")
    try:
        result = run_ok(tuned_env, "reindex", str(shop["catalogue"]))
    finally:
        worker.stop()
    assert result["indexed"] == products and result["dead_lettered"] == 0 and result["swapped"] is True

    with create_engine(settings) as engine:
        versions = engine.versions(alias)
        assert len(versions) == 2
        old, new = versions[min(versions)], versions[max(versions)]
        assert engine.resolve_alias(alias) == [new]
        before, after = engine.vector_records(old)["text_vector"], engine.vector_records(new)["text_vector"]
        assert before["encoder"].startswith("all-MiniLM") or "minilm" in before["encoder"].lower()
        assert after["version"] != before["version"]  # the index records which weights made its vectors
        assert engine.count(new) == products

    # searching the new index needs the new model: with it, results; with the old one, a clear refusal
    query = read_queries(shop["queries"])[0].text or ""
    found = run_ok(tuned_env, "search", query)
    assert found["hits"], found
    refused = cli(env, "search", query)
    assert refused.returncode != 0
    assert "encoder" in (refused.stdout + refused.stderr).lower()
