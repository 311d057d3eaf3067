"""A property-based fuzz run of the OpenAPI schema (schemathesis) against a real server: no 5xx responses.

The server has an index of its own (empty) and a queue that no worker consumes, so fuzzed products are
accepted and queued but never processed (a fuzzed photo URL is never fetched); the queue is deleted afterwards.
``GET /health`` is left out: it takes no input, and without a worker it answers 503 by design (tested in
``test_api.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from api_support import ARTEFACTS, api_server, server_env

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import create_engine, definition_from_settings
from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]


@pytest.fixture(scope="module")
def empty_index(settings: Settings) -> Iterator[str]:
    alias = f"test-schema-{uuid.uuid4().hex[:8]}"
    with create_engine(settings) as engine:
        engine.create_index(alias, definition_from_settings(settings, encoder_records(settings)))
        try:
            yield alias
        finally:
            for name in engine.versions(alias).values():
                engine.delete_index(name)


def test_fuzzing_the_openapi_schema_finds_no_server_error(settings: Settings, empty_index: str) -> None:
    queue = f"test-schema-{uuid.uuid4().hex[:8]}"
    report = ARTEFACTS / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    try:
        with api_server(server_env(empty_index, queue), "test-schema") as server:
            run = subprocess.run(
                [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                 "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "20261126",
                 "--exclude-path", "/health", "--request-timeout", "120", "--workers", "1",
                 "--report", "junit", "--report-junit-path", str(report / "junit.xml")],
                capture_output=True, text=True, timeout=1200,
            )  # fmt: skip
        output = run.stdout + run.stderr
        (report / "output.txt").write_text(output)
        assert run.returncode == 0, output[-6000:]
        assert "server error" not in output.lower(), output[-6000:]
        tested = [line for line in output.splitlines() if "generated" in line and "passed" in line]
        assert tested, output[-3000:]
    finally:
        client = redis.Redis.from_url(settings.redis_url)
        client.delete(queue)
        for key in client.scan_iter("hybrid-search:job:*"):
            if key.endswith(b":done"):
                continue
            raw = client.hget(key, "index")
            if raw is not None and raw.decode() == empty_index:
                client.delete(key, key + b":done")
        client.close()


def test_schema_documents_the_error_shape(settings: Settings) -> None:
    from hybrid_search.api import create_app

    schema = create_app(settings).openapi()
    assert json.dumps(schema)  # serialisable
    for path in ("/search", "/search/image", "/search/voice", "/products"):
        responses = schema["paths"][path]["post"]["responses"]
        for status in ("413", "415", "422", "503"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut"), (
                path,
                status,
            )
    assert Path(ARTEFACTS).is_relative_to(Path(__file__).resolve().parents[1])
