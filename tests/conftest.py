"""Shared fixtures. Integration tests need the local stack (`hybrid-search stack up`) and fail loudly without it.

The ``engine`` fixture runs every test that uses it once per engine (one adapter contract suite, two engines):

- ``opensearch``: the engine at ``HYBRID_SEARCH_ENGINE_URL`` (the local stack's OpenSearch node). Missing: a failure.
- ``elasticsearch``: the engine at ``HYBRID_SEARCH_TEST_ES_URL`` (default http://127.0.0.1:9400, started by
  ``hybrid-search stack up --engine elasticsearch``). Missing: skipped with the reason, except under ``CI=true``,
  where it is a failure like OpenSearch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engine_support import ENGINES, ES_URL_VARIABLE, elasticsearch_url, engine_settings, in_ci

from hybrid_search.engine import SearchEngine, create_engine
from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


def pytest_report_header(config: pytest.Config) -> list[str]:
    """One line per engine of the contract suite: what answers at its URL (version), or that nothing does."""
    lines = []
    for kind in ENGINES:
        try:
            url = engine_settings(kind).engine_url
        except HybridSearchError as exc:
            lines.append(f"engine {kind}: bad settings ({exc})")
            continue
        try:
            version = httpx.get(url + "/", timeout=2.0).json()["version"]
            found = f"{version.get('distribution', 'elasticsearch')} {version['number']}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            found = "not reachable"
        lines.append(f"engine {kind} at {url}: {found}")
    return lines


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[SearchEngine]:
    kind: str = request.param
    client: SearchEngine | None = None
    try:
        client = create_engine(engine_settings(kind))
        client.health(wait_for_status="yellow", timeout_s=30)
    except HybridSearchError as exc:
        if client is not None:
            client.close()
        if kind == "opensearch":
            pytest.fail(
                f"the engine is not reachable ({exc}); start it with `hybrid-search stack up`", pytrace=False
            )
        message = (
            f"Elasticsearch is not reachable at {elasticsearch_url()} ({exc}); start it with "
            f"`hybrid-search stack up --engine elasticsearch` or set {ES_URL_VARIABLE}"
        )
        if in_ci():
            pytest.fail(message + " (CI=true: every engine must run)", pytrace=False)
        pytest.skip(message)
    assert client is not None
    yield client
    client.close()


@pytest.fixture
def alias(engine: SearchEngine) -> Iterator[str]:
    """A unique alias for one test; every version created behind it is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    for index in engine.versions(name).values():
        engine.delete_index(index)
