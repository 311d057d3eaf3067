"""The HTTP API through a real server process (``hybrid-search serve``, uvicorn) against the real stack.

The server searches a private alias holding the Luma catalogue (real MiniLM, EfficientNet-Lite0 and colour
vectors), serves its photos, and enqueues products to a private queue that a real worker process consumes.
Each endpoint: its success path, then the bad inputs a user can send.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import Shared, api_server, free_port, luma_folder, luma_products, server_env, shared_api
from PIL import Image

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import create_engine, definition_from_settings
from hybrid_search.settings import Settings

MAPPINGS = Path(__file__).resolve().parents[2] / "hybrid_search" / "mappings"

pytestmark = [pytest.mark.integration, pytest.mark.models]


@pytest.fixture(scope="module")
def api(request: pytest.FixtureRequest, settings: Settings) -> Shared:
    return shared_api(request, settings)


@pytest.fixture(scope="module")
def http(api: Shared) -> Any:
    with httpx.Client(base_url=api.url, timeout=120.0) as client:
        yield client


def photo_bytes(product_id: str) -> bytes:
    product = luma_products()[product_id]
    assert product.main_image is not None
    return (luma_folder() / product.main_image).read_bytes()


def refused(response: httpx.Response, status: int, field: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if field is not None:
        assert error["field"] == field, error
    return str(error["message"])


# ---- health -----------------------------------------------------------------------------------------------


def test_health_reports_every_dependency_up(http: httpx.Client, api: Shared) -> None:
    # the workers check is a Celery inspect ping with a 2 s timeout: on a loaded 2-core machine one ping can go
    # unanswered, so ask up to three times (every answer must still be 200 with everything up in the end)
    for _ in range(3):
        response = http.get("/health")
        if response.status_code == 200:
            break
        time.sleep(2.0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == {"engine", "redis", "workers", "models"}
    assert all(c["up"] for c in body["components"].values())
    assert f"{api.alias}: 199 products" in body["components"]["engine"]["detail"]
    assert api.queue in body["components"]["workers"]["detail"]
    assert "speech" in body["components"]["models"]["detail"]


def test_health_is_503_when_a_dependency_is_down(api: Shared) -> None:
    dead = free_port()
    env = server_env(api.alias, api.queue, HYBRID_SEARCH_REDIS_URL=f"redis://127.0.0.1:{dead}/0",
                     HYBRID_SEARCH_API_PRELOAD_MODELS="false", HYBRID_SEARCH_VOICE_ENABLED="false")  # fmt: skip
    with api_server(env, "test-api-redis-down") as server:
        response = httpx.get(server.url + "/health", timeout=60)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        components = response.json()["components"]
        assert response.json()["status"] == "unavailable"
        assert components["engine"]["up"] is True
        assert components["redis"]["up"] is False and "Connection refused" in components["redis"]["detail"]
        assert components["workers"]["up"] is False
        # the engine still answers: search works without Redis; ingestion says why it cannot
        ok = httpx.post(server.url + "/search", json={"text": "hoodie", "size": 1}, timeout=60)
        assert ok.status_code == 200 and ok.json()["hits"]
        queued = httpx.post(
            server.url + "/products", json={"products": [{"id": "x", "title": "X"}]}, timeout=60
        )
        assert "cannot reach Redis" in refused(queued, 503)
    env = server_env(api.alias, api.queue, HYBRID_SEARCH_ENGINE_URL=f"http://127.0.0.1:{dead}",
                     HYBRID_SEARCH_API_PRELOAD_MODELS="false", HYBRID_SEARCH_VOICE_ENABLED="false")  # fmt: skip
    with api_server(env, "test-api-engine-down") as server:
        response = httpx.get(server.url + "/health", timeout=60)
        assert response.status_code == 503
        assert response.json()["components"]["engine"]["up"] is False
        search = httpx.post(server.url + "/search", json={"text": "hoodie"}, timeout=60)
        assert "cannot reach" in refused(search, 503)


# ---- POST /search -----------------------------------------------------------------------------------------


def test_text_search_with_facets_explain_and_pages(http: httpx.Client) -> None:
    response = http.post("/search", json={"text": "red hoodie", "size": 5, "explain": True})
    assert response.status_code == 200, response.text
    body = response.json()
    products = luma_products()
    assert all("Hoodie" in products[h["id"]].title for h in body["hits"][:3])
    assert "Red" in products[body["hits"][0]["id"]].colours
    for hit in body["hits"]:
        assert hit["score"] == pytest.approx(sum(c["weighted"] for c in hit["explain"].values()))
        assert set(hit["fields"]) >= {"title", "price", "image_url"}
    assert {"category", "colour", "brand", "price"} <= set(body["facets"])
    assert body["fusion"]["method"] == "linear"
    page2 = http.post("/search", json={"text": "red hoodie", "size": 5, "page": 2}).json()
    assert [h["rank"] for h in page2["hits"]] == [6, 7, 8, 9, 10]
    assert not {h["id"] for h in page2["hits"]} & {h["id"] for h in body["hits"]}


def test_text_search_filters(http: httpx.Client) -> None:
    body = http.post(
        "/search",
        json={
            "text": "jacket",
            "filters": {"category": "Jackets", "price_max": 60, "colour": ["Red", "Blue"]},
        },
    ).json()
    products = luma_products()
    assert body["hits"]
    for hit in body["hits"]:
        product = products[hit["id"]]
        assert product.price is not None and product.price <= 60
        assert {"Red", "Blue"} & set(product.colours)
        assert "Jackets" in product.document()["categories"]


@pytest.mark.parametrize(
    ("body", "status", "field", "fragment"),
    [
        ({}, 422, "text", "empty query"),
        ({"text": "   "}, 422, "text", "empty query"),
        ({"text": "x", "page": 20, "size": 10}, 422, "page", "beyond the rank window"),
        ({"text": "x", "weights": {"bm99": 1}}, 422, "weights", "unknown retriever"),
        ({"text": "x", "filters": {"price_min": 90, "price_max": 10}}, 422, "filters.price_min", "above"),
        ({"text": "x", "filters": {"nope": "y"}}, 422, "filters.nope", "unknown field"),
    ],
)
def test_search_refusals(
    http: httpx.Client, body: dict[str, Any], status: int, field: str, fragment: str
) -> None:
    assert fragment in refused(http.post("/search", json=body), status, field)


def test_search_wrong_content_type_and_bad_json(http: httpx.Client) -> None:
    assert "JSON body" in refused(http.post("/search", data={"text": "hoodie"}), 415)
    bad = http.post("/search", content=b"{text: hoodie}", headers={"content-type": "application/json"})
    assert refused(bad, 422, "body") == "the request body is not valid JSON"


def test_a_request_the_engine_refuses_is_a_server_error_not_invalid_input(
    settings: Settings, tmp_path: Path
) -> None:
    """An index whose mapping does not fit the code (categories a text field, not a keyword): the engine refuses
    the category facet this server asks for (HTTP 400). That is the server's fault, not the user's: a 502 JSON
    error that does not blame the input, the engine's reason in the server log; bad input is still a 422."""
    shutil.copytree(MAPPINGS, tmp_path / "mappings")
    products = json.loads((tmp_path / "mappings" / "products.json").read_text())
    products["mappings"]["properties"]["categories"] = {"type": "text"}
    (tmp_path / "mappings" / "products.json").write_text(json.dumps(products))
    unfit = settings.model_copy(update={"mappings_dir": tmp_path / "mappings"})
    alias = f"test-api-unfit-{uuid.uuid4().hex[:8]}"
    env = server_env(alias, f"test-api-{uuid.uuid4().hex[:8]}", HYBRID_SEARCH_API_PRELOAD_MODELS="false",
                     HYBRID_SEARCH_VOICE_ENABLED="false")  # fmt: skip
    with create_engine(settings) as engine:
        engine.create_index(alias, definition_from_settings(unfit, encoder_records(settings)))
        try:
            with api_server(env, "test-api-unfit") as server:
                refusals = [
                    httpx.get(server.url + "/facets", timeout=60),
                    httpx.post(server.url + "/search", json={"text": "rain jacket"}, timeout=120),
                ]
                for response in refusals:
                    message = refused(response, 502)
                    assert response.json()["error"]["code"] == "engine_error", response.text
                    assert "refused a request this server built" in message
                    assert "not a problem with the input" in message
                assert "empty query" in refused(
                    httpx.post(server.url + "/search", json={"text": ""}), 422, "text"
                )
                unknown = httpx.post(server.url + "/search", json={"text": "x", "filters": {"nope": "y"}})
                assert "unknown field" in refused(unknown, 422, "filters.nope")
                log = server.log.read_text()
            assert log.count("EngineRequestError") >= 2, log[-3000:]
            assert "illegal_argument_exception" in log and "[categories]" in log, log[-3000:]
        finally:
            for name in engine.versions(alias).values():
                engine.delete_index(name)


def test_oversized_request_is_413(http: httpx.Client) -> None:
    big = b"0" * (13 * 1024 * 1024)
    response = http.post("/search/image", files={"image": ("big.jpg", big, "image/jpeg")})
    assert "larger than" in refused(response, 413)


# ---- POST /search/image -----------------------------------------------------------------------------------


def test_image_search_finds_the_product_in_the_photo(http: httpx.Client) -> None:
    response = http.post("/search/image", files={"image": ("mh01.jpg", photo_bytes("MH01"), "image/jpeg")},
                         data={"size": "5", "explain": "true"})  # fmt: skip
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert hits[0]["id"] == "MH01"
    assert {"image_knn", "colour_knn"} <= set(hits[0]["explain"])


def test_photo_and_words_like_this_but_red(http: httpx.Client) -> None:
    # a grey hoodie's photo; adding the word "red" moves red hoodies up
    def top(text: str | None) -> list[dict[str, Any]]:
        data = {"size": "6", "filters": json.dumps({"category": "Hoodies & Sweatshirts"})}
        if text:
            data["text"] = text
        response = http.post("/search/image", files={"image": ("mh01.jpg", photo_bytes("MH01"))}, data=data)
        assert response.status_code == 200, response.text
        return list(response.json()["hits"])

    products = luma_products()
    red = [h for h in top("red") if "Red" in products[h["id"]].colours]
    alone = [h for h in top(None) if "Red" in products[h["id"]].colours]
    assert len(red) >= 3 and len(red) > len(alone)
    assert all(set(h["fields"]["colour"]) & {"Red", "Gray"} for h in top("red")[:3])


def test_png_and_webp_photos_are_accepted(http: httpx.Client) -> None:
    image = Image.open(io.BytesIO(photo_bytes("MH01")))
    for kind in ("PNG", "WEBP"):
        data = io.BytesIO()
        image.save(data, format=kind)
        response = http.post("/search/image", files={"image": (f"p.{kind.lower()}", data.getvalue())})
        assert response.status_code == 200 and response.json()["hits"][0]["id"] == "MH01", kind


def test_image_refusals(http: httpx.Client) -> None:
    photo = photo_bytes("MH01")
    assert "corrupt" in refused(
        http.post("/search/image", files={"image": ("c.jpg", photo[:400])}), 422, "image"
    )
    page = b"<!doctype html><html>not a photo</html>"
    assert "html" in refused(http.post("/search/image", files={"image": ("p.jpg", page)}), 415, "image")
    big = b"\xff\xd8\xff\xe0" + b"0" * (8 * 1024 * 1024 + 10)
    assert "larger than 8192 KiB" in refused(http.post("/search/image", files={"image": ("b.jpg", big)}), 413)
    assert refused(http.post("/search/image", data={"text": "red"}, files={"x": ("a", b"1")}), 422, "image")
    assert refused(http.post("/search/image", json={"text": "red"}), 415)
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, format="PNG")  # 81 MP, a few hundred kB compressed
    assert "too many pixels" in refused(
        http.post("/search/image", files={"image": ("bomb.png", bomb.getvalue())}), 422
    )
    bad_filters = http.post(
        "/search/image", files={"image": ("p.jpg", photo)}, data={"filters": "colour=red"}
    )
    assert "JSON object" in refused(bad_filters, 422, "filters")


# ---- GET /facets, photos ----------------------------------------------------------------------------------


def test_facets_of_the_catalogue(http: httpx.Client) -> None:
    body = http.get("/facets").json()
    assert body["total"] == 199
    assert {"value": "Jackets", "count": 17} in body["facets"]["category"] or any(
        b["value"] == "Jackets" for b in body["facets"]["category"]
    )
    assert any(b["value"].lower() == "red" for b in body["facets"]["colour"])


def test_product_photos_are_served_from_the_catalogue_folder(http: httpx.Client) -> None:
    response = http.get("/products/MH01/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == photo_bytes("MH01")
    assert refused(http.get("/products/NOPE/image"), 404)


# ---- POST /products, GET /tasks ---------------------------------------------------------------------------


def test_products_are_ingested_by_the_workers(http: httpx.Client, api: Shared) -> None:
    photo = luma_folder() / str(luma_products()["MJ07"].main_image)
    products = [
        {
            "id": "api-test-1",
            "title": "Zephyrine Storm Parka",
            "price": 99,
            "colour": ["Teal"],
            "images": [str(photo)],
        },
        {"id": "api-test-2", "title": "Zephyrine Rain Hat", "price": 19, "category_path": "Gear/Hats"},
    ]
    try:
        response = http.post("/products", json={"products": products})
        assert response.status_code == 202, response.text
        task = response.json()
        assert (task["status"], task["products"], task["batches"]) == ("queued", 2, 1)
        deadline = time.monotonic() + 120
        while task["status"] != "done":
            assert time.monotonic() < deadline, task
            time.sleep(0.5)
            task = http.get(task["status_url"]).json()
        assert (task["indexed"], task["failed"], task["text_embedded"], task["images_embedded"]) == (
            2,
            0,
            2,
            1,
        )
        with create_engine(api.settings) as engine:
            engine.refresh(api.alias)
        hits = http.post("/search", json={"text": "zephyrine parka", "size": 2}).json()["hits"]
        assert hits[0]["id"] == "api-test-1"
    finally:
        with create_engine(api.settings) as engine:
            engine.delete_documents(api.alias, ["api-test-1", "api-test-2"], refresh=True)


def test_refused_photos_are_reported_on_the_task(http: httpx.Client, api: Shared, tmp_path: Path) -> None:
    products = [{"id": "api-test-3", "title": "Escaping photo", "images": ["/etc/passwd"]}]
    try:
        task = http.post("/products", json={"products": products}).json()
        deadline = time.monotonic() + 120
        while task["status"] != "done":
            assert time.monotonic() < deadline, task
            time.sleep(0.5)
            task = http.get(task["status_url"]).json()
        assert (task["indexed"], task["failed"]) == (0, 1)
        assert task["dead_letters"][0]["id"] == "api-test-3"
        assert "outside the catalogue folder" in task["dead_letters"][0]["reason"]
    finally:
        with create_engine(api.settings) as engine:
            engine.delete_documents(api.alias, ["api-test-3"], refresh=True)


def test_products_refusals(http: httpx.Client) -> None:
    invalid = http.post(
        "/products", json={"products": [{"id": "ok", "title": "Fine"}, {"id": "x", "price": "cheap"}]}
    )
    message = refused(invalid, 422, "products.1")
    assert (
        "product 1:" in message and "title: Field required" in message and "price must be a number" in message
    )
    assert refused(http.post("/products", json={"products": []}), 422, "products")
    assert refused(http.post("/products", json=[{"id": "a", "title": "b"}]), 422)
    many = [{"id": f"p{n}", "title": "t"} for n in range(1001)]
    assert "limit 1000" in refused(http.post("/products", json={"products": many}), 413, "products")
    assert refused(http.post("/products", files={"f": ("c.csv", b"id,title\n1,a\n")}), 415)


def test_unknown_tasks_are_404(http: httpx.Client) -> None:
    assert refused(http.get("/tasks/" + "0" * 32), 404, "task_id")
    assert refused(http.get("/tasks/..%2F..%2Fetc"), 404)


# ---- the page ---------------------------------------------------------------------------------------------


def test_page_docs_and_schema_are_served(http: httpx.Client) -> None:
    assert 'id="q"' in http.get("/").text
    assert http.get("/docs").status_code == 200
    assert "/search/voice" in http.get("/openapi.json").json()["paths"]
