"""The HTTP edge without services: the error table, content types, size limits, request validation, the page.

The app is built with a services factory whose engine and search service fail the test if touched: every
request here must be answered (or refused) before any engine or model is needed.
"""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hybrid_search.api import Services, create_app
from hybrid_search.api.errors import (
    STATUS,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaError,
    error_response,
    status_of,
)
from hybrid_search.api.ingest import validate_products
from hybrid_search.api.sample_data import convert_sample_data, html_to_text
from hybrid_search.api.server import download_sample_data, resolve_catalogue
from hybrid_search.errors import (
    ConfigurationError,
    EncoderError,
    EncoderMismatchError,
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    HybridSearchError,
    IndexNotFoundError,
    ValidationError,
)
from hybrid_search.ingest.tracking import QueueUnavailableError
from hybrid_search.settings import Settings, load_settings

pytestmark = pytest.mark.unit


class Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the request reached a service ({name}) it should never need")

    def close(self) -> None:
        pass


def untouched(settings: Settings) -> Services:
    return Services(settings=settings, engine=Untouchable(), search=Untouchable())


@pytest.fixture(scope="module")
def client() -> Any:
    settings = load_settings(api_max_request_bytes=64 * 1024, api_max_upload_bytes=16 * 1024)
    with TestClient(create_app(settings, services=untouched)) as c:
        yield c


# ---- the table --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (PayloadTooLargeError("big", field="image"), 413, "too_large"),
        (UnsupportedMediaError("html", field="image"), 415, "unsupported_media_type"),
        (ValidationError("bad", field="text"), 422, "invalid_input"),
        (NotFoundError("no task"), 404, "not_found"),
        (IndexNotFoundError("no index"), 503, "no_index"),
        (EngineUnavailableError("down"), 503, "engine_unavailable"),
        (EngineAuthError("401"), 502, "engine_auth"),
        (EngineRequestError("400", "parsing_exception"), 502, "engine_error"),
        (EngineError("500"), 502, "engine_error"),
        (QueueUnavailableError("redis down"), 503, "queue_unavailable"),
        (UnavailableError("voice off"), 503, "unavailable"),
        (EncoderError("no weights"), 503, "model_unavailable"),
        (EncoderMismatchError("other encoder"), 409, "encoder_mismatch"),
        (ConfigurationError("bad setting"), 500, "configuration"),
        (HybridSearchError("anything"), 500, "error"),
        (RuntimeError("a bug"), 500, "internal"),
    ],
)
def test_each_error_has_one_status(error: Exception, status: int, code: str) -> None:
    assert status_of(error) == (status, code)


def test_subclasses_come_before_their_bases_in_the_table() -> None:
    for n, (cls, _status, _code) in enumerate(STATUS):
        for later, _s, _c in STATUS[n + 1 :]:
            assert not issubclass(later, cls), f"{later.__name__} is shadowed by {cls.__name__}"


def test_a_request_the_engine_refused_is_a_server_error_that_logs_the_engines_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not the client's fault: 502, a message that does not blame the input, and the engine's reason in the log
    (not in the response: it can quote the request this server built)."""
    reason = "parsing_exception: unknown query [no_such_query]"
    error = EngineRequestError(
        f"OpenSearch refused a request hybrid-search built (search products-v1): HTTP 400 {reason}",
        "parsing_exception",
        reason,
    )
    with caplog.at_level(logging.ERROR, logger="hybrid_search.api.errors"):
        response = error_response(error)
    assert response.status_code == 502 and response.headers.get("retry-after") is None
    body = json.loads(bytes(response.body))["error"]
    assert (body["status"], body["code"], body["field"]) == (502, "engine_error", None)
    assert body["message"].startswith(
        "the search engine refused a request this server built (parsing_exception)"
    )
    assert "not a problem with the input" in body["message"] and "no_such_query" not in body["message"]
    assert reason in caplog.text and "EngineRequestError" in caplog.text


def test_api_errors_pickle_with_their_field() -> None:
    for error in (NotFoundError("x", field="task_id"), PayloadTooLargeError("y", field="image")):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.field) == (type(error), error.message, error.field)


# ---- refusals before any service ------------------------------------------------------------------------


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    return dict(body["error"])


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        (
            "/search",
            {"content": b"text=hoodie", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        ),
        ("/search", {"content": b"hoodie"}),
        ("/products", {"files": {"file": ("p.jsonl", b"{}")}}),
        ("/search/image", {"json": {"text": "red"}}),
        ("/search/voice", {"content": b"RIFF....WAVE", "headers": {"content-type": "audio/wav"}}),
    ],
)
def test_wrong_content_type_is_415(client: TestClient, path: str, kwargs: dict[str, Any]) -> None:
    error = error_of(client.post(path, **kwargs), 415)
    assert error["code"] == "unsupported_media_type"
    assert path in error["message"]


def test_invalid_json_is_422_naming_the_body(client: TestClient) -> None:
    error = error_of(
        client.post("/search", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert (error["message"], error["field"]) == ("the request body is not valid JSON", "body")


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"text": "x", "colour": "red"}, "colour", "unknown field"),
        ({"text": "x", "filters": {"color": "red"}}, "filters.color", "unknown field"),
        ({"text": "x", "filters": {"colour": 5}}, "filters.colour", "valid string"),
        ({"text": "x", "size": 0}, "size", "greater than or equal to 1"),
        ({"text": "x", "size": 500}, "size", "less than or equal to 100"),
        ({"text": "x", "fusion": "magic"}, "fusion", "linear"),
        ({"text": "x", "filters": {"price_min": -1}}, "filters.price_min", "greater than or equal to 0"),
        ([1, 2], "body", "object"),
    ],
)
def test_malformed_search_bodies_are_422(client: TestClient, body: Any, field: str, fragment: str) -> None:
    error = error_of(client.post("/search", json=body), 422)
    assert error["field"] == field
    assert fragment in error["message"]


def test_oversized_request_is_413_before_parsing(client: TestClient) -> None:
    error = error_of(client.post("/search", json={"text": "x" * 70_000}), 413)
    assert error["code"] == "too_large"


def test_oversized_chunked_request_is_413(client: TestClient) -> None:
    def chunks() -> Any:
        for _ in range(80):
            yield b"x" * 1024

    response = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert error_of(response, 413)["code"] == "too_large"


def test_oversized_upload_is_413(client: TestClient) -> None:
    photo = b"\xff\xd8\xff\xe0" + b"0" * 20_000
    error = error_of(client.post("/search/image", files={"image": ("p.jpg", photo, "image/jpeg")}), 413)
    assert error["field"] == "image"


def test_missing_upload_is_422(client: TestClient) -> None:
    error = error_of(client.post("/search/image", data={"text": "red"}, files={"x": ("a", b"1")}), 422)
    assert (error["field"], error["message"]) == ("image", "image is required")


def test_non_image_upload_is_415_naming_what_it_is(client: TestClient) -> None:
    page = b"<!doctype html><html><body>hi</body></html>"
    error = error_of(client.post("/search/image", files={"image": ("p.jpg", page, "image/jpeg")}), 415)
    assert "html" in error["message"]


def test_empty_upload_is_422(client: TestClient) -> None:
    error = error_of(client.post("/search/image", files={"image": ("p.jpg", b"", "image/jpeg")}), 422)
    assert "empty" in error["message"]


def test_unknown_task_ids_are_404(client: TestClient) -> None:
    assert error_of(client.get("/tasks/not-a-task"), 404)["field"] == "task_id"


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert error_of(client.get("/nope"), 404)["code"] == "not_found"
    assert error_of(client.get("/search"), 405)["code"] == "method_not_allowed"


def test_empty_products_list_is_422(client: TestClient) -> None:
    assert error_of(client.post("/products", json={"products": []}), 422)["field"] == "products"


# ---- the page and the schema ------------------------------------------------------------------------------


def test_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="q"', 'id="mic"', 'id="photo-input"', 'id="audio-input"', 'id="f-category"',
                    'id="f-colour"', 'id="f-price-min"', 'id="explain"', 'id="results"', 'id="pager"'):  # fmt: skip
        assert element in page.text, element
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200 and kind in response.headers["content-type"]
    size = sum(len(client.get(a).content) for a in ("/", "/static/app.js", "/static/style.css"))
    assert size < 60_000  # no framework: the whole page is a few tens of kB


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    expected = {("/search", "post"), ("/search/image", "post"), ("/search/voice", "post"), ("/products", "post"),
                ("/tasks/{task_id}", "get"), ("/health", "get"), ("/facets", "get"),
                ("/products/{product_id}/image", "get")}  # fmt: skip
    found = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert expected <= found
    assert "multipart/form-data" in schema["paths"]["/search/voice"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200


def test_importing_the_api_creates_nothing() -> None:
    import importlib

    import hybrid_search.api.app as module

    importlib.reload(module)
    assert not [
        name for name, value in vars(module).items() if type(value).__name__ in ("FastAPI", "Services")
    ]


# ---- products ---------------------------------------------------------------------------------------------


def test_products_are_validated_like_the_catalogue() -> None:
    ok = validate_products([{"id": "a", "title": "Trail jacket", "price": "12.5"}])
    assert ok == [{"id": "a", "title": "Trail jacket", "price": 12.5, "currency": "USD"}]
    with pytest.raises(ValidationError) as info:
        validate_products([{"id": "a", "title": "A"}, {"title": "no id"}, {"id": "a", "title": "again"}])
    assert info.value.field == "products.1"
    assert "product 1: id: Field required" in info.value.message
    assert "product 2: duplicate id 'a'" in info.value.message


# ---- the demo's catalogue ---------------------------------------------------------------------------------


def test_offline_download_says_what_to_do(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(ConfigurationError) as info:
        download_sample_data(tmp_path / "luma", url=f"http://127.0.0.1:{port}/sample.zip", timeout_s=2)
    assert "cannot download the Luma sample data" in info.value.message
    assert "--catalog DIR" in info.value.message and "HYBRID_SEARCH_CATALOG" in info.value.message
    assert not list((tmp_path / "luma").glob("*.part"))


def test_catalogue_from_the_option_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.jsonl").write_text("{}\n")
    assert resolve_catalogue(str(tmp_path / "c.jsonl")) == tmp_path / "c.jsonl"
    monkeypatch.setenv("HYBRID_SEARCH_CATALOG", str(tmp_path / "c.jsonl"))
    assert resolve_catalogue(None) == tmp_path / "c.jsonl"
    with pytest.raises(ConfigurationError, match="catalogue not found"):
        resolve_catalogue(str(tmp_path / "missing"))


def test_sample_data_fixtures_convert_to_a_luma_folder(tmp_path: Path) -> None:
    source = tmp_path / "magento2-sample-data"
    fixtures = source / "app/code/Magento"
    (fixtures / "ConfigurableSampleData/fixtures").mkdir(parents=True)
    (fixtures / "CatalogSampleData/fixtures/SimpleProduct").mkdir(parents=True)
    (source / "pub/media/catalog/product/m/h").mkdir(parents=True)
    header = "sku,product_type,categories,name,description,price,additional_attributes,base_image,additional_images,configurable_variations\n"
    (fixtures / "ConfigurableSampleData/fixtures/products.csv").write_text(
        header
        + 'MH01-S-Red,simple,x,Chaz-S-Red,,52,"size=S,color=Red",/m/h/mh01-red_main.jpg,,\n'
        + 'MH01,configurable,"Default Category/Men/Tops/Hoodies,Default Category",Chaz Hoodie,"<p>Warm.</p><ul><li>Hood.</li></ul>",52,'
        + '"has_options=1,material=Wool,climate=Cool|Windy",/m/h/mh01-gray_main.jpg,/m/h/mh01-gray_back.jpg,'
        + '"sku=MH01-S-Red,size=S,color=Red|sku=MH01-M-Gray,size=M,color=Gray"\n'
    )
    (fixtures / "CatalogSampleData/fixtures/SimpleProduct/products_gear_bags.csv").write_text(
        'category,name,sku,price,qty,description,material,attribute_set\n"Gear\nBags",Duffle,24-MB01,34,100,<p>Big.</p>,"Nylon\nPolyester",Gear\n'
    )
    (fixtures / "CatalogSampleData/fixtures/SimpleProduct/images_gear_bags.csv").write_text(
        "sku,image\n24-MB01,/m/b/mb01-blue-0.jpg\n"
    )
    target = tmp_path / "luma"
    assert convert_sample_data(source, target) == 2
    from hybrid_search.catalog import open_catalogue

    products = {p.id: p for p in open_catalogue(target).records()}  # type: ignore[union-attr]
    hoodie, bag = products["MH01"], products["24-MB01"]
    assert (hoodie.title, hoodie.price, hoodie.colours, hoodie.sizes) == (
        "Chaz Hoodie",
        52.0,
        ["Gray", "Red"],
        ["M", "S"],
    )  # type: ignore[union-attr]
    assert hoodie.category_paths == [["Men", "Tops", "Hoodies"]]  # type: ignore[union-attr]
    assert hoodie.images == ["pub/media/catalog/product/m/h/mh01-gray_main.jpg",  # type: ignore[union-attr]
                             "pub/media/catalog/product/m/h/mh01-gray_back.jpg",
                             "pub/media/catalog/product/m/h/mh01-red_main.jpg"]  # fmt: skip
    assert hoodie.attributes == {"climate": ["Cool", "Windy"]} and hoodie.materials == ["Wool"]  # type: ignore[union-attr]
    assert hoodie.description == "Warm. • Hood."  # type: ignore[union-attr]
    assert (bag.category_paths, bag.materials) == ([["Gear", "Bags"]], ["Nylon", "Polyester"])  # type: ignore[union-attr]
    assert (target / "pub/media/catalog/product").is_dir()


def test_html_to_text() -> None:
    assert (
        html_to_text("<p>Soft &amp; warm.</p>\n<ul><li>Hood.</li><li>Pocket.</li></ul>")
        == "Soft & warm. • Hood. • Pocket."
    )
