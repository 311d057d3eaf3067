"""API keys, the loopback rule, CORS and secrets, through real server processes (``hybrid-search serve``).

Three servers on the shared Luma alias, each on a private (unconsumed) queue; nothing here enqueues anything:

- ``keyed``: two API keys, CORS for one origin, engine basic-auth credentials (the local engine ignores them);
- ``locked``: keys and ``api_auth_search``, an engine API key, and an engine that is not running (errors);
- ``open``: no keys, no CORS: writes from loopback only, which uvicorn decides from the peer address or, from a
  trusted local proxy, ``X-Forwarded-For``.

Secrets (the API keys, the engine password and API key) must appear in no response and no server log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_support import (
    ApiServer,
    api_server,
    free_port,
    luma_folder,
    luma_products,
    server_env,
    shared_luma_alias,
)

from hybrid_search.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.models]

KEY_A = "ka-" + uuid.uuid4().hex
KEY_B = "kb-" + uuid.uuid4().hex
ENGINE_PASSWORD = "engine-pw-" + uuid.uuid4().hex[:12]
ENGINE_API_KEY = "engine-key-" + uuid.uuid4().hex[:12]
SECRETS = (KEY_A, KEY_B, ENGINE_PASSWORD, ENGINE_API_KEY)
SHOP = "https://shop.example.com"
EVIL = "https://evil.example.net"
LIGHT = {"HYBRID_SEARCH_API_PRELOAD_MODELS": "false", "HYBRID_SEARCH_VOICE_ENABLED": "false"}
SEEN: list[str] = []  # every response text of this module, checked for secrets at the end


def server(request: pytest.FixtureRequest, settings: Settings, name: str, **env: Any) -> Iterator[ApiServer]:
    alias = shared_luma_alias(request, settings)
    with api_server(server_env(alias, f"test-sec-{uuid.uuid4().hex[:8]}", **LIGHT, **env), name) as running:
        yield running


@pytest.fixture(scope="module")
def keyed(request: pytest.FixtureRequest, settings: Settings) -> Iterator[ApiServer]:
    yield from server(request, settings, "test-api-keyed", HYBRID_SEARCH_API_KEYS=f"{KEY_A},{KEY_B}",
                      HYBRID_SEARCH_CORS_ORIGINS=SHOP, HYBRID_SEARCH_ENGINE_USERNAME="admin",
                      HYBRID_SEARCH_ENGINE_PASSWORD=ENGINE_PASSWORD)  # fmt: skip


@pytest.fixture(scope="module")
def locked(request: pytest.FixtureRequest, settings: Settings) -> Iterator[ApiServer]:
    yield from server(request, settings, "test-api-locked", HYBRID_SEARCH_API_KEYS=KEY_A,
                      HYBRID_SEARCH_API_AUTH_SEARCH="true", HYBRID_SEARCH_ENGINE_API_KEY=ENGINE_API_KEY,
                      HYBRID_SEARCH_ENGINE_URL=f"http://127.0.0.1:{free_port()}")  # fmt: skip


@pytest.fixture(scope="module")
def open_server(request: pytest.FixtureRequest, settings: Settings) -> Iterator[ApiServer]:
    yield from server(request, settings, "test-api-open")


def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(method, url, timeout=120.0, **kwargs)
    SEEN.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    return response


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["status"] == status and body["message"]
    return body


BAD_PRODUCTS = {"products": [{"title": "no id"}]}  # refused by validation: passing auth enqueues nothing
UNKNOWN_TASK = "/tasks/" + "0" * 32


# ---- keys on writes ---------------------------------------------------------------------------------------


def test_writes_without_a_key_are_401_before_the_body_is_read(keyed: ApiServer) -> None:
    # not even JSON: a 401, not a 422, shows the key is checked before anything parses the body
    response = call(
        "POST", keyed.url + "/products", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = error(response, 401)
    assert body["code"] == "unauthorized"
    assert "X-API-Key" in body["message"] and "Bearer" in body["message"]
    assert response.headers["www-authenticate"] == 'Bearer realm="hybrid-search"'
    assert response.headers["cache-control"] == "no-store"
    assert error(call("GET", keyed.url + UNKNOWN_TASK), 401)["code"] == "unauthorized"
    big = call("POST", keyed.url + "/products", content=b"0" * (13 * 1024 * 1024),  # over the size limit too
               headers={"content-type": "application/json"})  # fmt: skip
    error(big, 401)


@pytest.mark.parametrize("style", ["x-api-key", "bearer"])
def test_a_wrong_key_is_401_and_never_echoed(keyed: ApiServer, style: str) -> None:
    for wrong in (KEY_A[:-1] + "x", KEY_A + "x", "nope", KEY_A.upper()):
        headers = {"X-API-Key": wrong} if style == "x-api-key" else {"Authorization": f"Bearer {wrong}"}
        response = call("POST", keyed.url + "/products", json=BAD_PRODUCTS, headers=headers)
        assert "not valid" in error(response, 401)["message"]
        assert response.headers["www-authenticate"] == 'Bearer realm="hybrid-search", error="invalid_token"'
        assert wrong not in response.text and wrong not in str(response.headers)


@pytest.mark.parametrize("key", [KEY_A, KEY_B])
@pytest.mark.parametrize("style", ["x-api-key", "bearer"])
def test_every_key_unlocks_the_writes_in_either_header(keyed: ApiServer, key: str, style: str) -> None:
    headers = {"X-API-Key": key} if style == "x-api-key" else {"Authorization": f"Bearer {key}"}
    products = call("POST", keyed.url + "/products", json=BAD_PRODUCTS, headers=headers)
    assert error(products, 422)["field"] == "products.0"  # past the key: validation speaks
    assert error(call("GET", keyed.url + UNKNOWN_TASK, headers=headers), 404)["field"] == "task_id"
    assert key not in products.text


def test_search_photos_facets_and_health_stay_open(keyed: ApiServer) -> None:
    search = call("POST", keyed.url + "/search", json={"text": "hoodie", "size": 3})
    assert search.status_code == 200 and search.json()["hits"], search.text
    assert call("GET", keyed.url + "/facets").status_code == 200
    assert call("GET", keyed.url + "/products/MH01/image").headers["content-type"] == "image/jpeg"
    health = call("GET", keyed.url + "/health")  # 503: no worker consumes this server's queue
    assert health.status_code in (200, 503) and health.json()["components"]["engine"]["up"] is True
    assert call("GET", keyed.url + "/").status_code == 200
    schema = call("GET", keyed.url + "/openapi.json").json()
    assert schema["paths"]["/products"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert "security" not in schema["paths"]["/search"]["post"]


# ---- query text, page depth, result size ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["title:(*) OR _exists_:x", "*:*", 'brand:"Luma" AND price:[0 TO *]', "/.*/"]
)
def test_query_syntax_in_the_text_is_matched_literally(keyed: ApiServer, text: str) -> None:
    # as query_string, each of these would match every product; as words, few or none do
    body = {"text": text, "weights": {"bm25": 1.0, "text_knn": 0.0}, "size": 100, "rank_window": 200}
    response = call("POST", keyed.url + "/search", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["total"] < len(luma_products()) // 2
    with_word = call("POST", keyed.url + "/search", json={**body, "text": f"{text} hoodie"}).json()
    assert sum("Hoodie" in h["fields"]["title"] for h in with_word["hits"][:5]) >= 3  # the words still count


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"page": 11, "size": 10}, "page", "beyond the rank window of 100"),
        ({"page": 2, "size": 60, "rank_window": 100}, "page", "beyond the rank window of 100"),
        ({"page": 10_001}, "page", "less than or equal to 10000"),
        ({"size": 101}, "size", "less than or equal to 100"),
        ({"size": 0}, "size", "greater than or equal to 1"),
        ({"rank_window": 10_001}, "rank_window", "less than or equal to 10000"),
        ({"rank_window": 1001}, "rank_window", "above this server's limit of 1000"),
        ({"text": "x" * 4001}, "text", "at most 4000 characters"),
    ],
)
def test_page_depth_and_result_size_are_limited(
    keyed: ApiServer, body: dict[str, Any], field: str, fragment: str
) -> None:
    refused = error(call("POST", keyed.url + "/search", json={"text": "jacket", **body}), 422)
    assert refused["field"] == field and fragment in refused["message"], refused


def test_image_search_pages_are_limited_too(keyed: ApiServer) -> None:
    main = luma_products()["MH01"].main_image
    assert main is not None
    photo = (luma_folder() / main).read_bytes()
    files = {"image": ("mh01.jpg", photo, "image/jpeg")}
    deep = error(
        call("POST", keyed.url + "/search/image", files=files, data={"page": "11", "size": "10"}), 422
    )
    assert deep["field"] == "page" and "rank window" in deep["message"]
    assert (
        error(call("POST", keyed.url + "/search/image", files=files, data={"size": "101"}), 422)["field"]
        == "size"
    )


# ---- CORS -------------------------------------------------------------------------------------------------


def preflight(url: str, origin: str, headers: str = "content-type,x-api-key") -> httpx.Response:
    return call("OPTIONS", url, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                         "Access-Control-Request-Headers": headers})  # fmt: skip


def test_cors_answers_only_the_configured_origin(keyed: ApiServer) -> None:
    ok = preflight(keyed.url + "/search", SHOP)
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert {"POST", "GET"} <= {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")}
    assert "x-api-key" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers
    assert preflight(keyed.url + "/products", SHOP).status_code == 200  # preflights carry no key
    evil = preflight(keyed.url + "/search", EVIL)
    assert evil.status_code == 400 and "access-control-allow-origin" not in evil.headers
    odd_header = preflight(keyed.url + "/search", SHOP, "x-custom")
    assert odd_header.status_code == 400
    search = call("POST", keyed.url + "/search", json={"text": "bag", "size": 1}, headers={"Origin": SHOP})
    assert search.status_code == 200 and search.headers["access-control-allow-origin"] == SHOP
    other = call("POST", keyed.url + "/search", json={"text": "bag", "size": 1}, headers={"Origin": EVIL})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    # a refused write still carries the header, so the shop's page can read why
    refused = call("POST", keyed.url + "/products", json=BAD_PRODUCTS, headers={"Origin": SHOP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == SHOP


def test_no_cors_headers_unless_origins_are_set(open_server: ApiServer) -> None:
    response = preflight(open_server.url + "/search", SHOP)
    assert response.status_code == 405
    assert not [h for h in response.headers if h.startswith("access-control-")]
    search = call(
        "POST", open_server.url + "/search", json={"text": "bag", "size": 1}, headers={"Origin": SHOP}
    )
    assert search.status_code == 200
    assert not [h for h in search.headers if h.startswith("access-control-")]


# ---- no keys: loopback only -------------------------------------------------------------------------------

FAR = {"X-Forwarded-For": "203.0.113.7"}  # uvicorn trusts this header from 127.0.0.1 (a local proxy)


def test_without_keys_writes_are_accepted_from_loopback_only(open_server: ApiServer) -> None:
    assert error(call("POST", open_server.url + "/products", json=BAD_PRODUCTS), 422)["field"] == "products.0"
    assert error(call("GET", open_server.url + UNKNOWN_TASK), 404)["field"] == "task_id"
    far = error(call("POST", open_server.url + "/products", json=BAD_PRODUCTS, headers=FAR), 403)
    assert far["code"] == "forbidden" and "HYBRID_SEARCH_API_KEYS" in far["message"]
    assert error(call("GET", open_server.url + UNKNOWN_TASK, headers=FAR), 403)["code"] == "forbidden"
    search = call("POST", open_server.url + "/search", json={"text": "hoodie", "size": 1}, headers=FAR)
    assert search.status_code == 200  # search stays open to everyone
    assert "no API keys are set (HYBRID_SEARCH_API_KEYS)" in open_server.log.read_text()


# ---- search behind keys, and an engine that is down -------------------------------------------------------


def test_with_api_auth_search_every_search_needs_a_key(locked: ApiServer) -> None:
    for method, path, kwargs in (
        ("POST", "/search", {"json": {"text": "hoodie"}}),
        ("POST", "/search/image", {"files": {"image": ("x.jpg", b"\xff\xd8\xff")}}),
        ("POST", "/search/voice", {"files": {"audio": ("x.wav", b"RIFF")}}),
        ("GET", "/facets", {}),
        ("GET", "/products/MH01/image", {}),
    ):
        assert error(call(method, locked.url + path, **kwargs), 401)["code"] == "unauthorized", path
    # with the key the request goes through, to an engine that is not running: 503 naming it, no secret
    down = call(
        "POST", locked.url + "/search", json={"text": "hoodie"}, headers={"Authorization": f"Bearer {KEY_A}"}
    )
    assert "cannot reach OpenSearch at http://127.0.0.1:" in error(down, 503)["message"]
    health = call("GET", locked.url + "/health")  # open, even here
    assert health.status_code == 503 and health.json()["components"]["engine"]["up"] is False
    assert call("GET", locked.url + "/").status_code == 200
    schema = call("GET", locked.url + "/openapi.json").json()
    assert schema["paths"]["/search"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]


# ---- secrets ----------------------------------------------------------------------------------------------


def test_no_secret_in_any_response_or_server_log(
    keyed: ApiServer, locked: ApiServer, open_server: ApiServer
) -> None:
    """Last in the module: every response above, and the three servers' logs, hold none of the secrets."""
    for running in (keyed, locked, open_server):
        SEEN.append(call("GET", running.url + "/health").text)
        SEEN.append(call("GET", running.url + "/openapi.json").text)
    assert len(SEEN) > 40
    responses = "\n".join(SEEN)
    logs = "\n".join(s.log.read_text(errors="replace") for s in (keyed, locked, open_server))
    assert "POST /products" in logs and "401" in logs  # the access log is there, without the keys
    for secret in SECRETS:
        assert secret not in responses
        assert secret not in logs
