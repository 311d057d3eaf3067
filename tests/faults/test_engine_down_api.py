"""The HTTP API (a real ``hybrid-search serve`` process) started while its engine is down, then the engine comes
back: ``/health`` says the engine is down (503 with ``Retry-After``, the other components up), a search is a 503
with a message naming the engine, and both recover by themselves once the engine is back, with no restart."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import api_server
from fault_support import FaultStack, luma_jsonl, private_index, record_figures, wait_until, workers

from hybrid_search.catalog import open_catalogue
from hybrid_search.ingest.enqueue import enqueue_catalogue
from hybrid_search.ingest.jobs import wait_for_job

pytestmark = [pytest.mark.faults, pytest.mark.models]


def test_api_with_the_engine_down_answers_503_and_recovers_by_itself(
    fault_stack: FaultStack, tmp_path: Path
) -> None:
    settings, env = fault_stack.settings_for(ingest_queue=f"faults-api-{uuid.uuid4().hex[:8]}")
    catalogue, ids = luma_jsonl(tmp_path, limit=24)
    engine_address = fault_stack.engine_url
    with private_index(settings, "faults-api") as alias, workers(env, tmp_path, 1, "api"):
        job = enqueue_catalogue(settings, open_catalogue(catalogue), index=alias, batch_size=8)
        assert wait_for_job(settings, job, timeout_s=300)["indexed"] == len(ids)
        fault_stack.stop_engine()
        try:
            with api_server({**env, "HYBRID_SEARCH_INDEX_ALIAS": alias}, "faults-api") as server:
                http = httpx.Client(base_url=server.url, timeout=60.0)
                down = http.get("/health")
                assert down.status_code == 503, down.text
                assert down.headers["retry-after"] == "5"
                components = down.json()["components"]
                assert components["engine"]["up"] is False
                assert f"cannot reach OpenSearch at {engine_address}" in components["engine"]["detail"]
                assert all(c["up"] for name, c in components.items() if name != "engine"), components

                refused = http.post("/search", json={"text": "jacket"})
                assert refused.status_code == 503, refused.text
                error = refused.json()["error"]
                assert (error["status"], error["code"]) == (503, "engine_unavailable"), error
                assert error["message"].startswith(f"cannot reach OpenSearch at {engine_address}"), error
                assert "connection refused" in error["message"], error

                restarting = time.monotonic()
                fault_stack.start_engine()
                engine_back = time.monotonic()
                statuses: list[int] = []

                def healthy() -> bool:
                    response = http.get("/health")
                    statuses.append(response.status_code)
                    return response.status_code == 200

                recovery_s = wait_until(healthy, 120, "/health to recover", poll_s=0.5)
                found = http.post("/search", json={"text": "jacket", "size": 5})
                assert found.status_code == 200, found.text
                hits: list[dict[str, Any]] = found.json()["hits"]
                assert hits and {h["id"] for h in hits} <= set(ids), hits
                http.close()
        finally:
            fault_stack.start_engine()  # the next test needs it, whatever happened here
    record_figures(
        "api_engine_down",
        {
            "health_while_down": down.status_code,
            "search_while_down": f"{refused.status_code} {error['code']}: {error['message']}",
            "engine_restart_s": round(engine_back - restarting, 1),
            "api_healthy_after_engine_up_s": round(recovery_s, 1),
            "health_polls_until_ok": len(statuses),
            "search_after_recovery": found.status_code,
            "api_restarted": False,
        },
    )
