"""Time ``hybrid_search.ranking.fusion`` on two retriever lists (default: 200 hits each, 50% overlap).

Run from the repository root::

    python -m benchmarks.fusion                      # linear(minmax), linear(dbsf), rrf; p50/p95 in ms
    python -m benchmarks.fusion --limit 10 --json out.json

Each case is one call of the public fusion function on the same pre-built input (building the input is
not timed). The target is under 1 ms per call; ``--check`` exits 1 if any p95 misses ``--target-ms``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hybrid_search.ranking.fusion import FusedHit, Hit, linear_fusion, rrf_fusion


def make_results(hits: int, overlap: float, seed: int) -> dict[str, list[Hit]]:
    """Two lists of ``hits`` hits sharing ``round(hits * overlap)`` documents, sorted by score desc."""
    rng = random.Random(seed)
    shared = round(hits * overlap)
    bm25_ids = [f"doc-{i}" for i in range(hits)]
    knn_ids = [f"doc-{i}" for i in range(hits - shared, 2 * hits - shared)]
    rng.shuffle(knn_ids)
    bm25 = [Hit(d, rng.lognormvariate(2.0, 0.6)) for d in bm25_ids]  # BM25-like: positive, skewed
    knn = [Hit(d, rng.uniform(0.55, 0.95)) for d in knn_ids]  # cosine-similarity-like
    return {
        "bm25": sorted(bm25, key=lambda h: h.score, reverse=True),
        "knn": sorted(knn, key=lambda h: h.score, reverse=True),
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in [0, 100])."""
    index = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def time_case(call: Callable[[], list[FusedHit]], repetitions: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples_ms: list[float] = []
    for _ in range(repetitions):
        start = time.perf_counter_ns()
        call()
        samples_ms.append((time.perf_counter_ns() - start) / 1e6)
    samples_ms.sort()
    return {
        "p50_ms": percentile(samples_ms, 50),
        "p95_ms": percentile(samples_ms, 95),
        "min_ms": samples_ms[0],
        "max_ms": samples_ms[-1],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.fusion",
        description="Time linear(minmax), linear(dbsf) and rrf fusion of two hit lists; print p50/p95 in ms.",
    )
    parser.add_argument("--hits", type=int, default=200, help="hits per list (default: 200)")
    parser.add_argument(
        "--overlap", type=float, default=0.5, help="share of each list also in the other (default: 0.5)"
    )
    parser.add_argument("--repetitions", type=int, default=2000, help="timed calls per case (default: 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per case first (default: 100)")
    parser.add_argument(
        "--limit", type=int, default=None, help="keep only the top LIMIT fused hits (default: keep all)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scores (default: 0)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--target-ms", type=float, default=1.0, help="target per call (default: 1.0)")
    parser.add_argument("--check", action="store_true", help="exit 1 if any p95 exceeds --target-ms")
    args = parser.parse_args(argv)
    if args.hits < 1 or args.repetitions < 1 or args.warmup < 0 or not 0.0 <= args.overlap <= 1.0:
        parser.error("need --hits >= 1, --repetitions >= 1, --warmup >= 0 and 0 <= --overlap <= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = make_results(args.hits, args.overlap, args.seed)
    limit: int | None = args.limit
    cases: dict[str, Callable[[], list[FusedHit]]] = {
        "linear(minmax)": lambda: linear_fusion(results, normaliser="minmax", limit=limit),
        "linear(dbsf)": lambda: linear_fusion(results, normaliser="dbsf", limit=limit),
        "rrf(k=60)": lambda: rrf_fusion(results, rank_constant=60, limit=limit),
    }
    fused_count = len(cases["rrf(k=60)"]())
    timings = {name: time_case(call, args.repetitions, args.warmup) for name, call in cases.items()}

    print(
        f"{args.hits} + {args.hits} hits, overlap {args.overlap:.0%}, {fused_count} fused hits returned, "
        f"{args.repetitions} repetitions, Python {platform.python_version()}"
    )
    print(f"{'case':<16}{'p50 ms':>10}{'p95 ms':>10}{'min ms':>10}")
    for name, t in timings.items():
        print(f"{name:<16}{t['p50_ms']:>10.3f}{t['p95_ms']:>10.3f}{t['min_ms']:>10.3f}")
    over = [name for name, t in timings.items() if t["p95_ms"] > args.target_ms]
    print(f"target {args.target_ms} ms at p95: " + (f"missed by {', '.join(over)}" if over else "met"))

    if args.json is not None:
        report = {
            "hits_per_list": args.hits,
            "overlap": args.overlap,
            "limit": limit,
            "fused_hits": fused_count,
            "repetitions": args.repetitions,
            "warmup": args.warmup,
            "seed": args.seed,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "target_ms": args.target_ms,
            "cases": timings,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
