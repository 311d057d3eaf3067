"""Ranking metrics for offline relevance evaluation.

Pure functions over plain data (no engine, no I/O). Every function takes the ranking as the engine
returned it and defines its edge cases explicitly.

Inputs
------
``ranking``   ``Sequence[str]``: document ids, best first, in the engine's order. Ties in score were
              already broken by the engine (its order is the ranking); nothing here re-sorts or averages
              over tied positions. A document id may appear at most once (a repeat is a
              ``ValidationError(field="ranking")``). An empty ranking is valid: it retrieved nothing.
``gains``     ``Mapping[str, float]``: judged document id -> gain (graded relevance minus an offset, e.g.
              Home Depot grade - 1). Gains must be finite and >= 0. A document absent from ``gains`` is
              *unjudged* and has gain 0 in ``ndcg_at_k``; ``condensed_ndcg_at_k`` removes it instead.
``relevant``  ``Collection[str]``: the ids that count as relevant for recall, precision and MRR (e.g. the
              judged documents with grade >= 2.33).
``k``         cutoff, an integer >= 1: only the first ``k`` positions of the ranking count.

Formulas (1-based rank ``i``, linear gain ``g_i``)::

    DCG@k        = sum_{i=1..min(k, n)}  g_i / log2(i + 1)
    nDCG@k       = DCG@k(ranking) / IDCG@k,  IDCG@k = DCG@k(gains of *all* judged documents sorted descending)
    condensed    = nDCG@k of the ranking with every unjudged document removed (Sakai's condensed list)
    Recall@k     = |top k  ∩ relevant| / |relevant|
    Precision@k  = |top k  ∩ relevant| / k          (divides by k even when fewer than k documents came back)
    MRR@k        = 1 / (rank of the first relevant document) if it is within the top k, else 0

Edge cases, on purpose:

* IDCG@k = 0 (no judged document has a positive gain): nDCG is 0.0. Nothing could be gained, so no
  ranking is better than another; callers that want to exclude such queries do so before averaging.
* ``relevant`` empty: Recall@k, Precision@k and MRR@k are 0.0 for the same reason (the evaluation runner
  leaves such queries out of those averages and reports how many it left out).
* The ideal ranking takes the gains of every judged document, also ones the engine did not return, so a
  ranking that misses good documents is penalised.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from hybrid_search.errors import ValidationError

__all__ = [
    "condensed_ndcg_at_k",
    "dcg_at_k",
    "idcg_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_bootstrap",
    "precision_at_k",
    "recall_at_k",
]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k must be an integer >= 1, got {k!r}", field="k")


def _check_ranking(ranking: Sequence[str]) -> None:
    if isinstance(ranking, str):
        raise ValidationError("ranking must be a sequence of document ids, not one string", field="ranking")
    if len(set(ranking)) != len(ranking):
        seen: set[str] = set()
        for doc_id in ranking:
            if doc_id in seen:
                raise ValidationError(
                    f"document {doc_id!r} appears more than once in the ranking", field="ranking"
                )
            seen.add(doc_id)


def _check_gains(gains: Mapping[str, float]) -> None:
    for doc_id, gain in gains.items():
        if not math.isfinite(gain) or gain < 0:
            raise ValidationError(
                f"gain of document {doc_id!r} must be finite and >= 0, got {gain!r}"
                " (is the grade offset right?)",
                field="gains",
            )


def dcg_at_k(gains_in_rank_order: Sequence[float], k: int = 10) -> float:
    """Discounted cumulative gain of the first ``k`` gains: ``sum g_i / log2(i + 1)`` (linear gain)."""
    _check_k(k)
    return math.fsum(g / math.log2(i + 2) for i, g in enumerate(gains_in_rank_order[:k]))


def idcg_at_k(gains: Mapping[str, float], k: int = 10) -> float:
    """Ideal DCG@k: the DCG of every judged document's gain, sorted descending."""
    _check_gains(gains)
    return dcg_at_k(sorted(gains.values(), reverse=True), k)


def ndcg_at_k(ranking: Sequence[str], gains: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k over the ranking as returned; an unjudged document has gain 0."""
    _check_ranking(ranking)
    ideal = idcg_at_k(gains, k)
    if ideal == 0.0:
        return 0.0
    return dcg_at_k([gains.get(doc_id, 0.0) for doc_id in ranking[:k]], k) / ideal


def condensed_ndcg_at_k(ranking: Sequence[str], gains: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k after removing every unjudged document (not a key of ``gains``) from the ranking."""
    _check_ranking(ranking)
    return ndcg_at_k([doc_id for doc_id in ranking if doc_id in gains], gains, k)


def _hits(ranking: Sequence[str], relevant: Collection[str], k: int) -> int:
    _check_k(k)
    _check_ranking(ranking)
    return sum(1 for doc_id in ranking[:k] if doc_id in relevant)


def recall_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant documents found in the top ``k`` (0.0 when nothing is relevant)."""
    hits = _hits(ranking, relevant, k)
    return hits / len(relevant) if relevant else 0.0


def precision_at_k(ranking: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Relevant documents in the top ``k`` divided by ``k``."""
    return _hits(ranking, relevant, k) / k


def mrr_at_k(ranking: Sequence[str], relevant: Collection[str], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the top ``k``, else 0.0."""
    _check_k(k)
    _check_ranking(ranking)
    for i, doc_id in enumerate(ranking[:k]):
        if doc_id in relevant:
            return 1.0 / (i + 1)
    return 0.0


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` with a 95% paired bootstrap percentile interval: ``(mean_diff, low, high)``.

    ``a[i]`` and ``b[i]`` are two methods' scores on the same query ``i``. Each of ``samples`` resamples
    draws ``n`` queries with replacement (the same draw for both methods) and takes the mean difference;
    ``low`` / ``high`` are the 2.5th / 97.5th percentiles of those means (numpy's linear interpolation).
    Deterministic for a given ``seed``. An interval that excludes 0 marks a difference unlikely to be noise.
    """
    if len(a) != len(b):
        raise ValidationError(f"paired scores differ in length: {len(a)} vs {len(b)}", field="scores")
    if not a:
        raise ValidationError("paired bootstrap needs at least one query", field="scores")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValidationError(f"samples must be an integer >= 1, got {samples!r}", field="samples")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.all(np.isfinite(diff)):
        raise ValidationError("paired scores must be finite", field="scores")
    mean_diff = math.fsum(diff.tolist()) / len(diff)
    rng = np.random.default_rng(seed)
    means = np.empty(samples, dtype=np.float64)
    n = len(diff)
    chunk = max(1, 2_000_000 // n)  # bound memory: at most ~2M indices at a time
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return mean_diff, float(low), float(high)
