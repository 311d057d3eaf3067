"""Fit the query-adaptive fusion model (:mod:`hybrid_search.ranking.adaptive`) on judged queries, with held-out figures.

From each query's cached unfused lists (``bm25`` and ``text_knn``, as :func:`tuning.fetch_candidates` returns
them), every grid share of the dense retriever is fused offline (linear fusion, min-max) and scored; k-fold
cross-validation then compares, on held-out queries only, the best single global share with the adaptive model
trained on the other folds. The model finally saved is fitted on all queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_search.errors import ValidationError
from hybrid_search.evaluation.data import EvalQuery, Judgments
from hybrid_search.evaluation.metrics import ndcg_at_k, paired_bootstrap
from hybrid_search.evaluation.tuning import folds_of
from hybrid_search.ranking.adaptive import AdaptiveFusion, fit_adaptive, query_features
from hybrid_search.ranking.fusion import Hit, linear_fusion

GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
LEXICAL, DENSE = "bm25", "text_knn"
NORMALISER = "minmax"


def fused_at(lists: Mapping[str, Sequence[Hit]], share: float, limit: int = 10) -> list[str]:
    """The ranking linear fusion gives with the dense retriever's ``share`` (and ``1 - share`` for BM25)."""
    weights = {LEXICAL: 1.0 - share, DENSE: share}
    kept = {name: hits for name, hits in lists.items() if name in weights and weights[name] > 0}
    if not kept:
        return []
    used = {name: weights[name] for name in kept}
    return [h.doc_id for h in linear_fusion(kept, used, normaliser=NORMALISER, limit=limit)]


def gain_table(
    lists: Mapping[str, Mapping[str, Sequence[Hit]]], qids: Sequence[str], judged: Judgments
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """nDCG@10 of each query (rows) fused at each grid share (columns)."""
    return np.asarray(
        [[ndcg_at_k(fused_at(lists[q], w), judged.gains[q], 10) for w in GRID] for q in qids],
        dtype=np.float64,
    )


def fit_with_cv(
    queries: Sequence[EvalQuery],
    lists: Mapping[str, Mapping[str, Sequence[Hit]]],
    judged: Judgments,
    *,
    folds: int = 5,
    alpha: float = 30.0,
    seed: int = 0,
) -> tuple[AdaptiveFusion, dict[str, Any]]:
    """The model fitted on all ``queries`` and a report of held-out nDCG@10: global share vs adaptive."""
    usable = [q for q in queries if q.text and LEXICAL in lists.get(q.qid, {}) and DENSE in lists[q.qid]]
    if len(usable) < 2 * folds:
        raise ValidationError(
            f"adaptive fusion needs text queries answered by both {LEXICAL} and {DENSE}: {len(usable)} found, "
            f"at least {2 * folds} needed",
            field="queries",
        )
    qids = [q.qid for q in usable]
    text = {q.qid: q.text or "" for q in usable}
    table = gain_table(lists, qids, judged)
    features = np.asarray(
        [query_features(text[q], lists[q][LEXICAL], lists[q][DENSE]) for q in qids], dtype=np.float64
    )
    global_scores = np.zeros(len(qids))
    adaptive_scores = np.zeros(len(qids))
    shares: list[float] = []
    for test in folds_of(len(qids), folds, seed=seed):
        train = np.setdiff1d(np.arange(len(qids)), test)
        best = int(np.argmax(table[train].mean(axis=0)))
        model = fit_adaptive(features[train], table[train], GRID, alpha=alpha)
        global_scores[test] = table[test, best]
        for row in test:
            share = model.predict(features[row])
            shares.append(share)
            adaptive_scores[row] = table[row, GRID.index(share)]
    diff, low, high = paired_bootstrap(adaptive_scores.tolist(), global_scores.tolist(), seed=seed)
    final = fit_adaptive(features, table, GRID, alpha=alpha)
    report = {
        "queries": len(qids),
        "folds": folds,
        "held_out_ndcg@10": {
            "global share (CV)": round(float(global_scores.mean()), 4),
            "adaptive (CV)": round(float(adaptive_scores.mean()), 4),
        },
        "adaptive_minus_global": [round(diff, 4), round(low, 4), round(high, 4)],
        "best_global_share": GRID[int(np.argmax(table.mean(axis=0)))],
        "predicted_shares": {str(w): shares.count(w) for w in GRID if shares.count(w)},
    }
    return final, report


__all__ = ["DENSE", "GRID", "LEXICAL", "NORMALISER", "fit_with_cv", "fused_at", "gain_table"]
