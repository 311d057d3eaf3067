"""Shared fixtures. Integration tests need the local stack (`hybrid-search stack up`) and fail loudly without it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hybrid_search.engine import SearchEngine, create_engine
from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[SearchEngine]:
    client = create_engine(settings)
    try:
        client.health(wait_for_status="yellow", timeout_s=30)
    except HybridSearchError as exc:
        pytest.fail(
            f"the engine is not reachable ({exc}); start it with `hybrid-search stack up`", pytrace=False
        )
    yield client
    client.close()


@pytest.fixture
def alias(engine: SearchEngine) -> Iterator[str]:
    """A unique alias for one test; every version created behind it is deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    for index in engine.versions(name).values():
        engine.delete_index(index)
