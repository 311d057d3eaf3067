"""Kind-aware photo fusion: find the same item by its colours, among products of the same kind as the photo.

A photo query runs two retrievers: ``image_knn`` (CNN features: good at the *kind* of product, weak at the exact
item) and ``colour_knn`` (a colour histogram: good at the *item*, blind to kind). A fixed blend trades one for
the other (``benchmarks/photos.py``). This fusion adds a third term that says which kind the photo shows, voted by
the catalogue categories of the photo's nearest neighbours in CNN space::

    score(d) = sum_r  w_r * cos_r(d)  +  w_kind * ln(K(d) + epsilon)

    cos_r(d)  = 2 * s_r(d) - 1          the cosine similarity behind retriever r's engine score s_r(d): both
                                        engines score a cosine kNN field as (1 + cos) / 2
              = floor_r                 when r did not return d: the lowest cosine r returned
    K(d)      = sum_{i<=m} (1/i) * J(cat(d), cat(n_i)) / sum_{i<=m} (1/i)
                n_1..n_m: the first m hits of ``kind_source`` (image_knn), J: Jaccard index of two products'
                category sets (the ``categories`` keyword: every level of every category path)

``K(d)`` is in [0, 1]: 1 when ``d`` shares all its categories with every neighbour. The logarithm makes the kind a
soft gate: a product of another kind (``K`` near 0) loses ``w_kind * ln(1/epsilon)``, while among products of
the right kind colour and shape decide. Without categories (none on the neighbours or on ``d``) ``K`` is 0 for
every candidate and the term is the same constant for all: the fusion is then the plain weighted sum of cosines.

Pure functions over plain data, like :mod:`hybrid_search.ranking.fusion`; each returned :class:`FusedHit` has one
:class:`Contribution` per retriever (``raw_score``: engine score, ``normalised``: cosine) and one for
``photo_kind`` (``raw_score``: ``K(d)``, ``normalised``: ``ln(K(d) + epsilon)``), adding up to its score.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import Contribution, FusedHit, Hit

KIND = "photo_kind"
DEFAULT_NEIGHBOURS = 20
DEFAULT_EPSILON = 0.05


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    """``|a & b| / |a | b|`` of two category sets; 0.0 when both are empty."""
    left, right = set(a), set(b)
    union = len(left | right)
    return len(left & right) / union if union else 0.0


def kind_agreement(candidate: Collection[str], neighbours: Sequence[Collection[str]]) -> float:
    """``K``: the rank-weighted (1/i) mean Jaccard index of ``candidate``'s categories with each neighbour's."""
    if not neighbours:
        return 0.0
    weights = [1.0 / (i + 1) for i in range(len(neighbours))]
    total = math.fsum(w * jaccard(candidate, cats) for w, cats in zip(weights, neighbours, strict=True))
    return total / math.fsum(weights)


def score_to_cosine(score: float) -> float:
    """The cosine similarity behind an engine's cosine kNN score ``(1 + cos) / 2``."""
    return 2.0 * score - 1.0


def photo_fusion(
    results: Mapping[str, Sequence[Hit]],
    weights: Mapping[str, float],
    categories: Mapping[str, Collection[str]],
    *,
    kind_weight: float,
    kind_source: str = "image_knn",
    neighbours: int = DEFAULT_NEIGHBOURS,
    epsilon: float = DEFAULT_EPSILON,
    limit: int | None = None,
) -> list[FusedHit]:
    """Fuse photo retrievers' hit lists with the kind term (module docstring), best first.

    ``results``: retriever -> hits (engine scores of cosine kNN fields, best first); ``weights``: one per
    retriever of ``results``; ``categories``: doc id -> its categories (missing: none). The kind term needs
    ``kind_source`` among ``results`` when ``kind_weight > 0``. Ties: the better rank in any list, then doc id.
    """
    for name, value in (("kind_weight", kind_weight), ("epsilon", epsilon)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValidationError(f"{name} must be a finite number, got {value!r}", field=name)
    if kind_weight < 0:
        raise ValidationError(f"kind_weight must be >= 0, got {kind_weight}", field="kind_weight")
    if epsilon <= 0:
        raise ValidationError(f"epsilon must be > 0, got {epsilon}", field="epsilon")
    if neighbours < 1:
        raise ValidationError(f"neighbours must be >= 1, got {neighbours}", field="neighbours")
    if limit is not None and limit < 0:
        raise ValidationError(f"limit must be >= 0, got {limit}", field="limit")
    missing = sorted(name for name in results if name not in weights)
    if missing:
        raise ValidationError(f"no weight for retriever(s) {', '.join(missing)}", field="weights")
    if kind_weight > 0 and kind_source not in results:
        raise ValidationError(f"the kind term needs the {kind_source} hits", field="weights")

    tables: list[tuple[str, dict[str, Contribution], Contribution]] = []
    for name, hits in results.items():
        weight = float(weights[name])
        present: dict[str, Contribution] = {}
        for rank, hit in enumerate(hits, start=1):
            if hit.doc_id in present:
                raise ValidationError(
                    f"retriever {name!r} lists doc_id {hit.doc_id!r} twice", field="results"
                )
            if not math.isfinite(hit.score):
                raise ValidationError(
                    f"retriever {name!r} gives {hit.doc_id!r} a non-finite score", "results"
                )
            cosine = score_to_cosine(hit.score)
            present[hit.doc_id] = Contribution(hit.score, rank, cosine, weight * cosine)
        floor = min((c.normalised for c in present.values() if c.normalised is not None), default=0.0)
        tables.append((name, present, Contribution(None, None, floor, weight * floor)))

    candidates = list(dict.fromkeys(doc for _name, present, _absent in tables for doc in present))
    if kind_weight > 0:
        voters = [frozenset(categories.get(hit.doc_id, ())) for hit in results[kind_source][:neighbours]]
        kinds: dict[str, Contribution] = {}
        by_categories: dict[frozenset[str], Contribution] = {}  # products of one kind share their term
        for doc in candidates:
            own = frozenset(categories.get(doc, ()))
            if own not in by_categories:
                agreement = kind_agreement(own, voters)
                log_kind = math.log(agreement + epsilon)
                by_categories[own] = Contribution(agreement, None, log_kind, kind_weight * log_kind)
            kinds[doc] = by_categories[own]
        tables.append((KIND, kinds, Contribution(None, None, None, 0.0)))

    order: list[tuple[float, int, str]] = []
    for doc in candidates:
        terms = [present.get(doc, absent).weighted for _name, present, absent in tables]
        ranks = [c.rank for _name, present, _absent in tables if (c := present.get(doc)) and c.rank]
        order.append((-math.fsum(terms), min(ranks, default=0), doc))
    order.sort()
    if limit is not None:
        del order[limit:]
    return [
        FusedHit(doc, -negated, {name: present.get(doc, absent) for name, present, absent in tables})
        for negated, _rank, doc in order
    ]


__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_NEIGHBOURS",
    "KIND",
    "jaccard",
    "kind_agreement",
    "photo_fusion",
    "score_to_cosine",
]
