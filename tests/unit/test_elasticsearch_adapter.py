"""The Elasticsearch adapter, checked by the HTTP requests it sends.

No Elasticsearch node runs here, so :class:`FakeElasticsearch` is a loopback HTTP server that answers the way an
Elasticsearch 8.15 node does (product header, compatible-with=8 content type, realistic bodies) and records every
request. The adapter and the real ``elasticsearch`` client run unchanged; the tests assert on what went over the
wire, not on mocks.
"""

from __future__ import annotations

import base64
import json
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from hybrid_search.engine import (
    BulkResult,
    ClusterHealth,
    EncoderRef,
    KnnClause,
    SearchRequest,
    load_definition,
)
from hybrid_search.engine.base import MAX_REASON, engine_reason
from hybrid_search.engine.elasticsearch import ElasticsearchEngine
from hybrid_search.errors import (
    EncoderMismatchError,
    EngineAuthError,
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IndexNotFoundError,
    ValidationError,
)

pytestmark = pytest.mark.unit

DEFINITION = load_definition({"text": (EncoderRef("minilm", "v1"), 4)})
MINILM = {"text_vector": EncoderRef("minilm", "v1")}
FILTER = {"term": {"categories": "Jackets"}}
JSON_TYPE = "application/vnd.elasticsearch+json; compatible-with=8"

# ---- a loopback Elasticsearch 8.15 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as the server received it; ``body`` is parsed JSON, a list of NDJSON lines, or None."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    headers: dict[str, str]  # lower-case names


Reply = tuple[int, Any]
Route = Reply | Callable[[Sent], Reply]


def index_get(name: str, aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    """What ``GET /<index>`` answers for one index created from DEFINITION."""
    return {
        name: {
            "aliases": {alias: {"is_write_index": True} for alias in aliases},
            "mappings": {
                "dynamic": "strict",
                "_meta": DEFINITION.meta(),
                "properties": {"id": {"type": "keyword"}},
            },
            "settings": {
                "index": {
                    "number_of_shards": "1",
                    "number_of_replicas": "0",
                    "provided_name": name,
                    "creation_date": "1718000000000",
                    "uuid": "Xb1Zt3tXQ2GJk9nY1cUeWw",
                    "version": {"created": "8512000"},
                }
            },
        }
    }


def es_error(status: int, kind: str, reason: str, **extra: Any) -> Reply:
    cause = {"type": kind, "reason": reason, **extra}
    return status, {"error": {"root_cause": [cause], **cause}, "status": status}


def default_routes() -> dict[tuple[str, str], Route]:
    """A cluster holding ``products-v1`` behind the write alias ``products``."""
    v1 = index_get("products-v1", ("products",))
    return {
        ("GET", "/"): (
            200,
            {
                "name": "es01",
                "cluster_name": "docker-cluster",
                "cluster_uuid": "Q3e0cRjFQzqJ7pJ9yq4P5g",
                "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1"},
                "tagline": "You Know, for Search",
            },
        ),
        ("GET", "/_cluster/health"): (
            200,
            {
                "cluster_name": "docker-cluster",
                "status": "green",
                "timed_out": False,
                "number_of_nodes": 1,
                "number_of_data_nodes": 1,
                "active_primary_shards": 1,
                "active_shards": 1,
                "unassigned_shards": 0,
            },
        ),
        ("GET", "/products-v*"): (200, v1),
        ("GET", "/products"): (200, v1),
        ("GET", "/products-v1"): (200, v1),
        ("GET", "/products-v9"): (200, {}),  # allow_no_indices + ignore_unavailable: empty, not 404
        ("POST", "/_aliases"): (200, {"acknowledged": True}),
        ("DELETE", "/products-v1"): (200, {"acknowledged": True}),
        ("GET", "/products-v1/_doc/nope"): (404, {"_index": "products-v1", "_id": "nope", "found": False}),
        ("GET", "/products-v1/_doc/p1"): (
            200,
            {
                "_index": "products-v1",
                "_id": "p1",
                "_version": 1,
                "_seq_no": 0,
                "_primary_term": 1,
                "found": True,
                "_source": {"id": "p1", "title": "Red hoodie"},
            },
        ),
        ("GET", "/gone/_doc/p1"): es_error(
            404, "index_not_found_exception", "no such index [gone]", index="gone", **{"resource.id": "gone"}
        ),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _handle(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        if "x-ndjson" in (self.headers.get("Content-Type") or ""):
            body: Any = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            body = json.loads(raw) if raw else None
        sent = Sent(
            self.command,
            unquote(url.path),
            dict(parse_qsl(url.query)),
            body,
            {k.lower(): v for k, v in self.headers.items()},
        )
        fake.requests.append(sent)
        status, data = fake.reply(sent)
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        if fake.product_header:
            self.send_header("X-Elastic-Product", "Elasticsearch")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    fake: FakeElasticsearch


class FakeElasticsearch:
    """An Elasticsearch 8.15 look-alike on 127.0.0.1 that records each request in :attr:`requests`."""

    def __init__(self, *, password: str | None = None, product_header: bool = True) -> None:
        self.routes = default_routes()
        self.requests: list[Sent] = []
        self.auth = (
            None if password is None else "Basic " + base64.b64encode(f"elastic:{password}".encode()).decode()
        )
        self.product_header = product_header
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def reply(self, sent: Sent) -> Reply:
        if self.auth is not None and sent.headers.get("authorization") != self.auth:
            return es_error(
                401,
                "security_exception",
                "unable to authenticate user [elastic] for REST request [/]",
                header={"WWW-Authenticate": ['Basic realm="security" charset="UTF-8"']},
            )
        route = self.routes.get((sent.method, sent.path))
        if route is None:  # what Elasticsearch answers for an unknown endpoint
            return 400, {
                "error": f"no handler found for uri [{sent.path}] and method [{sent.method}]",
                "status": 400,
            }
        return route(sent) if callable(route) else route

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def last(self, method: str, path: str) -> Sent:
        return [r for r in self.requests if (r.method, r.path) == (method, path)][-1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch()
    yield server
    server.stop()


@pytest.fixture
def engine(fake: FakeElasticsearch) -> Iterator[ElasticsearchEngine]:
    client = ElasticsearchEngine(fake.url, timeout_s=5, max_retries=0)
    yield client
    client.close()


def vector(*values: float) -> list[float]:
    return list(values)


# ---- cluster ------------------------------------------------------------------------------------------------


def test_info_and_health_read_root_and_cluster_health(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    assert engine.info()["version"]["number"] == "8.15.0"
    health = engine.health(wait_for_status="yellow", timeout_s=30)
    assert health == ClusterHealth(
        status="green",
        number_of_nodes=1,
        cluster_name="docker-cluster",
        engine="elasticsearch",
        version="8.15.0",
    )
    assert fake.calls() == [("GET", "/"), ("GET", "/"), ("GET", "/_cluster/health")]
    assert fake.requests[-1].params == {"wait_for_status": "yellow", "timeout": "30s"}
    engine.health()
    assert fake.requests[-1].params == {}


def test_requests_carry_basic_auth_and_the_compatibility_header() -> None:
    server = FakeElasticsearch(password="s3cret")
    try:
        with ElasticsearchEngine(server.url, username="elastic", password="s3cret", max_retries=0) as client:
            client.info()
    finally:
        server.stop()
    headers = server.requests[0].headers
    assert headers["authorization"] == "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    assert headers["accept"] == JSON_TYPE


def test_health_waits_longer_than_the_request_timeout(fake: FakeElasticsearch) -> None:
    green = fake.routes[("GET", "/_cluster/health")]
    assert not callable(green)

    def slow(sent: Sent) -> Reply:
        time.sleep(1.0)  # the cluster turns yellow after a second
        return green

    fake.routes[("GET", "/_cluster/health")] = slow
    with ElasticsearchEngine(fake.url, timeout_s=0.5, max_retries=0) as client:
        assert client.health(wait_for_status="yellow", timeout_s=5).status == "green"


# ---- indices and aliases --------------------------------------------------------------------------------


def test_create_index_puts_the_exact_dense_vector_body(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    fake.routes["PUT", "/products-v2"] = (
        200,
        {"acknowledged": True, "shards_acknowledged": True, "index": "products-v2"},
    )
    assert engine.create_index("products", DEFINITION) == "products-v2"

    assert fake.calls() == [("GET", "/products-v*"), ("PUT", "/products-v2"), ("GET", "/products-v*")]
    assert fake.requests[0].params == {"allow_no_indices": "true", "ignore_unavailable": "true"}
    body = fake.requests[1].body
    assert body["settings"] == {
        "index": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "analysis": {
                "normalizer": {"facet": {"type": "custom", "filter": ["lowercase", "asciifolding"]}}
            },
        }
    }
    assert "knn" not in body["settings"]["index"]  # an OpenSearch setting: Elasticsearch rejects it
    properties = dict(body["mappings"]["properties"])
    assert properties.pop("text_vector") == {
        "type": "dense_vector",
        "dims": 4,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
    }
    assert properties == dict(DEFINITION.properties)
    assert not any(field.get("type") == "knn_vector" for field in properties.values())
    assert body["mappings"]["dynamic"] == "strict"
    assert body["mappings"]["_meta"] == {
        "hybrid_search": {
            "schema": 1,
            "vectors": {
                "text_vector": {"encoder": "minilm", "version": "v1", "dim": 4, "similarity": "cosine"}
            },
        }
    }
    assert set(body) == {"settings", "mappings"}


def test_first_index_gets_the_alias_at_once(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    fake.routes["GET", "/products-v*"] = (200, {})
    fake.routes["GET", "/products-v1"] = (200, index_get("products-v1"))
    fake.routes["PUT", "/products-v1"] = (
        200,
        {"acknowledged": True, "shards_acknowledged": True, "index": "products-v1"},
    )
    assert engine.create_index("products", DEFINITION) == "products-v1"
    assert fake.calls()[:2] == [("GET", "/products-v*"), ("PUT", "/products-v1")]
    assert fake.calls()[-1] == ("POST", "/_aliases")
    assert fake.requests[-1].body == {
        "actions": [{"add": {"index": "products-v1", "alias": "products", "is_write_index": True}}]
    }


def test_swap_alias_sends_one_atomic_aliases_body(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    both = index_get("products-v1", ("products",)) | index_get("products-v2")
    fake.routes["GET", "/products-v*"] = (200, both)
    fake.routes["GET", "/products-v2"] = (200, index_get("products-v2"))
    engine.swap_alias("products", "products-v2")
    assert fake.calls()[-1] == ("POST", "/_aliases")
    assert fake.requests[-1].body == {
        "actions": [
            {"remove": {"index": "products-v1", "alias": "products"}},
            {"add": {"index": "products-v2", "alias": "products", "is_write_index": True}},
        ]
    }


def test_swap_alias_refuses_a_missing_or_foreign_index(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    with pytest.raises(ValidationError, match="not a version of alias"):
        engine.swap_alias("products", "orders-v1")
    assert fake.requests == []
    with pytest.raises(IndexNotFoundError, match="products-v9"):
        engine.swap_alias("products", "products-v9")
    assert ("POST", "/_aliases") not in fake.calls()


def test_delete_index_ignores_a_missing_index(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    engine.delete_index("products-v1")
    assert fake.calls() == [("DELETE", "/products-v1")]
    assert fake.requests[0].params == {"ignore_unavailable": "true"}


# ---- writes ---------------------------------------------------------------------------------------------


def test_bulk_write_sends_ndjson_and_classifies_item_errors(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    item = {"_index": "products-v1", "_version": 1, "_seq_no": 0, "_primary_term": 1}
    fake.routes["PUT", "/_bulk"] = (
        200,
        {
            "errors": True,
            "took": 12,
            "items": [
                {
                    "index": {
                        **item,
                        "_id": "p1",
                        "result": "created",
                        "status": 201,
                        "_shards": {"total": 1, "successful": 1, "failed": 0},
                    }
                },
                {
                    "index": {
                        "_index": "products-v1",
                        "_id": "p2",
                        "status": 400,
                        "error": {
                            "type": "mapper_parsing_exception",
                            "reason": "failed to parse field [price] of type [scaled_float] in document with id 'p2'",
                            "caused_by": {
                                "type": "number_format_exception",
                                "reason": 'For input string: "cheap"',
                            },
                        },
                    }
                },
                {
                    "index": {
                        "_index": "products-v1",
                        "_id": "p3",
                        "status": 409,
                        "error": {
                            "type": "version_conflict_engine_exception",
                            "reason": "[p3]: version conflict, document already exists (current version [1])",
                            "index_uuid": "Xb1Zt3tXQ2GJk9nY1cUeWw",
                            "shard": "0",
                            "index": "products-v1",
                        },
                    }
                },
            ],
        },
    )
    documents: list[dict[str, Any]] = [
        {"id": "p1", "title": "Red hoodie", "text_vector": vector(0.5, 0.5, 0.5, 0.5)},
        {"id": "p2", "title": "Blue jacket", "price": "cheap", "text_vector": vector(1, 0, 0, 0)},
        {"id": "p3", "title": "Green scarf"},
        {"id": "p4", "title": "Short vector", "text_vector": vector(1, 0, 0)},
    ]
    result = engine.bulk_write("products", documents, vector_sources=MINILM, refresh=True)

    bulk = fake.last("PUT", "/_bulk")
    assert bulk.params == {"refresh": "true"}
    assert bulk.headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    assert bulk.body == [
        {"index": {"_index": "products", "_id": "p1"}},  # the alias: the engine picks its write index
        documents[0],
        {"index": {"_index": "products", "_id": "p2"}},
        documents[1],
        {"index": {"_index": "products", "_id": "p3"}},
        documents[2],
    ]
    assert result == BulkResult(
        written=1,
        errors=[
            {"id": "p4", "kind": "mapping", "reason": "text_vector has 3 dimensions, index expects 4"},
            {
                "id": "p2",
                "kind": "mapping",
                "status": 400,
                "reason": "mapper_parsing_exception: failed to parse field [price] of type [scaled_float] in "
                "document with id 'p2' (caused by number_format_exception: For input string: \"cheap\")",
            },
            {
                "id": "p3",
                "kind": "conflict",
                "status": 409,
                "reason": "version_conflict_engine_exception: "
                "[p3]: version conflict, document already exists (current version [1])",
            },
        ],
    )


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ({"text_vector": EncoderRef("minilm", "v2")}, "refusing vectors of 'minilm' version 'v2'"),
        ({}, "without naming the encoder"),
    ],
)
def test_bulk_write_refuses_foreign_vectors_before_writing(
    fake: FakeElasticsearch, engine: ElasticsearchEngine, sources: dict[str, EncoderRef], message: str
) -> None:
    documents = [{"id": "p1", "text_vector": vector(1, 0, 0, 0)}]
    with pytest.raises(EncoderMismatchError, match=message):
        engine.bulk_write("products", documents, vector_sources=sources)
    # only the index metadata was read (to learn which encoder the index records): nothing was written
    assert {method for method, _ in fake.calls()} == {"GET"}
    assert all(path.startswith("/products") for _, path in fake.calls())


def test_delete_documents_counts_the_ones_that_existed(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    fake.routes["PUT", "/_bulk"] = (
        200,
        {
            "errors": False,
            "took": 3,
            "items": [
                {
                    "delete": {
                        "_index": "products-v1",
                        "_id": "p1",
                        "_version": 2,
                        "result": "deleted",
                        "status": 200,
                    }
                },
                {
                    "delete": {
                        "_index": "products-v1",
                        "_id": "p9",
                        "_version": 1,
                        "result": "not_found",
                        "status": 404,
                    }
                },
            ],
        },
    )
    assert engine.delete_documents("products", ["p1", "p9"]) == 1
    assert fake.calls() == [("GET", "/products"), ("PUT", "/_bulk")]
    assert fake.requests[-1].params == {"refresh": "false"}
    assert fake.requests[-1].body == [
        {"delete": {"_index": "products-v1", "_id": "p1"}},
        {"delete": {"_index": "products-v1", "_id": "p9"}},
    ]
    assert engine.delete_documents("products", []) == 0
    assert len(fake.requests) == 2


# ---- reads ----------------------------------------------------------------------------------------------

HITS = {
    "took": 4,
    "timed_out": False,
    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
    "hits": {
        "total": {"value": 1, "relation": "eq"},
        "max_score": 3.2,
        "hits": [
            {
                "_index": "products-v1",
                "_id": "p1",
                "_score": 3.2,
                "_source": {"id": "p1", "title": "Red hoodie"},
            }
        ],
    },
    "aggregations": {
        "brands": {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [{"key": "Acme", "doc_count": 1}],
        }
    },
}


def test_search_sends_query_and_top_level_knn(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    fake.routes["POST", "/products/_search"] = (200, HITS)
    request = SearchRequest(
        query={"multi_match": {"query": "red hoodie", "fields": ["title^2", "description"]}},
        knn=(KnnClause("text_vector", (0.1, 0.2, 0.3, 0.4), k=5, num_candidates=50, boost=2.0),),
        filter=(FILTER,),
        size=5,
        from_=10,
        aggs={"brands": {"terms": {"field": "brand.keyword"}}},
        source=("id", "title"),
    )
    assert engine.search("products", request) == HITS
    assert fake.calls() == [("POST", "/products/_search")]
    assert fake.requests[0].params == {}
    assert fake.requests[0].body == {
        "query": {
            "bool": {
                "must": [{"multi_match": {"query": "red hoodie", "fields": ["title^2", "description"]}}],
                "filter": [FILTER],
            }
        },
        "knn": [
            {
                "field": "text_vector",
                "query_vector": [0.1, 0.2, 0.3, 0.4],
                "k": 5,
                "num_candidates": 50,
                "filter": FILTER,
                "boost": 2.0,
            }
        ],
        "size": 5,
        "from": 10,
        "aggs": {"brands": {"terms": {"field": "brand.keyword"}}},
        "_source": ["id", "title"],
        "track_total_hits": True,
    }


def test_msearch_sends_header_and_body_pairs(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    second = {
        **HITS,
        "took": 2,
        "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []},
    }
    fake.routes["POST", "/_msearch"] = (
        200,
        {"took": 6, "responses": [{**HITS, "status": 200}, {**second, "status": 200}]},
    )
    requests = [
        SearchRequest(query={"match": {"title": "hoodie"}}, size=3),
        SearchRequest(knn=(KnnClause("text_vector", (1.0, 0.0, 0.0, 0.0), k=3),), source=False),
    ]
    responses = engine.msearch("products", requests)
    assert [r["took"] for r in responses] == [4, 2]
    sent = fake.last("POST", "/_msearch")
    assert sent.headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    assert sent.body == [
        {"index": "products"},
        {"query": {"match": {"title": "hoodie"}}, "size": 3, "_source": True, "track_total_hits": True},
        {"index": "products"},
        {
            "knn": [
                {"field": "text_vector", "query_vector": [1.0, 0.0, 0.0, 0.0], "k": 3, "num_candidates": 100}
            ],
            "size": 10,
            "_source": False,
            "track_total_hits": True,
        },
    ]
    assert engine.msearch("products", []) == []
    assert len(fake.requests) == 1


def test_msearch_raises_on_a_failed_sub_search(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    _, missing = es_error(404, "index_not_found_exception", "no such index [products]", index="products")
    _, broken = es_error(400, "search_phase_execution_exception", "all shards failed")
    fake.routes["POST", "/_msearch"] = (200, {"took": 1, "responses": [{**HITS, "status": 200}, missing]})
    with pytest.raises(IndexNotFoundError, match="'products' does not exist"):
        engine.msearch("products", [SearchRequest(), SearchRequest()])
    fake.routes["POST", "/_msearch"] = (200, {"took": 1, "responses": [{**HITS, "status": 200}, broken]})
    with pytest.raises(
        EngineRequestError, match=r"^search 2 of 2 failed: search_phase_execution_exception"
    ) as caught:
        engine.msearch("products", [SearchRequest(), SearchRequest()])
    assert (
        caught.value.error_type == "search_phase_execution_exception"
    )  # refused (400): our request, not theirs
    _, crashed = es_error(500, "null_pointer_exception", "oops")
    fake.routes["POST", "/_msearch"] = (200, {"took": 1, "responses": [crashed]})
    with pytest.raises(EngineError, match=r"^search 1 of 1 failed: null_pointer_exception") as failed:
        engine.msearch("products", [SearchRequest()])
    assert not isinstance(failed.value, EngineRequestError)


def test_count_with_and_without_a_query(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
    fake.routes["POST", "/products/_count"] = (200, {"count": 42, "_shards": shards})
    assert engine.count("products") == 42
    assert engine.count("products", FILTER) == 42
    assert fake.calls() == [("POST", "/products/_count")] * 2
    assert fake.requests[0].body is None
    assert fake.requests[1].body == {"query": FILTER}


def test_get_document(fake: FakeElasticsearch, engine: ElasticsearchEngine) -> None:
    assert engine.get_document("products-v1", "p1") == {"id": "p1", "title": "Red hoodie"}
    assert engine.get_document("products-v1", "nope") is None
    with pytest.raises(IndexNotFoundError, match="index_not_found"):
        engine.get_document("gone", "p1")
    assert fake.calls() == [
        ("GET", "/products-v1/_doc/p1"),
        ("GET", "/products-v1/_doc/nope"),
        ("GET", "/gone/_doc/p1"),
    ]


# ---- errors ---------------------------------------------------------------------------------------------


def test_rejected_credentials_are_one_line() -> None:
    server = FakeElasticsearch(password="right")
    try:
        client = ElasticsearchEngine(server.url, username="elastic", password="wrong", max_retries=0)
        with client, pytest.raises(EngineAuthError) as caught:
            client.info()
    finally:
        server.stop()
    assert str(caught.value) == f"Elasticsearch at {server.url} rejected the credentials (info): HTTP 401"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_closed_port_is_one_line(fake: FakeElasticsearch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with ElasticsearchEngine(url, max_retries=1) as client, pytest.raises(EngineUnavailableError) as caught:
        client.count("products")
    message = str(caught.value)
    assert message == f"cannot reach Elasticsearch at {url} (count products): connection refused"
    assert "\n" not in message


def test_a_server_that_is_not_elasticsearch_is_named() -> None:
    server = FakeElasticsearch(product_header=False)
    try:
        with ElasticsearchEngine(server.url, max_retries=0) as client, pytest.raises(EngineError) as caught:
            client.info()
    finally:
        server.stop()
    assert str(caught.value) == (
        f"{server.url} is not Elasticsearch (for OpenSearch set HYBRID_SEARCH_ENGINE=opensearch)"
    )


def test_a_refused_request_is_an_engine_error_with_the_engines_reason(
    fake: FakeElasticsearch, engine: ElasticsearchEngine
) -> None:
    """HTTP 400 answers a request the adapter built: not the user's input (that is checked before), so not a
    ValidationError; the error carries the engine's type and reason, on one line."""
    status, body = es_error(400, "parsing_exception", "unknown query [no_such_query]", line=1, col=27)
    body["error"]["caused_by"] = {
        "type": "named_object_not_found_exception",
        "reason": "[1:27] unknown field",
    }
    fake.routes["POST", "/products/_search"] = (status, body)
    with pytest.raises(EngineRequestError) as caught:
        engine.search("products", SearchRequest(query={"no_such_query": {}}))
    error = caught.value
    assert not isinstance(error, ValidationError)
    assert (error.error_type, error.reason) == (
        "parsing_exception",
        "parsing_exception: unknown query [no_such_query] "
        "(caused by named_object_not_found_exception: [1:27] unknown field)",
    )
    assert str(error) == (
        "Elasticsearch refused a request hybrid-search built (search products): HTTP 400 " + error.reason
    )
    assert error.__cause__ is None and error.__suppress_context__
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.error_type, copy.reason) == (
        EngineRequestError,
        str(error),
        error.error_type,
        error.reason,
    )


def test_engine_reason_keeps_type_and_reason_only_on_one_capped_line() -> None:
    _, body = es_error(
        400, "illegal_argument_exception", "Fielddata is disabled on [title]\nuse a keyword field"
    )
    body["error"]["failed_shards"] = [
        {"shard": 0, "index": "products-v1", "reason": {"query": "the request"}}
    ]
    assert engine_reason(body) == (
        "illegal_argument_exception",
        "illegal_argument_exception: Fielddata is disabled on [title] use a keyword field",
    )
    assert engine_reason(body["error"]) == engine_reason(body)
    assert engine_reason({"error": "no handler found for uri [/x]", "status": 400}) == (
        "",
        "no handler found for uri [/x]",
    )
    kind, reason = engine_reason({"type": "x_exception", "reason": "y" * 2000})
    assert kind == "x_exception" and len(reason) == MAX_REASON and reason.endswith("...")
