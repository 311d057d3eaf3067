"""Run retrieval methods over a query set on the live index and score them.

Every (query, method) pair goes through :meth:`SearchService.search` end to end (query encoding, the engine
round trip, fusion), facets off, page 1 of ``min(100, rank window)`` hits: the top 100 that Recall@100 needs
(``MAX_PAGE_SIZE`` is 100, and a page may not reach beyond the rank window). Methods run interleaved per
query, so background load affects all of them alike; latency is the wall time of that call.

Metrics per method (see :mod:`.metrics`): nDCG@10 (unjudged = gain 0), condensed nDCG@10, Recall@1/10/100,
MRR@10 and p50 latency. nDCG figures average over every judged query; Recall and MRR over the queries with at
least one relevant document (``Judgments.relevant``), since a query with none cannot be recalled. Differences
against a baseline method come with a paired bootstrap 95% interval over the same queries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybrid_search.errors import ValidationError
from hybrid_search.evaluation.data import EvalQuery, Judgments
from hybrid_search.evaluation.methods import MethodSpec
from hybrid_search.evaluation.metrics import (
    condensed_ndcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    recall_at_k,
)
from hybrid_search.search import MAX_PAGE_SIZE, SearchQuery, SearchService

GAIN_METRICS = ("ndcg@10", "condensed_ndcg@10")
RELEVANCE_METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10")
METRICS = (*GAIN_METRICS, *RELEVANCE_METRICS)


@dataclass
class MethodRun:
    """One method's rankings (``{qid: [doc_id, ...]}``) and latencies (ms) over the query set."""

    spec: MethodSpec
    rankings: dict[str, list[str]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    size: int = MAX_PAGE_SIZE


def page_size(spec: MethodSpec, service: SearchService, index: str) -> int:
    """``min(100, the method's rank window)``: the longest first page the method may return."""
    window = spec.rank_window
    if window is None and spec.tuned:
        window = service.tuned(index).get("rank_window")
    if window is None:
        window = service.settings.fusion_rank_window
    return min(MAX_PAGE_SIZE, int(window))


def build_query(query: EvalQuery, spec: MethodSpec, size: int, image: bytes | None) -> SearchQuery:
    return SearchQuery(text=query.text, image=image, size=size, facets=False, **spec.query_params())


def run_methods(
    fixed: SearchService,
    tuned: SearchService,
    index: str,
    queries: Sequence[EvalQuery],
    methods: Sequence[MethodSpec],
    *,
    on_query: Callable[[int], None] | None = None,
) -> dict[str, MethodRun]:
    """Every method on every query, interleaved. ``fixed`` must ignore tuned configurations
    (``SearchService(..., use_tuned=False)``); ``tuned`` runs the ``tuned`` method."""
    if fixed.use_tuned:
        raise ValidationError("the fixed methods need a SearchService with use_tuned=False", field="methods")
    if any(m.tuned for m in methods) and not tuned.tuned(index):
        raise ValidationError(
            f"method tuned: index {index} has no tuned configuration; run hybrid-search tune first",
            field="methods",
        )
    runs = {m.name: MethodRun(m, size=page_size(m, tuned if m.tuned else fixed, index)) for m in methods}
    for done, query in enumerate(queries, 1):
        image = query.image.read_bytes() if query.image is not None else None
        for spec in methods:
            run = runs[spec.name]
            service = tuned if spec.tuned else fixed
            request = build_query(query, spec, run.size, image)
            started = time.perf_counter()
            try:
                response = service.search(request, index=index)
            except ValidationError as exc:
                raise ValidationError(
                    f"method {spec.name} on query {query.qid}: {exc}", field=exc.field
                ) from None
            run.latencies_ms.append((time.perf_counter() - started) * 1000.0)
            run.rankings[query.qid] = [hit.id for hit in response.hits]
        if on_query is not None:
            on_query(done)
    return runs


def per_query_metrics(
    rankings: Mapping[str, Sequence[str]], judged: Judgments, qids: Sequence[str]
) -> dict[str, dict[str, float]]:
    """``{metric: {qid: value}}``: gain metrics for every query, relevance metrics only where something is
    relevant."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for qid in qids:
        ranking = rankings.get(qid, [])
        gains = judged.gains.get(qid, {})
        out["ndcg@10"][qid] = ndcg_at_k(ranking, gains, 10)
        out["condensed_ndcg@10"][qid] = condensed_ndcg_at_k(ranking, gains, 10)
        relevant = judged.relevant.get(qid, frozenset())
        if relevant:
            out["recall@1"][qid] = recall_at_k(ranking, relevant, 1)
            out["recall@10"][qid] = recall_at_k(ranking, relevant, 10)
            out["recall@100"][qid] = recall_at_k(ranking, relevant, 100)
            out["mrr@10"][qid] = mrr_at_k(ranking, relevant, 10)
    return out


def _mean(values: Mapping[str, float]) -> float | None:
    return math.fsum(values.values()) / len(values) if values else None


def summarise(
    per_method: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    latencies: Mapping[str, Sequence[float]] | None = None,
    baseline: str | None = None,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Mean of every metric per method, p50 latency, and ``vs_baseline``: ``{metric: {diff, low, high}}``."""
    if baseline is not None and baseline not in per_method:
        raise ValidationError(
            f"baseline {baseline!r} is not one of the methods ({', '.join(per_method)})", field="baseline"
        )
    summary: dict[str, dict[str, Any]] = {}
    for name, metrics in per_method.items():
        row: dict[str, Any] = {m: _mean(metrics[m]) for m in METRICS}
        if latencies is not None and latencies.get(name):
            row["p50_ms"] = round(float(np.percentile(latencies[name], 50)), 3)
        if baseline is not None and name != baseline:
            row["vs_baseline"] = {}
            for m in METRICS:
                qids = sorted(metrics[m])
                if not qids:
                    continue
                diff, low, high = paired_bootstrap(
                    [metrics[m][q] for q in qids],
                    [per_method[baseline][m][q] for q in qids],
                    samples=samples,
                    seed=seed,
                )
                row["vs_baseline"][m] = {"diff": diff, "low": low, "high": high}
        summary[name] = row
    return summary


def evaluate(
    fixed: SearchService,
    tuned: SearchService,
    index: str,
    queries: Sequence[EvalQuery],
    judged: Judgments,
    methods: Sequence[MethodSpec],
    *,
    baseline: str | None = None,
    samples: int = 2000,
    seed: int = 0,
    on_query: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run and score ``methods``; the report ``hybrid-search eval --json`` writes.

    ``{"queries": N, "queries_with_relevant": M, "index", "baseline", "methods": {name: {metric: mean,
    "p50_ms", "vs_baseline": {metric: {"diff", "low", "high"}}, "description", "page_size"}}}``.
    """
    if not methods:
        raise ValidationError("no methods to evaluate", field="methods")
    baseline = baseline or methods[0].name
    if baseline not in {m.name for m in methods}:
        raise ValidationError(
            f"baseline {baseline!r} is not one of the methods ({', '.join(m.name for m in methods)})",
            field="baseline",
        )
    runs = run_methods(fixed, tuned, index, queries, methods, on_query=on_query)
    qids = [q.qid for q in queries]
    per_method = {name: per_query_metrics(run.rankings, judged, qids) for name, run in runs.items()}
    summary = summarise(
        per_method,
        latencies={name: run.latencies_ms for name, run in runs.items()},
        baseline=baseline,
        samples=samples,
        seed=seed,
    )
    for name, run in runs.items():
        summary[name]["description"] = run.spec.describe()
        summary[name]["page_size"] = run.size
    return {
        "queries": len(qids),
        "queries_with_relevant": sum(1 for q in qids if judged.relevant.get(q)),
        "index": index,
        "baseline": baseline,
        "methods": summary,
    }


__all__ = [
    "GAIN_METRICS",
    "METRICS",
    "RELEVANCE_METRICS",
    "MethodRun",
    "build_query",
    "evaluate",
    "page_size",
    "per_query_metrics",
    "run_methods",
    "summarise",
]
