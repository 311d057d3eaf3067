"""Search latency over an attached shop index (exact kNN on a plain OpenSearch index) against the own index (HNSW).

    python benchmarks/attached_search.py                 # the 199 Luma products, then x25 copies (4,975)
    python benchmarks/attached_search.py --scales 1 100  # also 19,900 documents

Both indices hold the same Luma products with the same vectors, in the same process and engine (OpenSearch):

- ``own``: the layer's own index (``mappings/``, ``index.knn``, Lucene HNSW), filled by the library
  :class:`Ingestor`;
- ``attached``: a shop's index as the shop made it (its own names, ``"dynamic": "strict"``, no ``index.knn``),
  attached the way ``hybrid-search attach apply`` does (``hs_`` fields without an HNSW graph, the attachment in
  its ``_meta``: ``knn = "exact"``) and embedded by :class:`~hybrid_search.ingest.attached.AttachedIngestor`. Its
  kNN is a ``script_score`` over every pre-filtered document, so its cost grows with the index.

A larger scale copies every document ``N`` times under new ids with its vectors (no re-embedding) into both.
Every query goes through :class:`SearchService` end to end, page 1 of 10 hits from a window of 100, no facets,
methods interleaved per query: ``bm25`` (text kNN weighted 0), ``knn`` (BM25 weighted 0), ``linear`` (both),
``native`` (one request), ``photo`` (a product photo: photo, colour kNN). Printed: p50 per index and method, and
the ratio attached / own. Indices are private (``bench-attached-<pid>-...``) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from query import default_datasets, log, percentile, read_products  # noqa: E402

from hybrid_search.catalog import Product  # noqa: E402
from hybrid_search.catalog.attachment import (  # noqa: E402
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    MODEL_VERSION_FIELD,
    VECTOR_FIELDS,
    AttachConfig,
    ImageSource,
    LexicalSpec,
)
from hybrid_search.catalog.schema import FieldSchema  # noqa: E402
from hybrid_search.encoders.roles import encoder_records  # noqa: E402
from hybrid_search.engine import SearchEngine, create_engine, definition_from_settings  # noqa: E402
from hybrid_search.ingest.attached import AttachedIngestor  # noqa: E402
from hybrid_search.ingest.pipeline import Ingestor  # noqa: E402
from hybrid_search.search import SearchQuery, SearchService, apply_search_threads, search_encoders  # noqa: E402
from hybrid_search.settings import Settings, get_settings  # noqa: E402

INDEX_ROLES = ("text", "image", "colour")
METHODS: dict[str, dict[str, Any]] = {
    "bm25": {"fusion": "linear", "weights": {"text_knn": 0.0}},
    "knn": {"fusion": "linear", "weights": {"bm25": 0.0, "text_knn": 1.0}},
    "linear": {"fusion": "linear"},
    "native": {"fusion": "native"},
}
SHOP_BODY: dict[str, Any] = {  # the shop's index, as tests/shop_support.py makes it
    "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
    "mappings": {
        "dynamic": "strict",
        "_meta": {"owner": "shop-team"},
        "properties": {
            "sku": {"type": "keyword"},
            "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "body": {"type": "text"},
            "colours": {"type": "keyword"},
            "price_usd": {"type": "scaled_float", "scaling_factor": 100},
            "picture": {"type": "keyword", "index": False},
            "modified": {"type": "date"},
        },
    },
}
SCHEMA = FieldSchema(
    id="sku", title="name", description="body", colour="colours", price="price_usd", image="picture",
    updated_at="modified", keywords={"name": "name.raw"},
)  # fmt: skip


def shop_document(product: Product) -> dict[str, Any]:
    return {
        "sku": product.id, "name": product.title, "body": product.description or "",
        "colours": list(product.colours), "price_usd": product.price,
        "picture": product.images[0] if product.images else None, "modified": "2025-01-01T00:00:00Z",
    }  # fmt: skip


def bulk(http: httpx.Client, index: str, docs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    for start in range(0, len(docs), 500):
        lines = []
        for doc_id, source in docs[start : start + 500]:
            lines += [json.dumps({"index": {"_index": index, "_id": doc_id}}), json.dumps(source)]
        response = http.post("/_bulk", content="\n".join(lines) + "\n",
                             headers={"content-type": "application/x-ndjson"})  # fmt: skip
        response.raise_for_status()
        if response.json()["errors"]:
            raise SystemExit(f"bulk into {index} failed: {response.text[:500]}")
    http.post(f"/{index}/_refresh").raise_for_status()


def all_sources(http: httpx.Client, index: str) -> list[tuple[str, dict[str, Any]]]:
    body = {"size": 10_000, "query": {"match_all": {}}, "sort": ["_doc"]}
    response = http.post(f"/{index}/_search", json=body)
    response.raise_for_status()
    return [(h["_id"], h["_source"]) for h in response.json()["hits"]["hits"]]


def build_own(engine: SearchEngine, settings: Settings, name: str, products: list[Product], base: Path,
              encoders: dict[str, Any]) -> str:  # fmt: skip
    engine.create_index(name, definition_from_settings(settings, encoder_records(settings, encoders)))
    ingestor = Ingestor(settings, engine, encoders)
    for start in range(0, len(products), 100):
        report = ingestor.ingest(
            [p.to_input() for p in products[start : start + 100]], index=name, base_dir=base
        )
        if report.failed:
            raise SystemExit(f"own index: {report.failed[:3]}")
    engine.refresh(name)
    return next(iter(engine.versions(name).values()))


def build_attached(engine: SearchEngine, settings: Settings, http: httpx.Client, index: str,
                   products: list[Product], base: Path, encoders: dict[str, Any]) -> AttachConfig:  # fmt: skip
    http.put(f"/{index}", json=SHOP_BODY).raise_for_status()
    bulk(http, index, [(p.id, shop_document(p)) for p in products])
    records = {
        VECTOR_FIELDS[role]: {**ref.as_meta(), "dim": dim, "similarity": "cosine"}
        for role, (ref, dim) in encoder_records(settings, encoders).items()
        if role in VECTOR_FIELDS
    }
    fields: dict[str, Any] = {
        name: engine.vector_mapping(name, int(r["dim"]), "cosine", approximate=False)
        for name, r in records.items()
    }
    fields |= {CONTENT_HASH_FIELD: {"type": "keyword"}, MODEL_VERSION_FIELD: {"type": "keyword"},
               EMBEDDED_AT_FIELD: {"type": "date"}}  # fmt: skip
    engine.add_fields(index, fields)
    config = AttachConfig(index=index, schema=SCHEMA, lexical=LexicalSpec(fields=("name^3", "body")),
                          images=ImageSource(root=base), knn="exact")  # fmt: skip
    engine.update_meta_block(index, {"vectors": records, "attached": config.to_meta()})
    deadline = time.monotonic() + 30  # the node answers gets with 503 for a moment after the mapping update
    while http.get(f"/{index}/_doc/{products[0].id}").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    ingestor = AttachedIngestor(settings, engine, encoders)
    ids = [p.id for p in products]
    for start in range(0, len(ids), 100):
        report = ingestor.embed(config, ids[start : start + 100])
        if report.failed or report.missing:
            raise SystemExit(f"attached index: failed {report.failed[:3]}, missing {report.missing[:3]}")
    http.post(f"/{index}/_refresh").raise_for_status()
    return config


def scale_to(http: httpx.Client, own: str, shop: str, base: list[tuple[str, dict[str, Any]]],
             shop_base: list[tuple[str, dict[str, Any]]], copies: int, done: int) -> None:  # fmt: skip
    """Add copies ``done..copies-1`` of every document (new ids, same vectors) to both indices."""
    for k in range(done, copies):
        bulk(http, own, [(f"{i}~{k}", {**s, "id": f"{i}~{k}"}) for i, s in base])
        bulk(http, shop, [(f"{i}~{k}", {**s, "sku": f"{i}~{k}"}) for i, s in shop_base])


def measure(service: SearchService, indices: dict[str, str], texts: list[str], photos: list[bytes], rounds: int
            ) -> dict[str, dict[str, float]]:  # fmt: skip
    times: dict[str, dict[str, list[float]]] = {
        kind: {m: [] for m in (*METHODS, "photo")} for kind in indices
    }
    common = {"size": 10, "rank_window": 100, "facets": False}
    work: list[tuple[str, dict[str, Any]]] = [(m, {"text": t, **METHODS[m]}) for t in texts for m in METHODS]
    work += [("photo", {"image": p}) for p in photos]
    for n in range(rounds + 1):  # round 0 warms up
        for method, item in work:
            for kind, index in indices.items():
                start = time.perf_counter()
                service.search(SearchQuery(**item, **common), index=index)
                if n:
                    times[kind][method].append((time.perf_counter() - start) * 1000.0)
    return {kind: {m: percentile(v, 50) for m, v in by.items()} for kind, by in times.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/attached_search.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datasets", type=Path, default=default_datasets())
    parser.add_argument(
        "--scales", type=int, nargs="+", default=[1, 25], help="copies of the catalogue (1 25)"
    )
    parser.add_argument("--queries", type=int, default=30, help="text queries (product titles' words)")
    parser.add_argument("--photos", type=int, default=10, help="photo queries")
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over the queries")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    settings = get_settings()
    if settings.engine != "opensearch":
        raise SystemExit(
            "exact kNN on a plain index is OpenSearch's case: run with HYBRID_SEARCH_ENGINE=opensearch"
        )
    products, base = read_products(args.datasets / "luma")
    rng = random.Random(args.seed)
    sample = rng.sample(products, args.queries)
    texts = [" ".join(p.title.split()[-2:]).lower() for p in sample]  # "kangeroo hoodie", "fitted jacket"
    photos = [
        (base / p.images[0]).read_bytes() for p in rng.sample([p for p in products if p.images], args.photos)
    ]
    encoders = search_encoders(settings)
    index_encoders = {r: e for r, e in encoders.items() if r in INDEX_ROLES}
    prefix = f"bench-attached-{os.getpid()}"
    own_alias, shop = f"{prefix}-own", f"{prefix}-shop"
    http = httpx.Client(base_url=settings.engine_url, timeout=120.0)
    engine = create_engine(settings)
    results: dict[int, dict[str, dict[str, float]]] = {}
    try:
        t = time.perf_counter()
        own = build_own(engine, settings, own_alias, products, base, index_encoders)
        build_attached(engine, settings, http, shop, products, base, index_encoders)
        log(f"built both indices ({len(products)} products each) in {time.perf_counter() - t:.0f} s")
        own_base, shop_base = all_sources(http, own), all_sources(http, shop)
        apply_search_threads(settings)
        service = SearchService(settings, engine, encoders)
        done = 1
        for copies in sorted(args.scales):
            t = time.perf_counter()
            scale_to(http, own, shop, own_base, shop_base, copies, done)
            done = max(done, copies)
            if copies > 1:
                http.post(f"/{own},{shop}/_forcemerge?max_num_segments=1").raise_for_status()
                log(f"scaled to {copies * len(products)} documents in {time.perf_counter() - t:.0f} s")
            results[copies * len(products)] = measure(service, {"own": own_alias, "attached": shop}, texts, photos,
                                                      args.rounds)  # fmt: skip
    finally:
        for name in engine.versions(own_alias).values():
            engine.delete_index(name)
        http.delete(f"/{shop}")
        engine.close()
        http.close()
    header = f"{'documents':>9}  {'method':<7} {'own p50 ms':>10} {'attached p50 ms':>15} {'ratio':>6}"
    print(header)
    for documents, by in results.items():
        for method in by["own"]:
            own_ms, shop_ms = by["own"][method], by["attached"][method]
            print(f"{documents:>9}  {method:<7} {own_ms:>10.2f} {shop_ms:>15.2f} {shop_ms / own_ms:>6.2f}")
    print(
        json.dumps({"queries": args.queries, "photos": args.photos, "rounds": args.rounds, "p50_ms": results})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
