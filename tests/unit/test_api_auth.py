"""The API's security pieces without services: request classes, key matching, key and origin settings, secrets
kept out of every representation, the OpenAPI security documentation, and query text never parsed as syntax.

The HTTP behaviour (401/403, CORS preflights, secrets absent from logs) is tested through real server processes
in ``tests/integration/test_api_security.py``.
"""

from __future__ import annotations

import ast
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from hybrid_search.api import Services, create_app
from hybrid_search.api.security import KeyRing, access_of, is_remote, presented_key
from hybrid_search.engine.dialects import elasticsearch_search_body, opensearch_search_body
from hybrid_search.errors import ConfigurationError
from hybrid_search.search.bodies import (
    Retriever,
    bm25_request,
    facets_request,
    native_search_request,
    retriever_request,
)
from hybrid_search.search.query import Filters, SearchQuery
from hybrid_search.settings import Settings, load_settings, redact_url

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
KEY_A = "key-a-" + "0123456789abcdef"
KEY_B = "key-b-" + "fedcba9876543210"
ENGINE_SECRET = "engine-pw-9f8e7d6c5b4a"


# ---- request classes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "access"),
    [
        ("POST", "/products", "write"),
        ("GET", "/tasks/0123456789abcdef0123456789abcdef", "write"),
        ("GET", "/tasks/{task_id}", "write"),  # the OpenAPI template
        ("HEAD", "/tasks/x", "write"),
        ("DELETE", "/products/MH01", "write"),  # no such route, yet refused before routing when keys are set
        ("PUT", "/search", "write"),
        ("POST", "/search/", "write"),  # only the exact search paths are searches
        ("POST", "/search", "search"),
        ("post", "/search/image", "search"),
        ("POST", "/search/voice", "search"),
        ("GET", "/facets", "search"),
        ("GET", "/products/MH01/image", "search"),
        ("GET", "/health", "open"),
        ("GET", "/", "open"),
        ("GET", "/static/app.js", "open"),
        ("GET", "/openapi.json", "open"),
        ("OPTIONS", "/products", "open"),
    ],
)
def test_every_request_has_a_class(method: str, path: str, access: str) -> None:
    assert access_of(method, path) == access


# ---- keys -----------------------------------------------------------------------------------------------------


def test_a_key_ring_matches_its_keys_and_nothing_else() -> None:
    ring = KeyRing([SecretStr(KEY_A), SecretStr(KEY_B)])
    assert ring.matches(KEY_A.encode()) and ring.matches(KEY_B.encode())
    for wrong in (KEY_A[:-1], KEY_A + "0", KEY_A.upper(), "", KEY_A + KEY_B, KEY_B[::-1]):
        assert not ring.matches(wrong.encode()), wrong
    assert KEY_A not in repr(ring) and KEY_B not in repr(ring)
    assert not KeyRing([])


def test_a_key_is_compared_with_every_key_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = secrets.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(secrets, "compare_digest", counting)
    ring = KeyRing([SecretStr(KEY_A), SecretStr(KEY_B), SecretStr("k" * 40)])
    assert ring.matches(KEY_A.encode())  # the first key matches: the other two are still compared
    assert len(calls) == 3
    assert not ring.matches(b"short")  # digests of equal length: the key's length is not what is compared
    assert len(calls) == 6 and {pair for pair in calls} == {(32, 32)}


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"x-api-key", b"  abc  ")], b"abc"),
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc ")], b"abc"),
        ([(b"authorization", b"Bearer def"), (b"x-api-key", b"abc")], b"abc"),  # X-API-Key first
        ([(b"authorization", b"Basic YWxhZGRpbjpvcGVu")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"x-api-key", b"   ")], None),
        ([(b"content-type", b"application/json")], None),
    ],
)
def test_the_key_comes_from_x_api_key_or_a_bearer_token(
    headers: list[tuple[bytes, bytes]], key: bytes
) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize(
    ("client", "remote"),
    [
        (("127.0.0.1", 5000), False),
        (("127.8.9.10", 5000), False),
        (("::1", 5000), False),
        (("::ffff:127.0.0.1", 5000), False),
        (("10.0.0.7", 5000), True),
        (("203.0.113.9", 5000), True),
        (("::ffff:203.0.113.9", 5000), True),
        (("2001:db8::1", 5000), True),
        (None, False),  # a Unix socket
        (("testclient", 50000), False),  # an in-process client
    ],
)
def test_remote_peers_are_network_addresses_other_than_loopback(client: Any, remote: bool) -> None:
    assert is_remote(client) is remote


# ---- settings -------------------------------------------------------------------------------------------------


def test_api_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_API_KEYS", f" {KEY_A} , {KEY_B},")
    s = load_settings()
    assert [k.get_secret_value() for k in s.api_keys] == [KEY_A, KEY_B]
    monkeypatch.setenv("HYBRID_SEARCH_API_KEYS", json.dumps([KEY_B]))
    assert [k.get_secret_value() for k in load_settings().api_keys] == [KEY_B]
    monkeypatch.setenv("HYBRID_SEARCH_API_KEYS", "")
    assert load_settings().api_keys == []
    monkeypatch.delenv("HYBRID_SEARCH_API_KEYS")
    assert load_settings().api_keys == [] and load_settings().api_auth_search is False


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("tooshort-hunter", "API key 1 has 15 characters; use at least 16"),
        (f"{KEY_A},with space hunter-x", "API key 2 has a character outside printable ASCII, a space"),
        ("[not json hunter-hunter", "not a JSON list"),
    ],
)
def test_weak_or_malformed_keys_are_refused_without_repeating_them(
    monkeypatch: pytest.MonkeyPatch, value: str, fragment: str
) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_API_KEYS", value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "hunte" not in str(info.value)
    with pytest.raises(PydanticValidationError) as raw:  # the pydantic error itself hides the input too
        Settings()
    assert "hunte" not in str(raw.value)


def test_search_auth_needs_keys() -> None:
    with pytest.raises(ConfigurationError, match="api_auth_search needs at least one key"):
        load_settings(api_auth_search=True)
    assert load_settings(api_auth_search=True, api_keys=[KEY_A]).api_auth_search


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ("", []),
        ("https://shop.example.com", ["https://shop.example.com"]),
        (
            "https://shop.example.com/, http://localhost:3000",
            ["https://shop.example.com", "http://localhost:3000"],
        ),
        ('["https://a.example"]', ["https://a.example"]),
        ("*", ["*"]),
    ],
)
def test_cors_origins(monkeypatch: pytest.MonkeyPatch, value: str, origins: list[str]) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_CORS_ORIGINS", value)
    assert load_settings().cors_origins == origins


@pytest.mark.parametrize(
    "value", ["shop.example.com", "https://shop.example.com/app", "ftp://x.example", "https://"]
)
def test_cors_origins_must_be_origins(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_CORS_ORIGINS", value)
    with pytest.raises(ConfigurationError, match=r"HYBRID_SEARCH_CORS_ORIGINS: .*is not an origin"):
        load_settings()


@pytest.mark.parametrize("auth", ["password", "api_key"])
def test_engine_credentials_and_api_keys_never_appear_in_representations(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: str
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    if auth == "password":
        monkeypatch.setenv("HYBRID_SEARCH_ENGINE_USERNAME", "elastic")
        monkeypatch.setenv("HYBRID_SEARCH_ENGINE_PASSWORD", ENGINE_SECRET)
    else:
        monkeypatch.setenv("HYBRID_SEARCH_ENGINE_API_KEY", ENGINE_SECRET)
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_CA_CERTS", str(ca))
    monkeypatch.setenv("HYBRID_SEARCH_API_KEYS", f"{KEY_A},{KEY_B}")
    s = load_settings()
    shown = [repr(s), str(s), str(s.safe_dump()), s.model_dump_json(), json.dumps(s.model_dump(mode="json"))]
    for text in shown:
        for secret in (ENGINE_SECRET, KEY_A, KEY_B):
            assert secret not in text
    assert s.safe_dump()["api_keys"] == ["***", "***"]
    assert s.safe_dump()["engine_ca_certs"] == str(ca)  # a path, not a secret: shown


def test_a_refused_setting_never_repeats_an_engine_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SEARCH_ENGINE_PASSWORD", ENGINE_SECRET)  # without a user: refused
    with pytest.raises(PydanticValidationError) as raw:
        Settings()
    assert "set together" in str(raw.value) and ENGINE_SECRET not in str(raw.value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert ENGINE_SECRET not in str(info.value)


def test_credentials_in_the_engine_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(engine_url=f"https://elastic:{ENGINE_SECRET}@search.example.com:9243")
    assert "must not carry credentials" in str(info.value) and ENGINE_SECRET not in str(info.value)
    with pytest.raises(
        ConfigurationError
    ) as info:  # a bad port: that message repeats the URL, this one first
        load_settings(engine_url=f"ftp://elastic:{ENGINE_SECRET}@search.example.com:99999")
    assert ENGINE_SECRET not in str(info.value)


def test_redacted_urls_lose_their_credentials() -> None:
    assert redact_url(f"redis://:{ENGINE_SECRET}@cache.example:6380/1") == "redis://cache.example:6380/1"
    assert redact_url(f"rediss://user:{ENGINE_SECRET}@cache.example/0") == "rediss://cache.example/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


# ---- OpenAPI --------------------------------------------------------------------------------------------------


def unused(settings: Settings) -> Services:
    raise AssertionError("building the OpenAPI schema must not start services")


def operations(settings: Settings) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    schema = create_app(settings, services=unused).openapi()
    ops = {f"{m.upper()} {p}": op for p, methods in schema["paths"].items() for m, op in methods.items()}
    return schema, ops


def test_openapi_documents_which_operations_need_a_key() -> None:
    schema, ops = operations(load_settings(api_keys=[KEY_A]))
    assert set(schema["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    for name in ("POST /products", "GET /tasks/{task_id}"):
        assert ops[name]["security"] == [{"ApiKey": []}, {"Bearer": []}] and "401" in ops[name]["responses"]
    for name in ("POST /search", "POST /search/image", "GET /facets", "GET /health"):
        assert "security" not in ops[name] and "401" not in ops[name]["responses"], name
    _, locked = operations(load_settings(api_keys=[KEY_A], api_auth_search=True))
    for name in ("POST /search", "POST /search/image", "POST /search/voice", "GET /facets"):
        assert "security" in locked[name], name
    assert "security" not in locked["GET /health"]
    assert KEY_A not in json.dumps(schema)


def test_openapi_without_keys_documents_the_loopback_rule() -> None:
    schema, ops = operations(load_settings())
    assert "securitySchemes" not in schema.get("components", {})
    assert "403" in ops["POST /products"]["responses"] and "security" not in ops["POST /products"]
    assert "403" not in ops["POST /search"]["responses"]


# ---- query text is never query syntax -------------------------------------------------------------------------

SYNTAX_QUERIES = frozenset(
    {"query_string", "simple_query_string", "regexp", "wildcard", "script", "script_score"}
)
HOSTILE = [
    "title:(*) OR _exists_:x",
    "*:*",
    'brand:"Luma" AND price:[0 TO *]',
    "/.*/ OR title:~2",
    '{"query_string": {"query": "*"}}',
]


# Scripts with a fixed source whose inputs are params (never text): exact kNN (the query vector), removing the
# layer's hs_ fields (their names). Only the engine adapter may build them.
FIXED_SCRIPTS = {
    "hybrid_search/engine/dialects.py": {"script", "script_score"},
    "hybrid_search/engine/base.py": {"script"},
    "hybrid_search/engine/elasticsearch.py": {"script"},
}


def test_no_code_builds_a_query_string_query() -> None:
    """No string in the package is one of the parsing query types (a dict key would be exactly that), except
    the fixed-source scripts of the engine adapter (:data:`FIXED_SCRIPTS`)."""
    found = []
    for path in sorted((REPO / "hybrid_search").rglob("*.py")):
        allowed = FIXED_SCRIPTS.get(str(path.relative_to(REPO)), set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value in SYNTAX_QUERIES - allowed:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


def walk(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from walk(item, (*path, "[]"))


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_only_ever_a_multi_match_value(text: str) -> None:
    query = SearchQuery(text=text, filters=Filters(colour=text, attributes={"climate": text}))
    assert query.text == text
    bm25 = Retriever("bm25", 1.0, None)
    knn = Retriever("text_knn", 1.0, "text_vector")
    vectors = {"text_knn": [0.1] * 384}
    filters = query.filters.clauses()
    requests = [
        bm25_request(text, size=10),
        retriever_request(bm25, text=text, vector=None, window=100, filters=filters),
        facets_request([bm25, knn], text=text, vectors=vectors, window=100, filters=filters),
        native_search_request(
            [bm25, knn], text=text, vectors=vectors, window=100, page=1, size=10, filters=filters, facets=True
        ),
    ]
    for request in requests:
        for body in (opensearch_search_body(request), elasticsearch_search_body(request)):
            keys = {key for path, _ in walk(body) for key in path}
            assert not keys & SYNTAX_QUERIES, keys & SYNTAX_QUERIES
            places = {path for path, value in walk(body) if isinstance(value, str) and text in value}
            for place in places:  # the query text in a multi_match, filter values in term(s) clauses
                steps = [step for step in place if step != "[]"]
                assert steps[-2:] == ["multi_match", "query"] or (
                    steps[-1] in ("colour.keyword", "attributes") and steps[-2] in ("term", "terms")
                ), place
            assert any(p[-2:] == ("multi_match", "query") for p in places)
