"""Tune client-side fusion on a dev query set, with k-fold cross-validation over queries.

What is searched: the fusion method (``linear`` with a normaliser, or ``rrf`` with a rank constant), the
retrievers' weights (a grid on the simplex: weights are multiples of ``1 / steps`` summing to 1; scaling every
weight leaves a ranking unchanged, so that loses nothing), and the rank window. ``native`` is not tuned here:
its score is computed inside the engine, so it cannot be replayed offline.

How, fast and exactly:

1. :func:`fetch_candidates`: each query's unfused retriever lists, once per rank window, through
   :meth:`SearchService.retrieve` (the very requests ``linear`` / ``rrf`` send; kNN asks for ``k = window``,
   and a kNN top 100 is not always the first 100 of its top 200, so each window is fetched on its own).
2. :func:`fuse_offline`: every candidate configuration is fused from those lists with
   :func:`hybrid_search.ranking.fusion.fuse`, dropping retrievers whose weight is 0 as the live search does: the
   ranking and scores are exactly what :meth:`SearchService.search` returns for that configuration (tested
   in ``tests/integration/test_eval.py``; ``hybrid-search tune`` re-checks a sample live with ``--verify``).
3. :func:`cross_validate`: queries are shuffled (seeded) into ``k`` folds; for each fold the configuration
   with the best mean objective on the other folds is chosen and scored on the held-out fold only. The
   held-out figures are the estimate of what tuning gains; the configuration finally saved is the best on
   all queries, whose in-sample mean is a *fit* (optimistic) and is labelled so.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybrid_search.errors import HybridSearchError, ValidationError
from hybrid_search.evaluation.data import EvalQuery, Judgments
from hybrid_search.evaluation.metrics import condensed_ndcg_at_k, mrr_at_k, ndcg_at_k, recall_at_k
from hybrid_search.ranking.fusion import NORMALISERS, Hit, fuse
from hybrid_search.search import MAX_RANK_WINDOW, RETRIEVERS, SPECS, SearchQuery, SearchService

OBJECTIVES = ("ndcg@10", "condensed_ndcg@10", "mrr@10", "recall@10", "recall@100")
DEFAULT_RANK_CONSTANTS: tuple[float, ...] = (5, 10, 20, 40, 60, 100)
DEFAULT_WINDOWS: tuple[int, ...] = (100, 200)
DEFAULT_STEPS = 10
MIN_TUNED_WINDOW = 10  # the tuned window becomes the index's default: the default page (size 10) must fit

Lists = Mapping[str, Sequence[Hit]]


@dataclass(frozen=True)
class FusionConfig:
    """One candidate configuration; ``weights`` in ``RETRIEVERS`` order."""

    fusion: str
    weights: tuple[tuple[str, float], ...]
    rank_window: int
    normaliser: str | None = None
    rank_constant: float | None = None

    def __post_init__(self) -> None:
        if self.fusion not in ("linear", "rrf"):
            raise ValidationError(f"tuning covers linear and rrf fusion, not {self.fusion!r}", field="fusion")
        if self.fusion == "linear" and self.normaliser not in NORMALISERS:
            raise ValidationError(f"unknown normaliser {self.normaliser!r}", field="normaliser")
        if self.fusion == "rrf" and (
            self.rank_constant is None or not math.isfinite(self.rank_constant) or self.rank_constant <= 0
        ):
            raise ValidationError(f"rank constant must be > 0, got {self.rank_constant!r}", "rank_constant")
        if not MIN_TUNED_WINDOW <= self.rank_window <= MAX_RANK_WINDOW:
            raise ValidationError(
                f"rank window {self.rank_window} must be from {MIN_TUNED_WINDOW} (a default page of 10 must fit "
                f"in it) to {MAX_RANK_WINDOW}",
                field="rank_window",
            )
        if not self.weights or all(w == 0 for _, w in self.weights):
            raise ValidationError("a configuration needs a weight > 0", field="weights")

    @property
    def weight_map(self) -> dict[str, float]:
        return dict(self.weights)

    def label(self) -> str:
        """The configuration as a method spec of ``hybrid-search eval`` (``linear:minmax:bm25=0.7,...@100``)."""
        weights = ",".join(f"{name}={w:g}" for name, w in self.weights)
        middle = self.normaliser if self.fusion == "linear" else f"{self.rank_constant:g}"
        return f"{self.fusion}:{middle}:{weights}@{self.rank_window}"

    def as_dict(self) -> dict[str, Any]:
        """What is saved as the index's tuned configuration (keys of ``SearchService.tuned``)."""
        out: dict[str, Any] = {
            "fusion": self.fusion,
            "rank_window": self.rank_window,
            "weights": self.weight_map,
        }
        if self.fusion == "linear":
            out["normaliser"] = self.normaliser
        else:
            out["rank_constant"] = self.rank_constant
        return out

    def query_params(self, present: Iterable[str] | None = None) -> dict[str, Any]:
        """:class:`SearchQuery` keyword arguments that pin every weight: the configuration's weights of the
        ``present`` retrievers (default: all it names), 0 for every other retriever."""
        keep = set(present) if present is not None else set(self.weight_map)
        params = self.as_dict()
        params["weights"] = {r: self.weight_map.get(r, 0.0) if r in keep else 0.0 for r in RETRIEVERS}
        return params


def simplex_weights(retrievers: Sequence[str], steps: int) -> list[tuple[tuple[str, float], ...]]:
    """Every weight vector of multiples of ``1/steps`` summing to 1 (for two retrievers: 0, 0.1, ... 1)."""
    if steps < 1:
        raise ValidationError(f"weight steps must be >= 1, got {steps}", field="steps")
    out = []
    for parts in itertools.product(range(steps + 1), repeat=len(retrievers)):
        if sum(parts) == steps:
            out.append(tuple((r, round(p / steps, 10)) for r, p in zip(retrievers, parts, strict=True)))
    return out


def grid(
    retrievers: Sequence[str],
    *,
    fusions: Sequence[str] = ("linear", "rrf"),
    normalisers: Sequence[str] = NORMALISERS,
    rank_constants: Sequence[float] = DEFAULT_RANK_CONSTANTS,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    steps: int = DEFAULT_STEPS,
) -> list[FusionConfig]:
    """The full grid, in a fixed order (ties in the objective go to the earliest configuration)."""
    retrievers = _ordered(retrievers)
    weights = simplex_weights(retrievers, steps)
    configs: list[FusionConfig] = []
    for window in windows:
        if "linear" in fusions:
            configs += [FusionConfig("linear", w, window, normaliser=n) for n in normalisers for w in weights]
        if "rrf" in fusions:
            configs += [
                FusionConfig("rrf", w, window, rank_constant=float(k))
                for k in rank_constants
                for w in weights
            ]
    if not configs:
        raise ValidationError("the tuning grid is empty", field="fusion")
    return configs


def random_configs(
    retrievers: Sequence[str],
    trials: int,
    *,
    seed: int = 0,
    fusions: Sequence[str] = ("linear", "rrf"),
    normalisers: Sequence[str] = NORMALISERS,
    rank_constants: Sequence[float] = DEFAULT_RANK_CONSTANTS,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> list[FusionConfig]:
    """``trials`` random configurations: method, normaliser / rank constant and window drawn uniformly from the
    lists, weights uniformly from the simplex (flat Dirichlet), rounded to 3 decimals; duplicates dropped."""
    if trials < 1:
        raise ValidationError(f"trials must be >= 1, got {trials}", field="trials")
    retrievers = _ordered(retrievers)
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    seen: dict[FusionConfig, None] = {}
    for _ in range(trials):
        draws = [rng.expovariate(1.0) for _ in retrievers]
        total = sum(draws)
        weights = tuple((r, round(d / total, 3)) for r, d in zip(retrievers, draws, strict=True))
        if all(w == 0 for _, w in weights):
            continue
        fusion = rng.choice(list(fusions))
        window = rng.choice(list(windows))
        if fusion == "linear":
            config = FusionConfig("linear", weights, window, normaliser=rng.choice(list(normalisers)))
        else:
            config = FusionConfig(
                "rrf", weights, window, rank_constant=float(rng.choice(list(rank_constants)))
            )
        seen.setdefault(config, None)
    return list(seen)


def _ordered(retrievers: Sequence[str]) -> list[str]:
    unknown = [r for r in retrievers if r not in RETRIEVERS]
    if unknown or not retrievers:
        raise ValidationError(
            f"retrievers to tune must be some of {', '.join(RETRIEVERS)}, got {', '.join(retrievers) or 'none'}",
            field="retrievers",
        )
    return [r for r in RETRIEVERS if r in retrievers]


def applicable(retrievers: Sequence[str], query: EvalQuery) -> list[str]:
    """The retrievers whose inputs the query has (a text query cannot run image kNN)."""
    inputs = {"text": query.text is not None, "image": query.image is not None}
    return [r for r in retrievers if all(inputs[need] for need in SPECS[r].needs)]


def fetch_candidates(
    service: SearchService,
    index: str,
    queries: Sequence[EvalQuery],
    retrievers: Sequence[str],
    windows: Sequence[int],
    *,
    on_query: Callable[[int], None] | None = None,
) -> dict[int, dict[str, dict[str, list[Hit]]]]:
    """``{window: {qid: {retriever: hits}}}``: each query's unfused lists, one ``_msearch`` per window."""
    out: dict[int, dict[str, dict[str, list[Hit]]]] = {w: {} for w in windows}
    for done, query in enumerate(queries, 1):
        image = query.image.read_bytes() if query.image is not None else None
        names = applicable(retrievers, query)
        if not names:
            raise ValidationError(
                f"query {query.qid}: none of the retrievers {', '.join(retrievers)} can answer it",
                field="retrievers",
            )
        for window in windows:
            request = SearchQuery(
                text=query.text,
                image=image,
                weights={r: 1.0 if r in names else 0.0 for r in RETRIEVERS},
                rank_window=window,
                size=min(10, window),
                facets=False,
            )
            out[window][query.qid] = service.retrieve(request, index=index)
        if on_query is not None:
            on_query(done)
    return out


def fuse_offline(lists: Lists, config: FusionConfig, limit: int) -> list[tuple[str, float]]:
    """``[(doc_id, score)]`` of ``config`` fused from cached lists, as the live search ranks them: retrievers
    with weight 0 (or absent from ``config``) do not run, so their lists are left out."""
    weights = config.weight_map
    active = {name: hits for name, hits in lists.items() if weights.get(name, 0.0) > 0}
    if not active:
        return []
    fused = fuse(
        config.fusion,
        active,
        {name: weights[name] for name in active},
        normaliser=config.normaliser or "minmax",
        rank_constant=config.rank_constant or 60,
        limit=limit,
    )
    return [(f.doc_id, f.score) for f in fused]


def objective(
    name: str, ranking: Sequence[str], gains: Mapping[str, float], relevant: frozenset[str]
) -> float:
    if name == "ndcg@10":
        return ndcg_at_k(ranking, gains, 10)
    if name == "condensed_ndcg@10":
        return condensed_ndcg_at_k(ranking, gains, 10)
    if name == "mrr@10":
        return mrr_at_k(ranking, relevant, 10)
    if name == "recall@10":
        return recall_at_k(ranking, relevant, 10)
    if name == "recall@100":
        return recall_at_k(ranking, relevant, 100)
    raise ValidationError(f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}", field="metric")


def objective_depth(name: str) -> int:
    return 100 if name == "recall@100" else 10


def score_matrix(
    candidates: Mapping[int, Mapping[str, Lists]],
    configs: Sequence[FusionConfig],
    qids: Sequence[str],
    judged: Judgments,
    metric: str = "ndcg@10",
    *,
    on_config: Callable[[int], None] | None = None,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``scores[c, q]``: the objective of configuration ``c`` on query ``q``."""
    objective(metric, [], {}, frozenset())  # validates the name
    depth = objective_depth(metric)
    scores = np.zeros((len(configs), len(qids)), dtype=np.float64)
    for c, config in enumerate(configs):
        per_window = candidates[config.rank_window]
        for q, qid in enumerate(qids):
            ranking = [doc for doc, _ in fuse_offline(per_window[qid], config, depth)]
            scores[c, q] = objective(
                metric, ranking, judged.gains.get(qid, {}), judged.relevant.get(qid, frozenset())
            )
        if on_config is not None:
            on_config(c + 1)
    return scores


@dataclass(frozen=True)
class Fold:
    """One fold: the configuration chosen on the other folds and how it did there and on this fold."""

    number: int
    chosen: int
    train_mean: float
    held_out_mean: float
    held_out: tuple[int, ...]  # column indices (queries) of this fold


def folds_of(n_queries: int, folds: int, seed: int = 0) -> list[np.ndarray[Any, np.dtype[np.intp]]]:
    """Query indices shuffled (seeded) and split into ``folds`` near-equal folds."""
    if not 2 <= folds <= n_queries:
        raise ValidationError(
            f"folds must be from 2 to the number of queries ({n_queries}), got {folds}", field="folds"
        )
    order = np.random.default_rng(seed).permutation(n_queries)
    return [np.sort(part) for part in np.array_split(order, folds)]


def cross_validate(
    scores: np.ndarray[Any, np.dtype[np.float64]],
    folds: int,
    *,
    seed: int = 0,
    among: Sequence[int] | None = None,
) -> list[Fold]:
    """For each fold, the best configuration (of ``among``, default all) on the other folds' queries.

    Ties go to the earliest configuration (``numpy.argmax``), so the outcome is deterministic.
    """
    candidates = np.asarray(list(among) if among is not None else range(scores.shape[0]), dtype=np.intp)
    if candidates.size == 0:
        raise ValidationError("no configurations to choose from", field="fusion")
    out = []
    n = scores.shape[1]
    for number, test in enumerate(folds_of(n, folds, seed), 1):
        train = np.ones(n, dtype=bool)
        train[test] = False
        means = scores[np.ix_(candidates, np.flatnonzero(train))].mean(axis=1)
        best = int(candidates[int(np.argmax(means))])
        out.append(
            Fold(
                number=number,
                chosen=best,
                train_mean=float(means.max()),
                held_out_mean=float(scores[best, test].mean()),
                held_out=tuple(int(i) for i in test),
            )
        )
    return out


def best_overall(scores: np.ndarray[Any, np.dtype[np.float64]], among: Sequence[int] | None = None) -> int:
    """The configuration with the best mean on every query (the one saved); ties: the earliest."""
    candidates = np.asarray(list(among) if among is not None else range(scores.shape[0]), dtype=np.intp)
    return int(candidates[int(np.argmax(scores[candidates].mean(axis=1)))])


def held_out_rankings(
    candidates: Mapping[int, Mapping[str, Lists]],
    configs: Sequence[FusionConfig],
    folds: Sequence[Fold],
    qids: Sequence[str],
    depth: int = 100,
) -> dict[str, list[str]]:
    """Each query ranked by the configuration chosen *without* its fold (top ``depth``)."""
    out: dict[str, list[str]] = {}
    for fold in folds:
        config = configs[fold.chosen]
        for q in fold.held_out:
            qid = qids[q]
            out[qid] = [d for d, _ in fuse_offline(candidates[config.rank_window][qid], config, depth)]
    return out


def verify_live(
    service: SearchService,
    index: str,
    queries: Sequence[EvalQuery],
    candidates: Mapping[int, Mapping[str, Lists]],
    configs: Sequence[FusionConfig],
    pairs: int,
    *,
    seed: int = 0,
) -> int:
    """Re-run ``pairs`` random (query, configuration) pairs live and require the offline ranking and scores.

    Raises :class:`HybridSearchError` naming the first pair that differs (e.g. the index changed meanwhile).
    Returns how many pairs were checked.
    """
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    checked = 0
    for _ in range(max(0, pairs)):
        query = rng.choice(list(queries))
        config = rng.choice(list(configs))
        lists = candidates[config.rank_window][query.qid]
        present = [name for name in lists if config.weight_map.get(name, 0.0) > 0]
        if not present:
            continue
        size = min(10, config.rank_window)
        image = query.image.read_bytes() if query.image is not None else None
        request = SearchQuery(
            text=query.text, image=image, size=size, facets=False, **config.query_params(present=lists)
        )
        live = [(hit.id, hit.score) for hit in service.search(request, index=index).hits]
        offline = fuse_offline(lists, config, size)
        if live != offline:
            raise HybridSearchError(
                f"offline fusion of {config.label()} on query {query.qid} differs from the live search "
                f"(live {live[:3]}..., offline {offline[:3]}...); did the index change while tuning?"
            )
        checked += 1
    return checked


def baseline_rankings(
    candidates: Mapping[int, Mapping[str, Lists]], retriever: str, qids: Sequence[str], depth: int = 100
) -> dict[str, list[str]]:
    """One retriever alone, from the cached lists of the window closest to ``depth`` from above."""
    windows = sorted(candidates)
    window = next((w for w in windows if w >= depth), windows[-1])
    return {qid: [h.doc_id for h in candidates[window][qid].get(retriever, [])[:depth]] for qid in qids}


@dataclass
class TuneReport:
    """What ``hybrid-search tune`` found: folds per family, held-out figures and the configuration to save."""

    metric: str
    qids: list[str]
    configs: list[FusionConfig]
    families: dict[str, list[Fold]]
    best: int
    best_mean: float
    held_out: dict[str, dict[str, Any]]
    baseline: str
    verified: int = 0

    @property
    def best_config(self) -> FusionConfig:
        return self.configs[self.best]

    def cv_mean(self, family: str = "all") -> float:
        """Held-out mean of the objective over every query (each scored by its fold's choice)."""
        folds = self.families[family]
        total = sum(f.held_out_mean * len(f.held_out) for f in folds)
        return total / sum(len(f.held_out) for f in folds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queries": len(self.qids),
            "metric": self.metric,
            "configurations": len(self.configs),
            "folds": {
                family: [
                    {
                        "fold": f.number,
                        "queries": len(f.held_out),
                        "chosen": self.configs[f.chosen].label(),
                        "train_mean": f.train_mean,
                        "held_out_mean": f.held_out_mean,
                    }
                    for f in folds
                ]
                for family, folds in self.families.items()
            },
            "held_out": self.held_out,
            "baseline": self.baseline,
            "best": {
                "label": self.best_config.label(),
                "config": self.best_config.as_dict(),
                "fit_mean": self.best_mean,
                "cv_mean": self.cv_mean(),
            },
            "verified_live": self.verified,
        }


def tune(
    candidates: Mapping[int, Mapping[str, Lists]],
    configs: Sequence[FusionConfig],
    qids: Sequence[str],
    judged: Judgments,
    *,
    retrievers: Sequence[str],
    folds: int = 5,
    metric: str = "ndcg@10",
    seed: int = 0,
    samples: int = 2000,
    on_config: Callable[[int], None] | None = None,
) -> TuneReport:
    """Score every configuration offline, cross-validate per family (``linear``, ``rrf``, ``all``), and
    summarise held-out figures of every metric against each retriever alone (the first is the baseline)."""
    from hybrid_search.evaluation.runner import per_query_metrics, summarise

    configs = list(configs)
    scores = score_matrix(candidates, configs, qids, judged, metric, on_config=on_config)
    families: dict[str, list[Fold]] = {}
    for family in ("linear", "rrf"):
        among = [i for i, c in enumerate(configs) if c.fusion == family]
        if among and len(among) < len(configs):
            families[family] = cross_validate(scores, folds, seed=seed, among=among)
    families["all"] = cross_validate(scores, folds, seed=seed)
    best = best_overall(scores)

    per_method: dict[str, dict[str, dict[str, float]]] = {}
    for retriever in retrievers:
        per_method[f"{retriever} alone"] = per_query_metrics(
            baseline_rankings(candidates, retriever, qids), judged, qids
        )
    for family, family_folds in families.items():
        name = "tuned (CV)" if family == "all" else f"tuned {family} (CV)"
        rankings = held_out_rankings(candidates, configs, family_folds, qids)
        per_method[name] = per_query_metrics(rankings, judged, qids)
    baseline = f"{retrievers[0]} alone"
    held_out = summarise(per_method, baseline=baseline, samples=samples, seed=seed)
    return TuneReport(
        metric=metric,
        qids=list(qids),
        configs=configs,
        families=families,
        best=best,
        best_mean=float(scores[best].mean()),
        held_out=held_out,
        baseline=baseline,
    )


__all__ = [
    "DEFAULT_RANK_CONSTANTS",
    "DEFAULT_STEPS",
    "DEFAULT_WINDOWS",
    "OBJECTIVES",
    "Fold",
    "FusionConfig",
    "TuneReport",
    "applicable",
    "baseline_rankings",
    "best_overall",
    "cross_validate",
    "fetch_candidates",
    "folds_of",
    "fuse_offline",
    "grid",
    "held_out_rankings",
    "objective",
    "random_configs",
    "score_matrix",
    "simplex_weights",
    "tune",
    "verify_live",
]
