"""Which engines the tests run on, and the settings of each (shared by conftest.py and the test modules: a test
module imports these from here, never from ``conftest``, which names several files under tests/)."""

from __future__ import annotations

import os

from hybrid_search.settings import Settings, load_settings

ENGINES = ("opensearch", "elasticsearch")
ES_URL_VARIABLE = "HYBRID_SEARCH_TEST_ES_URL"
DEFAULT_ES_URL = "http://127.0.0.1:9400"


def elasticsearch_url() -> str:
    return os.environ.get(ES_URL_VARIABLE, DEFAULT_ES_URL).rstrip("/")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def engine_settings(kind: str) -> Settings:
    """Settings whose engine is ``kind``: OpenSearch from the environment, Elasticsearch at its test URL."""
    if kind == "elasticsearch":
        return load_settings(engine="elasticsearch", engine_url=elasticsearch_url())
    return load_settings(engine="opensearch")


__all__ = ["DEFAULT_ES_URL", "ENGINES", "ES_URL_VARIABLE", "elasticsearch_url", "engine_settings", "in_ci"]
