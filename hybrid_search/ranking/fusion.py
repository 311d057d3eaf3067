"""Score fusion: merge the ranked hit lists of several retrievers into one ranking.

Pure functions over plain data (stdlib only, no engine types, no I/O). Inputs are never mutated;
every returned object is new.

Inputs
------
``results``  ``Mapping[str, Sequence[Hit]]``: retriever name -> its hits in the order the engine returned
             them (score descending). The *rank* of a hit is its 1-based position in that list; lists are
             not re-sorted. A ``doc_id`` may appear at most once per list; scores must be finite.
``weights``  ``Mapping[str, float]``: retriever name -> weight ``w_r`` (see "Weights").

Notation, for a retriever ``r`` whose non-empty list holds the scores ``s_1 .. s_n``::

    min_r, max_r   smallest and largest score of the list
    mu_r         = (1/n) * sum_i s_i
    sigma_r      = sqrt((1/n) * sum_i (s_i - mu_r)^2)       population standard deviation (divides by n)

Normalisers (``normalise(scores, method)``), score ``s`` -> ``N_r(s)``::

    minmax   N(s) = (s - min_r) / (max_r - min_r)                                         in [0, 1]
    zscore   N(s) = (s - mu_r) / sigma_r                                                   unbounded
    l2       N(s) = s / sqrt(sum_i s_i^2)                                                  in [-1, 1]
    dbsf     N(s) = clip((s - (mu_r - 3*sigma_r)) / ((mu_r + 3*sigma_r) - (mu_r - 3*sigma_r)), 0, 1)

``dbsf`` is distribution-based score fusion as Qdrant names it: the interval ``mu +- 3 sigma`` is mapped
onto ``[0, 1]``. Choices made here, on purpose:

* ``sigma`` is the *population* standard deviation (divide by ``n``) for both ``zscore`` and ``dbsf``: a
  hit list is the whole set being rescaled, not a sample of a larger one. (qdrant-client's Python
  fallback divides by ``n - 1``, which widens the interval and pulls values towards 0.5.)
* ``dbsf`` is *clipped* to ``[0, 1]``. With the population sigma no score lies more than ``sqrt(n - 1)``
  sigmas from the mean, so clipping only acts on lists of more than 10 hits with an outlier beyond
  3 sigma; it keeps every value in ``[0, 1]``, so the 0.0 an absent document gets (below) is never above
  a retrieved hit.
* ``l2`` divides by the Euclidean norm of the list, computed with ``math.hypot`` (no overflow). The other
  normalisers assume engine-sized scores (``|s|`` well below 1e150, where squares and spans overflow).
* Sums use ``math.fsum`` (correctly rounded), so results do not depend on summation order.

Degenerate lists (every score equal, which includes a single hit; for ``l2``: every score zero)::

    minmax   every hit -> 1.0   each hit *is* the list's maximum; the list did retrieve it, so a lone
                                hit (e.g. an exact SKU match) must not count as nothing.
    dbsf     every hit -> 0.5   a score equal to mu maps to 0.5 for every sigma > 0; 0.5 is the limit as
                                sigma -> 0, so the formula stays continuous.
    zscore   every hit -> 0.0   a score equal to mu has z = 0 for every sigma > 0 (same argument).
    l2       all zero  -> 0.0   a zero vector has no direction; a single non-zero hit gets s/|s| = +-1.0
                                from the formula itself.

A list is treated as degenerate when ``max_r == min_r`` (or ``sigma_r`` / the norm rounds to zero), so
rounding in ``mu_r`` cannot turn equal scores into huge z-values. An empty list normalises to ``[]``.

Linear fusion (``linear_fusion``)::

    score(d) = sum_r  w_r * V_r(d)
    V_r(d)   = N_r(s_r(d))         if d is in r's list
             = floor_r             otherwise, floor_r = min(0.0, min_i N_r(s_i))

A document missing from a list is scored as that list's *floor*: 0.0, or the list's lowest normalised value
if that is negative. For ``minmax``, clipped ``dbsf`` and ``l2`` of non-negative scores the floor is exactly
0.0 (missing contributes nothing). For ``zscore`` 0.0 would mean "as good as the list's average hit", which
would rank a document the retriever did *not* return above the ones it returned below its mean; a top-k
list says an absent document scored at most its last hit, so the floor is the list's minimum z instead.
In every case an absent document never outscores a retrieved one within the same list.

Reciprocal rank fusion (``rrf_fusion``), rank constant ``k`` (default 60, must be > 0)::

    score(d) = sum_{r : d in r's list}  w_r / (k + rank_r(d))

A document missing from a list contributes 0.0 from it; scores are ignored except as ``raw_score``.

Weights
-------
Used as given, *not* normalised to sum to 1 (scaling every weight scales every score and leaves the order
unchanged). A retriever in ``results`` without a weight gets 1.0; ``weights=None`` means all 1.0. A weight
must be finite and >= 0; a zero weight keeps that list's documents as candidates but gives them no score.
Rejected with ``ValidationError(field="weights")``: negative or non-finite weights, weights naming a
retriever absent from ``results``, and weights that are all zero.

Empty lists are ignored (no entry in ``contributions``); if every list is empty the result is ``[]``.

Explain data and order
----------------------
``Hit`` (input) is a frozen dataclass. ``FusedHit`` and ``Contribution`` (output) are ``NamedTuple``s:
immutable, typed, ``_asdict()`` for JSON, and about twice as cheap to build as frozen dataclasses, which
matters because fusing two lists of 200 hits builds several hundred of them.

Each ``FusedHit`` carries ``contributions``: one ``Contribution`` per retriever with a non-empty list, in
the order of ``results``. ``raw_score`` and ``rank`` are ``None`` when the document is absent from that
list; ``normalised`` is ``N_r(s)`` (or the floor when absent) for linear fusion and ``None`` for RRF;
``weighted`` is the term added to the score. ``score == math.fsum(c.weighted for c in contributions)``
holds exactly (the score *is* that correctly rounded sum, independent of summation order; with two
retrievers plain ``sum`` gives the same float).

Results are sorted by ``score`` descending, ties broken by the document's best (smallest) rank in any
list, then by ``doc_id`` ascending, so equal inputs always give the same order. ``limit`` (``None`` or an
integer >= 0) keeps the first ``limit`` fused hits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hybrid_search.errors import ValidationError

NORMALISERS: tuple[str, ...] = ("minmax", "zscore", "l2", "dbsf")
METHODS: tuple[str, ...] = ("linear", "rrf")
DEFAULT_RANK_CONSTANT = 60
DEFAULT_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class Hit:
    """One hit of one retriever, as the engine returned it."""

    doc_id: str
    score: float


class Contribution(NamedTuple):
    """What one retriever added to a fused score (see the module docstring)."""

    raw_score: float | None
    rank: int | None
    normalised: float | None
    weighted: float


class FusedHit(NamedTuple):
    """A fused hit: ``score == math.fsum(c.weighted for c in contributions.values())``."""

    doc_id: str
    score: float
    contributions: dict[str, Contribution]


# --------------------------------------------------------------------------------------------- normalisers


def _mean_and_sigma(scores: Sequence[float]) -> tuple[float, float]:
    n = len(scores)
    mean = math.fsum(scores) / n
    sigma = math.sqrt(math.fsum((s - mean) * (s - mean) for s in scores) / n)
    return mean, sigma


def _minmax(scores: Sequence[float]) -> list[float]:
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0] * len(scores)
    span = hi - lo
    return [(s - lo) / span for s in scores]


def _zscore(scores: Sequence[float]) -> list[float]:
    if max(scores) == min(scores):
        return [0.0] * len(scores)
    mean, sigma = _mean_and_sigma(scores)
    if sigma == 0.0:
        return [0.0] * len(scores)
    return [(s - mean) / sigma for s in scores]


def _l2(scores: Sequence[float]) -> list[float]:
    norm = math.hypot(*scores)
    if norm == 0.0:
        return [0.0] * len(scores)
    return [s / norm for s in scores]


def _dbsf(scores: Sequence[float]) -> list[float]:
    if max(scores) == min(scores):
        return [0.5] * len(scores)
    mean, sigma = _mean_and_sigma(scores)
    low, high = mean - 3.0 * sigma, mean + 3.0 * sigma
    span = high - low
    if span == 0.0:
        return [0.5] * len(scores)
    clipped: list[float] = []
    for s in scores:
        value = (s - low) / span
        clipped.append(0.0 if value < 0.0 else 1.0 if value > 1.0 else value)
    return clipped


_NORMALISER_FUNCS: dict[str, Callable[[Sequence[float]], list[float]]] = {
    "minmax": _minmax,
    "zscore": _zscore,
    "l2": _l2,
    "dbsf": _dbsf,
}


def _check_normaliser(method: str) -> Callable[[Sequence[float]], list[float]]:
    func = _NORMALISER_FUNCS.get(method)
    if func is None:
        raise ValidationError(
            f"unknown normaliser {method!r}; expected one of {', '.join(NORMALISERS)}", field="normaliser"
        )
    return func


def normalise(scores: Sequence[float], method: str) -> list[float]:
    """Normalise one list's scores with ``method`` (``minmax``, ``zscore``, ``l2`` or ``dbsf``).

    Returns a new list, same length and order. Formulas and degenerate cases: module docstring.
    """
    func = _check_normaliser(method)
    for s in scores:
        if not math.isfinite(s):
            raise ValidationError(f"score {s!r} is not finite", field="scores")
    if not scores:
        return []
    return func(scores)


# ------------------------------------------------------------------------------------------------ validation


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be None or an integer >= 0, got {limit!r}", field="limit")


def _check_rank_constant(rank_constant: float) -> None:
    ok = isinstance(rank_constant, (int, float)) and not isinstance(rank_constant, bool)
    if not ok or not math.isfinite(rank_constant) or rank_constant <= 0:
        raise ValidationError(
            f"rank_constant must be a finite number > 0, got {rank_constant!r}", field="rank_constant"
        )


def _resolve_weights(
    results: Mapping[str, Sequence[Hit]], weights: Mapping[str, float] | None
) -> dict[str, float]:
    given = dict(weights) if weights is not None else {}
    unknown = sorted(name for name in given if name not in results)
    if unknown:
        raise ValidationError(
            f"weights name unknown retriever(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(map(repr, results)) or 'none'}",
            field="weights",
        )
    resolved: dict[str, float] = {}
    for name in results:
        w = given.get(name, DEFAULT_WEIGHT)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValidationError(
                f"weight for retriever {name!r} must be a finite number, got {w!r}", field="weights"
            )
        if w < 0:
            raise ValidationError(
                f"weight for retriever {name!r} is negative ({w!r}); weights must be >= 0", field="weights"
            )
        resolved[name] = float(w)
    if resolved and all(w == 0.0 for w in resolved.values()):
        raise ValidationError(
            "all weights are zero; at least one retriever needs a weight > 0", field="weights"
        )
    return resolved


def _non_empty_lists(results: Mapping[str, Sequence[Hit]]) -> list[tuple[str, Sequence[Hit]]]:
    lists: list[tuple[str, Sequence[Hit]]] = []
    for name, hits in results.items():
        if not hits:
            continue
        seen: set[str] = set()
        for hit in hits:
            if hit.doc_id in seen:
                raise ValidationError(
                    f"retriever {name!r} lists doc_id {hit.doc_id!r} twice", field="results"
                )
            seen.add(hit.doc_id)
            if not math.isfinite(hit.score):
                raise ValidationError(
                    f"retriever {name!r} gives doc_id {hit.doc_id!r} a non-finite score {hit.score!r}",
                    field="results",
                )
        lists.append((name, hits))
    return lists


# ---------------------------------------------------------------------------------------------------- fusion

# One retriever's view of the candidates: (name, doc_id -> (raw_score, rank, normalised, weighted), the
# Contribution of a document the retriever did not return; immutable, so shared). Contribution and FusedHit
# objects are built only for the hits that survive ``limit``.
_Entry = tuple[float, int, float | None, float]
_Table = tuple[str, dict[str, _Entry], Contribution]


def _assemble(tables: list[_Table], limit: int | None) -> list[FusedHit]:
    best_rank: dict[str, int] = {}
    for _, present, _ in tables:
        for doc_id, entry in present.items():
            rank = entry[1]
            if rank < best_rank.get(doc_id, rank + 1):
                best_rank[doc_id] = rank

    # (-score, best rank, doc_id): doc_ids are unique, so sorting these tuples is the documented order.
    order: list[tuple[float, int, str]] = []
    for doc_id, rank in best_rank.items():
        terms = [
            absent.weighted if (found := present.get(doc_id)) is None else found[3]
            for _, present, absent in tables
        ]
        order.append((-math.fsum(terms), rank, doc_id))
    order.sort()
    if limit is not None:
        del order[limit:]

    fused: list[FusedHit] = []
    for negated, _, doc_id in order:
        contributions = {
            name: absent if (found := present.get(doc_id)) is None else Contribution(*found)
            for name, present, absent in tables
        }
        fused.append(FusedHit(doc_id, -negated, contributions))
    return fused


def linear_fusion(
    results: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float] | None = None,
    *,
    normaliser: str = "minmax",
    limit: int | None = None,
) -> list[FusedHit]:
    """Weighted sum of per-retriever normalised scores (module docstring: "Linear fusion")."""
    func = _check_normaliser(normaliser)
    _check_limit(limit)
    resolved = _resolve_weights(results, weights)
    tables: list[_Table] = []
    for name, hits in _non_empty_lists(results):
        weight = resolved[name]
        normed = func([h.score for h in hits])
        present: dict[str, _Entry] = {
            h.doc_id: (h.score, rank, n, weight * n)
            for rank, (h, n) in enumerate(zip(hits, normed, strict=True), 1)
        }
        floor = min(0.0, *normed)
        tables.append((name, present, Contribution(None, None, floor, weight * floor)))
    return _assemble(tables, limit)


def rrf_fusion(
    results: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float] | None = None,
    *,
    rank_constant: float = DEFAULT_RANK_CONSTANT,
    limit: int | None = None,
) -> list[FusedHit]:
    """Weighted reciprocal rank fusion, ``sum_r w_r / (k + rank_r(d))`` (module docstring)."""
    _check_rank_constant(rank_constant)
    _check_limit(limit)
    resolved = _resolve_weights(results, weights)
    absent = Contribution(None, None, None, 0.0)
    tables: list[_Table] = []
    for name, hits in _non_empty_lists(results):
        weight = resolved[name]
        present: dict[str, _Entry] = {
            h.doc_id: (h.score, rank, None, weight / (rank_constant + rank)) for rank, h in enumerate(hits, 1)
        }
        tables.append((name, present, absent))
    return _assemble(tables, limit)


def fuse(
    method: str,
    results: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float] | None = None,
    *,
    normaliser: str = "minmax",
    rank_constant: float = DEFAULT_RANK_CONSTANT,
    limit: int | None = None,
) -> list[FusedHit]:
    """Fuse with ``method`` (``"linear"`` or ``"rrf"``).

    ``normaliser`` and ``rank_constant`` are validated whatever the method (a typo never passes silently);
    each is used only by its own method.
    """
    if method not in METHODS:
        raise ValidationError(
            f"unknown fusion method {method!r}; expected one of {', '.join(METHODS)}", field="method"
        )
    _check_normaliser(normaliser)
    _check_rank_constant(rank_constant)
    if method == "linear":
        return linear_fusion(results, weights, normaliser=normaliser, limit=limit)
    return rrf_fusion(results, weights, rank_constant=rank_constant, limit=limit)


__all__ = [
    "DEFAULT_RANK_CONSTANT",
    "DEFAULT_WEIGHT",
    "METHODS",
    "NORMALISERS",
    "Contribution",
    "FusedHit",
    "Hit",
    "fuse",
    "linear_fusion",
    "normalise",
    "rrf_fusion",
]
