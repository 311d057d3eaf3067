"""Fit the learned fusion model (:mod:`hybrid_search.ranking.learned`) on judged queries, with held-out figures.

Each query's cached unfused ``bm25`` and ``text_knn`` lists (as :func:`tuning.fetch_candidates` returns them)
and the candidates' titles give the feature matrix of :func:`hybrid_search.ranking.learned.candidate_features`; gains come
from the judgments (unjudged = 0). K-fold cross-validation over queries fits the model on the other folds and
ranks each held-out query with it, next to BM25 alone and the best global linear (min-max) weight chosen on the
same training folds, so the report says what the model adds on queries it never saw. The model finally saved
is fitted on all queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hybrid_search.errors import ValidationError
from hybrid_search.evaluation.adaptive_tuning import GRID, gain_table
from hybrid_search.evaluation.data import EvalQuery, Judgments
from hybrid_search.evaluation.metrics import ndcg_at_k, paired_bootstrap
from hybrid_search.evaluation.tuning import folds_of
from hybrid_search.ranking.fusion import Hit
from hybrid_search.ranking.learned import DENSE, LEXICAL, LearnedFusion, candidate_features, fit_learned

TITLE_BATCH = 1000


def candidate_titles(
    get_titles: Callable[[Sequence[str]], Mapping[str, str | None]],
    lists: Mapping[str, Mapping[str, Sequence[Hit]]],
) -> dict[str, str | None]:
    """Titles of every BM25 and text kNN candidate of every query, fetched ``TITLE_BATCH`` ids at a time."""
    ids = sorted({h.doc_id for per in lists.values() for name in (LEXICAL, DENSE) for h in per.get(name, ())})
    titles: dict[str, str | None] = {}
    for start in range(0, len(ids), TITLE_BATCH):
        chunk = ids[start : start + TITLE_BATCH]
        found = get_titles(chunk)
        titles.update({doc: found.get(doc) for doc in chunk})
    return titles


def fit_with_cv(
    queries: Sequence[EvalQuery],
    lists: Mapping[str, Mapping[str, Sequence[Hit]]],
    titles: Mapping[str, str | None],
    judged: Judgments,
    *,
    folds: int = 5,
    seed: int = 0,
    rank_window: int | None = None,
) -> tuple[LearnedFusion, dict[str, Any]]:
    """The model fitted on all ``queries`` and a report of held-out nDCG@10 (learned, global weight, BM25)."""
    usable = [q for q in queries if q.text and q.image is None and LEXICAL in lists.get(q.qid, {})]
    usable = [q for q in usable if DENSE in lists[q.qid]]
    if len(usable) < 2 * folds:
        raise ValidationError(
            f"learned fusion needs text queries answered by both {LEXICAL} and {DENSE}: {len(usable)} found, "
            f"at least {2 * folds} needed",
            field="queries",
        )
    qids = [q.qid for q in usable]
    text = {q.qid: q.text or "" for q in usable}
    groups: list[
        tuple[list[str], np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]
    ]
    groups = []
    for q in qids:
        ids, features = candidate_features(text[q], lists[q], titles)
        gains = judged.gains.get(q, {})
        groups.append((ids, features, np.asarray([gains.get(d, 0.0) for d in ids], dtype=np.float64)))
    table = gain_table(lists, qids, judged)  # linear min-max at every grid share: the global-weight baseline
    lexical = np.asarray([ndcg_at_k([h.doc_id for h in lists[q][LEXICAL]], judged.gains.get(q, {}), 10)
                          for q in qids])  # fmt: skip
    learned = np.zeros(len(qids))
    global_scores = np.zeros(len(qids))
    for test in folds_of(len(qids), folds, seed=seed):
        train = np.setdiff1d(np.arange(len(qids)), test)
        model = fit_learned([(groups[i][1], groups[i][2]) for i in train], seed=seed)
        global_scores[test] = table[test, int(np.argmax(table[train].mean(axis=0)))]
        for row in test:
            ids, features, _ = groups[row]
            order = np.argsort(-model.scores(features), kind="stable")[:10]
            learned[row] = ndcg_at_k([ids[i] for i in order], judged.gains.get(qids[row], {}), 10)
    vs_lexical = paired_bootstrap(learned.tolist(), lexical.tolist(), seed=seed)
    vs_global = paired_bootstrap(learned.tolist(), global_scores.tolist(), seed=seed)
    final = fit_learned([(x, y) for _, x, y in groups], seed=seed, rank_window=rank_window)
    report = {
        "queries": len(qids),
        "folds": folds,
        "held_out_ndcg@10": {
            f"{LEXICAL} alone": round(float(lexical.mean()), 4),
            "global share (CV)": round(float(global_scores.mean()), 4),
            "learned (CV)": round(float(learned.mean()), 4),
        },
        "learned_minus_bm25": [round(v, 4) for v in vs_lexical],
        "learned_minus_global": [round(v, 4) for v in vs_global],
        "best_global_share": GRID[int(np.argmax(table.mean(axis=0)))],
        "coefficients": dict(
            zip(final.to_dict()["features"], [round(c, 4) for c in final.coef], strict=True)
        ),
    }
    return final, report


__all__ = ["TITLE_BATCH", "candidate_titles", "fit_with_cv"]
