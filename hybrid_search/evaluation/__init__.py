"""Offline relevance evaluation: metrics, query/qrels files, method specs, the runner and fusion tuning.

``metrics`` is pure and importable on its own; the runner and tuner talk to the engine only through
``SearchService`` and the engine package.
"""

from hybrid_search.evaluation.metrics import (
    condensed_ndcg_at_k,
    dcg_at_k,
    idcg_at_k,
    mrr_at_k,
    ndcg_at_k,
    paired_bootstrap,
    precision_at_k,
    recall_at_k,
)

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
