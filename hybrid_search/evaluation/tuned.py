"""The index's tuned configuration: what ``hybrid-search tune`` saves in the index's ``_meta``, which every search
there then uses for what it leaves unset (method ``tuned``), and how it is saved and removed.

A saved configuration holds the best fusion configuration (:meth:`FusionConfig.as_dict`), the model of
query-adaptive or learned fusion when one was fitted (which then decides the fusion), and how it was tuned
(``tuning``: objective, queries and their fingerprint, folds, configurations tried, in-sample and cross-validated
means, when). :meth:`hybrid_search.search.SearchService.tuned` reads it back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine import SearchEngine
from hybrid_search.evaluation.data import EvalQuery, Judgments, fingerprint
from hybrid_search.evaluation.tuning import TuneReport
from hybrid_search.ranking.fusion import Hit

Lists = Mapping[str, Mapping[str, Sequence[Hit]]]  # qid -> retriever -> its unfused hits


def adaptive_config(
    queries: Sequence[EvalQuery], lists: Lists, judged: Judgments, *, window: int, folds: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit query-adaptive fusion on the candidate lists of rank window ``window``.

    Returns what to save (linear fusion with the adaptive normaliser, the best global share as its weights and
    the model) and the held-out report of :func:`adaptive_tuning.fit_with_cv`.
    """
    from hybrid_search.evaluation.adaptive_tuning import DENSE, LEXICAL, NORMALISER, fit_with_cv

    model, report = fit_with_cv(queries, lists, judged, folds=folds, seed=seed)
    share = report["best_global_share"]
    config = {
        "fusion": "linear",
        "normaliser": NORMALISER,
        "rank_window": window,
        "weights": {LEXICAL: round(1 - share, 6), DENSE: share},
        "adaptive": model.to_dict(),
    }
    return config, report


def learned_config(
    engine: SearchEngine,
    index: str,
    queries: Sequence[EvalQuery],
    lists: Lists,
    judged: Judgments,
    *,
    window: int,
    folds: int,
    seed: int,
    schema: FieldSchema = DEFAULT_SCHEMA,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit learned fusion on the candidate lists of rank window ``window`` (their titles read from ``index``,
    whose field names ``schema`` gives).

    Returns what to save (fusion ``learned`` with the model) and the held-out report of
    :func:`learned_tuning.fit_with_cv`.
    """
    from hybrid_search.evaluation import learned_tuning

    def titles_of(ids: Sequence[str]) -> dict[str, str | None]:
        found = engine.get_fields(index, ids, [schema.title])
        return {doc: fields.get(schema.title) for doc, fields in found.items()}

    titles = learned_tuning.candidate_titles(titles_of, lists)
    ranker, report = learned_tuning.fit_with_cv(
        queries, lists, titles, judged, folds=folds, seed=seed, rank_window=window
    )
    return {"fusion": "learned", "rank_window": window, "learned": ranker.to_dict()}, report


def tuned_config(
    report: TuneReport,
    *,
    folds: int,
    fitted: Mapping[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """The configuration to save: the report's best, then what ``fitted`` (:func:`adaptive_config`,
    :func:`learned_config`) sets, and how it was tuned (``at``: when; default now)."""
    when = at or dt.datetime.now(dt.UTC)
    return {
        **report.best_config.as_dict(),
        **(fitted or {}),
        "tuning": {
            "metric": report.metric,
            "queries": len(report.qids),
            "queries_fingerprint": fingerprint(report.qids),
            "folds": folds,
            "configurations": len(report.configs),
            "fit_mean": report.best_mean,
            "cv_mean": report.cv_mean(),
            "at": when.isoformat(),
        },
    }


def save_tuned_config(engine: SearchEngine, index: str, config: Mapping[str, Any]) -> str:
    """Save ``config`` as the tuned configuration of ``index`` (an alias: the index it points to); returns
    the concrete index that holds it."""
    return engine.set_tuned_config(index, dict(config))


def remove_tuned_config(engine: SearchEngine, index: str) -> str:
    """Remove the tuned configuration of ``index``: its searches fall back to the settings' defaults. Returns
    the concrete index."""
    return engine.set_tuned_config(index, None)


__all__ = ["adaptive_config", "learned_config", "remove_tuned_config", "save_tuned_config", "tuned_config"]
