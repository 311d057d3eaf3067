from __future__ import annotations

from pathlib import Path

import pytest

from hybrid_search.errors import ConfigurationError
from hybrid_search.settings import load_settings

pytestmark = pytest.mark.unit


def test_defaults_are_the_local_stack() -> None:
    s = load_settings()
    assert s.engine == "opensearch"
    assert s.engine_url.startswith("http://127.0.0.1:")
    assert s.index_alias == "products"


def test_environment_variables_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE", "elasticsearch")
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_URL", "https://search.example.com:9243/")
    monkeypatch.setenv("HYBRID_SEARCH_INDEX_ALIAS", "shop")
    monkeypatch.setenv("HYBRID_SEARCH_FUSION_RANK_WINDOW", "250")
    s = load_settings()
    assert (s.engine, s.engine_url, s.index_alias, s.fusion_rank_window) == (
        "elasticsearch",
        "https://search.example.com:9243",
        "shop",
        250,
    )


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        (
            "HYBRID_SEARCH_ENGINE_URL",
            "ftp://host",
            "HYBRID_SEARCH_ENGINE_URL: Value error, engine_url must start",
        ),
        ("HYBRID_SEARCH_ENGINE_URL", "http://:9200", "has no host"),
        ("HYBRID_SEARCH_ENGINE_URL", "http://host:99999", "bad port"),
        ("HYBRID_SEARCH_ENGINE", "solr", "HYBRID_SEARCH_ENGINE:"),
        ("HYBRID_SEARCH_INDEX_ALIAS", "Products", "not a valid index name"),
        ("HYBRID_SEARCH_FUSION_RANK_CONSTANT", "0", "HYBRID_SEARCH_FUSION_RANK_CONSTANT"),
        ("HYBRID_SEARCH_ENGINE_CA_CERTS", "/nonexistent/ca.pem", "no such file"),
        ("HYBRID_SEARCH_STACK_HEAP", "lots", "HYBRID_SEARCH_STACK_HEAP"),
    ],
)
def test_bad_values_are_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_credentials_must_come_in_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_USERNAME", "elastic")
    with pytest.raises(ConfigurationError, match="set together"):
        load_settings()


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_USERNAME", "elastic")
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_CA_CERTS", str(ca))
    s = load_settings()
    assert "hunter2-secret" not in repr(s)
    assert "hunter2-secret" not in str(s.safe_dump())
    assert s.safe_dump()["engine_password"] == "***"
    assert s.engine_password is not None and s.engine_password.get_secret_value() == "hunter2-secret"
