"""Query latency of the hybrid search layer: BM25 alone, kNN alone, native, linear and RRF, on the same index.

    python benchmarks/query.py                       # builds (or reuses) the indices, prints the table
    python benchmarks/query.py --json query.json     # also writes the figures as JSON

Text queries: ``--queries`` Home Depot queries (a fixed random sample of ``homedepot/queries_dev.tsv``) over
an index of its 54,667 product titles, built once with the library :class:`Ingestor` (MiniLM text vectors)
as ``bench-homedepot-v1`` and reused while it holds every title and its vector fields come from the configured
encoders (``--rebuild`` forces a new one).
Image queries: catalogue photos over the Luma catalogue (``bench-luma-v1``, built the same way with photo,
colour and fused vectors).

Every method goes through :class:`SearchService` end to end (query encoding, one engine round trip, fusion),
without facets (``--facets`` adds them), page 1 of ``--size`` hits from a ``--rank-window`` per retriever:

    bm25     BM25 alone (text kNN weighted 0)          knn      text kNN alone (BM25 weighted 0)
    native   one request, the engine sums the scores   linear   BM25 + text kNN, minmax, one _msearch
    rrf      BM25 + text kNN, reciprocal rank fusion

Hit fields come from ``HYBRID_SEARCH_SEARCH_DISPLAY`` (``--display``): ``source`` adds one ``_mget`` of the page.
Sequential: each query runs every method in turn (interleaved, so background load hits all alike).
Concurrent: ``--clients`` threads share every (query, method) pair in a shuffled order.
``encode_ms_p50``: MiniLM ``embed_query`` alone on the queries. ``fusion_ms_p50``: ``fuse("linear", ...)``
alone on the real BM25 and kNN lists of the queries, ``--fusion-hits`` (200) hits each.
Targets: linear p50 <= 1.25 x the slower single retriever's p50, fusion < 1 ms, encoding < 15 ms p50.
The process searches with ``HYBRID_SEARCH_SEARCH_TORCH_THREADS`` torch threads (default 1), set after the
indices are built. Data is read from --datasets (default $HYBRID_SEARCH_DATASETS or <repo>/../shared/datasets).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hybrid_search.catalog import Product, open_catalogue  # noqa: E402
from hybrid_search.encoders.roles import configured_encoders, encoder_records  # noqa: E402
from hybrid_search.engine import SearchEngine, create_engine, definition_from_settings  # noqa: E402
from hybrid_search.engine.definition import vectors_from_meta  # noqa: E402
from hybrid_search.ingest.pipeline import Ingestor  # noqa: E402
from hybrid_search.ranking.fusion import Hit, fuse  # noqa: E402
from hybrid_search.search import SearchQuery, SearchService, apply_search_threads  # noqa: E402
from hybrid_search.search.bodies import bm25_request, knn_request  # noqa: E402
from hybrid_search.settings import Settings, get_settings, load_settings  # noqa: E402

HOMEDEPOT_ALIAS = "bench-homedepot"
LUMA_ALIAS = "bench-luma"
TEXT_METHODS: dict[str, dict[str, Any]] = {
    "bm25": {"fusion": "linear", "weights": {"bm25": 1.0, "text_knn": 0.0}},
    "knn": {"fusion": "linear", "weights": {"bm25": 0.0, "text_knn": 1.0}},
    "native": {"fusion": "native"},
    "linear": {"fusion": "linear"},
    "rrf": {"fusion": "rrf"},
}
IMAGE_METHODS: dict[str, dict[str, Any]] = {
    "image_knn": {"fusion": "linear", "weights": {"image_knn": 1.0, "colour_knn": 0.0}},
    "colour_knn": {"fusion": "linear", "weights": {"image_knn": 0.0, "colour_knn": 1.0}},
    "native": {"fusion": "native"},
    "linear": {"fusion": "linear"},
    "rrf": {"fusion": "rrf"},
}


def default_datasets() -> Path:
    return Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return round(ordered[index], 3)


# ---- indices ------------------------------------------------------------------------------------------


def vector_changes(wanted: dict[str, dict[str, Any]], recorded: dict[str, dict[str, Any]]) -> list[str]:
    """One line per vector field whose record in the index differs from the one the settings would write."""
    return [
        f"{field}: the index has {recorded.get(field) or 'none'}, the settings give {wanted.get(field) or 'none'}"
        for field in sorted(set(wanted) | set(recorded))
        if wanted.get(field) != recorded.get(field)
    ]


def ensure_index(
    engine: SearchEngine,
    settings: Settings,
    alias: str,
    products: list[Product],
    encoders: dict[str, Any],
    *,
    base_dir: Path,
    rebuild: bool,
    batch: int,
) -> str:
    """``<alias>-v1`` holding ``products``: reused when its count matches and its vector fields come from
    ``encoders`` (its ``_meta`` records the vector fields the definition would: encoder, version, dimension and
    similarity, :func:`vector_changes`), else (re)built with the Ingestor. An index built with other encoders
    would answer every query on those fields with an encoder mismatch."""
    name = f"{alias}-v1"
    definition = definition_from_settings(settings, encoder_records(settings, encoders))
    if name in engine.versions(alias).values() and not rebuild:
        count = engine.count(name)
        changes = vector_changes(vectors_from_meta(definition.meta()), engine.vector_records(name))
        if count == len(products) and not changes:
            log(f"reusing {name} ({count} products)")
            return name
        if changes:
            log(f"{name} was built with other encoders than the settings': rebuilding")
            for change in changes:
                log(f"  {change}")
        else:
            log(f"{name} holds {count} products, expected {len(products)}: rebuilding")
    for old in engine.versions(alias).values():
        engine.delete_index(old)
    engine.create_index(alias, definition)
    ingestor = Ingestor(settings, engine, encoders)
    started = time.perf_counter()
    done = 0
    for start in range(0, len(products), batch):
        chunk = products[start : start + batch]
        report = ingestor.ingest([p.to_input() for p in chunk], index=name, base_dir=base_dir)
        if report.failed:
            raise SystemExit(f"ingestion failed: {report.failed[:3]}")
        done += len(chunk)
        rate = done / (time.perf_counter() - started)
        log(f"  {name}: {done}/{len(products)} ({rate:.0f} products/s)")
    engine.refresh(name)
    log(f"built {name} in {time.perf_counter() - started:.0f} s")
    return name


def read_products(folder: Path) -> tuple[list[Product], Path]:
    catalogue = open_catalogue(folder)
    return [p for p in catalogue.records() if isinstance(p, Product)], catalogue.base_dir


def read_queries(path: Path, count: int, seed: int) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        queries = [row[1] for row in csv.reader(handle, delimiter="\t") if len(row) >= 2 and row[1].strip()]
    random.Random(seed).shuffle(queries)
    return queries[:count]


# ---- timing -------------------------------------------------------------------------------------------


def run_methods(
    service: SearchService,
    index: str,
    inputs: list[dict[str, Any]],
    methods: dict[str, dict[str, Any]],
    *,
    common: dict[str, Any],
    clients: int,
    warmup: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    def once(item: dict[str, Any], method: str) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        response = service.search(SearchQuery(**item, **methods[method], **common), index=index)
        return (time.perf_counter() - start) * 1000.0, response.timings

    for item in inputs[:warmup]:
        for method in methods:
            once(item, method)
    sequential: dict[str, list[float]] = {m: [] for m in methods}
    fusion: dict[str, list[float]] = {m: [] for m in methods}
    for item in inputs:
        for method in methods:
            ms, timings = once(item, method)
            sequential[method].append(ms)
            fusion[method].append(float(timings.get("fusion_ms", 0.0)))
    pairs = [(item, method) for item in inputs for method in methods]
    random.Random(seed).shuffle(pairs)
    concurrent: dict[str, list[float]] = {m: [] for m in methods}
    lock = threading.Lock()

    def worker(pair: tuple[dict[str, Any], str]) -> None:
        ms, _ = once(*pair)
        with lock:
            concurrent[pair[1]].append(ms)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(worker, pairs))
    wall = time.perf_counter() - started
    log(f"  {len(pairs)} concurrent searches in {wall:.1f} s ({len(pairs) / wall:.1f}/s, {clients} clients)")
    return {
        method: {
            "p50_ms": percentile(sequential[method], 50),
            "p95_ms": percentile(sequential[method], 95),
            "p50_ms_concurrent": percentile(concurrent[method], 50),
            "p95_ms_concurrent": percentile(concurrent[method], 95),
            "fusion_ms_p50_in_service": percentile(fusion[method], 50),
        }
        for method in methods
    }


def fusion_times(
    engine: SearchEngine, index: str, text_encoder: Any, queries: list[str], hits: int, repeats: int
) -> dict[str, float]:
    """``fuse`` alone on real BM25 and kNN lists of ``hits`` hits each (fetched first, not timed)."""
    inputs = []
    for text in queries:
        vector = text_encoder.embed_query(text).tolist()
        bm25, knn = engine.msearch(
            index,
            [
                bm25_request(text, size=hits, source=False, track_total_hits=False),
                knn_request("text_vector", vector, size=hits, source=False, track_total_hits=False),
            ],
        )
        inputs.append(
            {
                "bm25": [Hit(h["_id"], float(h["_score"])) for h in bm25["hits"]["hits"]],
                "text_knn": [Hit(h["_id"], float(h["_score"])) for h in knn["hits"]["hits"]],
            }
        )
    weights = {"bm25": 0.5, "text_knn": 0.5}
    out: dict[str, float] = {
        "list_length_mean": round(
            sum(len(r["bm25"]) + len(r["text_knn"]) for r in inputs) / (2 * len(inputs)), 1
        )
    }
    for method in ("linear", "rrf"):
        samples: list[float] = []
        for _ in range(repeats):
            for results in inputs:
                start = time.perf_counter()
                fuse(method, results, weights, limit=10)
                samples.append((time.perf_counter() - start) * 1000.0)
        out[f"{method}_p50_ms"] = percentile(samples, 50)
        out[f"{method}_p95_ms"] = percentile(samples, 95)
    return out


# ---- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/query.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets())
    parser.add_argument("--queries", type=int, default=200, help="Home Depot queries (default 200)")
    parser.add_argument("--image-queries", type=int, default=40, help="Luma photos as queries (default 40)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--size", type=int, default=10, help="hits per page (default 10)")
    parser.add_argument("--rank-window", type=int, default=100, help="candidates per retriever (default 100)")
    parser.add_argument(
        "--fusion-hits", type=int, default=200, help="list length for fusion alone (default 200)"
    )
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed queries per method first (default 10)"
    )
    parser.add_argument("--facets", action="store_true", help="compute facets in every search")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the benchmark indices")
    parser.add_argument("--batch", type=int, default=1000, help="products per ingestion batch (default 1000)")
    parser.add_argument("--no-images", action="store_true", help="skip the Luma image queries")
    parser.add_argument(
        "--display", choices=("source", "docvalues"), help="hit fields from (default: the setting, source)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings(search_display=args.display) if args.display else get_settings()
    engine = create_engine(settings)
    health = engine.health()
    # the engine comes from the settings: run once per engine (HYBRID_SEARCH_ENGINE, HYBRID_SEARCH_ENGINE_URL) to
    # compare them on the same data and queries; each builds (once) and reuses its own copy of the indices
    print(f"engine: {health.engine} {health.version} at {settings.engine_url}", flush=True)
    encoders = configured_encoders(settings)
    text_encoder = encoders["text"]
    text_encoder.embed_query("warm up")

    products, base_dir = read_products(args.datasets / "homedepot" / "products.csv")
    hd_index = ensure_index(
        engine, settings, HOMEDEPOT_ALIAS, products, {"text": text_encoder},
        base_dir=base_dir, rebuild=args.rebuild, batch=args.batch,
    )  # fmt: skip
    luma_index = None
    if not args.no_images:  # built before timing, and before the search thread setting below
        luma_products, luma_base = read_products(args.datasets / "luma")
        luma_index = ensure_index(
            engine, settings, LUMA_ALIAS, luma_products, encoders,
            base_dir=luma_base, rebuild=args.rebuild, batch=64,
        )  # fmt: skip
    apply_search_threads(settings)
    queries = read_queries(args.datasets / "homedepot" / "queries_dev.tsv", args.queries, args.seed)
    service = SearchService(settings, engine, {"text": text_encoder})
    common = {"size": args.size, "rank_window": args.rank_window, "facets": args.facets}

    log(f"text queries: {len(queries)} Home Depot queries over {hd_index}")
    encode: list[float] = []
    for text in queries:
        start = time.perf_counter()
        text_encoder.embed_query(text)
        encode.append((time.perf_counter() - start) * 1000.0)
    methods = run_methods(
        service, hd_index, [{"text": q} for q in queries], TEXT_METHODS, common=common,
        clients=args.clients, warmup=args.warmup, seed=args.seed,
    )  # fmt: skip
    fusion = fusion_times(engine, hd_index, text_encoder, queries, args.fusion_hits, repeats=5)
    health = engine.health()
    slower_single = max(methods["bm25"]["p50_ms"], methods["knn"]["p50_ms"])
    slower_single_concurrent = max(methods["bm25"]["p50_ms_concurrent"], methods["knn"]["p50_ms_concurrent"])
    result: dict[str, Any] = {
        "methods": methods,
        "fusion_ms_p50": fusion["linear_p50_ms"],
        "encode_ms_p50": percentile(encode, 50),
        "fusion_vs_slower_single_p50": round(methods["linear"]["p50_ms"] / slower_single, 3),
        "rrf_vs_slower_single_p50": round(methods["rrf"]["p50_ms"] / slower_single, 3),
        "fusion_vs_slower_single_p50_concurrent": round(
            methods["linear"]["p50_ms_concurrent"] / slower_single_concurrent, 3
        ),
        "encode_ms_p95": percentile(encode, 95),
        "fusion": fusion,
        "setup": {
            "index": hd_index,
            "documents": engine.count(hd_index),
            "queries": len(queries),
            "clients": args.clients,
            "size": args.size,
            "rank_window": args.rank_window,
            "facets": args.facets,
            "engine": f"{health.engine} {health.version}",
            "text_encoder": text_encoder.name,
            "torch_threads": settings.search_torch_threads,
            "display": settings.search_display,
            "cpu_count": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
        },
    }

    if luma_index is not None:
        with_photo = [p for p in luma_products if p.main_image][: args.image_queries]
        photos = [{"image": (luma_base / p.main_image).read_bytes()} for p in with_photo if p.main_image]
        log(f"image queries: {len(photos)} Luma photos over {luma_index}")
        image_service = SearchService(settings, engine, encoders)
        image_methods = run_methods(
            image_service, luma_index, photos, IMAGE_METHODS, common=common,
            clients=args.clients, warmup=min(args.warmup, 3), seed=args.seed,
        )  # fmt: skip
        result["image_queries"] = {"methods": image_methods, "queries": len(photos), "index": luma_index}
    result["setup"]["load_average_at_end"] = os.getloadavg()
    engine.close()

    print(
        f"{'method':<12}{'p50 ms':>10}{'p95 ms':>10}{'p50 ms x' + str(args.clients):>14}{'p95 ms x' + str(args.clients):>14}"
    )
    sections = [("text", methods)] + (
        [("image", result["image_queries"]["methods"])] if "image_queries" in result else []
    )
    for label, table in sections:
        print(f"-- {label} queries")
        for name, row in table.items():
            print(
                f"{name:<12}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}"
                f"{row['p50_ms_concurrent']:>14.1f}{row['p95_ms_concurrent']:>14.1f}"
            )
    print(
        f"fusion alone (two lists of {args.fusion_hits}): linear p50 {fusion['linear_p50_ms']:.3f} ms, "
        f"rrf p50 {fusion['rrf_p50_ms']:.3f} ms  (target < 1 ms)"
    )
    print(
        f"query encoding (MiniLM): p50 {result['encode_ms_p50']:.1f} ms, p95 {result['encode_ms_p95']:.1f} ms  (target < 15 ms)"
    )
    print(
        f"linear p50 / slower single p50 = {result['fusion_vs_slower_single_p50']:.3f} "
        f"(rrf {result['rrf_vs_slower_single_p50']:.3f}; with {args.clients} clients "
        f"{result['fusion_vs_slower_single_p50_concurrent']:.3f})  (target <= 1.25)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
