"""Rankers: one protocol, one implementation per fusion, and the table that picks a query's ranker once.

A :class:`Ranker` turns what the retrievers found (:class:`Candidates`) into one ranking (:class:`Ranking`)::

    fusion   query                                   ranker            math
    linear   a photo without words (kind term on)    PhotoKindRanker   photo_fusion.photo_fusion
    linear   text, the index has an adaptive model   AdaptiveRanker    adaptive.AdaptiveFusion, then linear_fusion
    linear   any other                               LinearRanker      fusion.linear_fusion
    rrf      any                                     RrfRanker         fusion.rrf_fusion
    native   any                                     NativeRanker      none: the engine summed and paged the scores
    learned  text without a photo                    LearnedRanker     learned.LearnedFusion

:func:`choose_ranker` reads this table from the query's :class:`RankingConfig`; :func:`rank` is the search's
rank stage (pick, then rank). Where a ranker cannot rank what
came back it hands the candidates to the ranker ``linear`` would have been, and says why: ``learned`` falls back
for a photo query or when neither BM25 nor text kNN returned anything; the kind term needs image kNN hits; an
index without an adaptive model keeps the query's weights. The :class:`Ranking` records which fusion ranked and
with which weights, so the response says what happened.

Models are read through callables only when a ranker uses them, so an index's model is loaded (and refused when
malformed) only by the queries it ranks. The fusion math lives in the pure modules named above; this module
only chooses and wires. It never talks to the engine: the models and stored fields a ranker may need come as
narrow callables (:class:`RankingSources`); learned fusion reads its candidates' titles from their doc-value
fields and asks for the stored title only where doc values cut it short.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.adaptive import AdaptiveFusion, query_features
from hybrid_search.ranking.fusion import FusedHit, Hit, fuse
from hybrid_search.ranking.learned import DENSE, LEXICAL, LearnedFusion
from hybrid_search.ranking.photo_fusion import DEFAULT_EPSILON, KIND, photo_fusion

NATIVE = "native"  # the one list of a native search: the engine's ranking of the requested page
KIND_SOURCE = "image_knn"  # the retriever whose neighbours vote for a photo's kind
PHOTO_RETRIEVERS: frozenset[str] = frozenset({"image_knn", "colour_knn"})
LEARNED_REFUSES_PHOTOS = "learned fusion ranks text queries without a photo"

FetchTitles = Callable[[Sequence[str]], Mapping[str, str | None]]
"""``doc ids -> {doc id: stored title}``: the titles of some candidates, read from whichever field holds them."""


@dataclass(frozen=True)
class Candidates:
    """What a ranker ranks: each retriever's hits and weight, the candidates' doc-value fields, the query.

    ``lists``: retriever -> its hits, best first, for every retriever that ran (a list may be empty); a native
    search has one list, :data:`NATIVE`. ``weights``: retriever -> weight. ``fields``: doc id -> the display
    fields its hits carried (``categories``, ``title``...). ``limit``: how many to rank, the end of the page.
    """

    lists: Mapping[str, Sequence[Hit]]
    weights: Mapping[str, float]
    fields: Mapping[str, Mapping[str, Any]]
    text: str | None
    has_image: bool
    limit: int


@dataclass(frozen=True)
class PhotoKindTerm:
    """The kind term of :mod:`hybrid_search.ranking.photo_fusion`: its weight and parameters."""

    weight: float
    neighbours: int
    epsilon: float


@dataclass(frozen=True)
class Ranking:
    """A ranked list and what produced it.

    ``method``: the fusion that ranked (``linear`` when learned fusion fell back); ``normaliser`` is set for
    linear fusion, ``rank_constant`` for RRF. ``weights``: those that applied (adaptive fusion: the predicted
    ones; the kind term adds its own). ``candidates``: distinct documents in the lists that counted.
    ``learned``: True when the learned model ranked, the reason when it could not; None when not asked for.
    """

    hits: list[FusedHit]
    method: str
    weights: Mapping[str, float]
    candidates: int
    normaliser: str | None = None
    rank_constant: float | None = None
    learned: bool | str | None = None
    adaptive: bool = False
    photo_kind: PhotoKindTerm | None = None


class Ranker(Protocol):
    """Ranks the candidates of one query."""

    def rank(self, candidates: Candidates) -> Ranking: ...


def _distinct(lists: Mapping[str, Sequence[Hit]]) -> int:
    return len({hit.doc_id for hits in lists.values() for hit in hits})


@dataclass(frozen=True)
class LinearRanker:
    """Weighted sum of normalised scores (:func:`hybrid_search.ranking.fusion.linear_fusion`)."""

    normaliser: str
    rank_constant: float  # unused by linear fusion; validated with it, as :func:`fuse` does for every method

    def rank(self, candidates: Candidates) -> Ranking:
        hits = fuse(
            "linear",
            candidates.lists,
            candidates.weights,
            normaliser=self.normaliser,
            rank_constant=self.rank_constant,
            limit=candidates.limit,
        )
        return Ranking(
            hits, "linear", dict(candidates.weights), _distinct(candidates.lists), normaliser=self.normaliser
        )


@dataclass(frozen=True)
class RrfRanker:
    """Weighted reciprocal rank fusion (:func:`hybrid_search.ranking.fusion.rrf_fusion`)."""

    rank_constant: float
    normaliser: str  # unused by RRF; validated with it, as :func:`fuse` does for every method

    def rank(self, candidates: Candidates) -> Ranking:
        hits = fuse(
            "rrf",
            candidates.lists,
            candidates.weights,
            normaliser=self.normaliser,
            rank_constant=self.rank_constant,
            limit=candidates.limit,
        )
        return Ranking(
            hits,
            "rrf",
            dict(candidates.weights),
            _distinct(candidates.lists),
            rank_constant=self.rank_constant,
        )


@dataclass(frozen=True)
class NativeRanker:
    """``native``: the engine summed the weighted scores and cut the page; its order and scores stay."""

    def rank(self, candidates: Candidates) -> Ranking:
        hits = [FusedHit(hit.doc_id, hit.score, {}) for hit in candidates.lists.get(NATIVE, ())]
        return Ranking(hits, NATIVE, dict(candidates.weights), len(hits))


@dataclass(frozen=True)
class PhotoKindRanker:
    """Kind-aware photo fusion (:mod:`hybrid_search.ranking.photo_fusion`) for a photo without words.

    The image kNN hits' categories vote for the photo's kind; without image kNN hits there is no vote, and
    ``fallback`` (linear fusion) ranks.
    """

    weight: float
    neighbours: int
    fallback: LinearRanker

    def rank(self, candidates: Candidates) -> Ranking:
        if not candidates.lists.get(KIND_SOURCE):
            return self.fallback.rank(candidates)
        hits = photo_fusion(
            candidates.lists,
            candidates.weights,
            {doc: fields.get("categories") or [] for doc, fields in candidates.fields.items()},
            kind_weight=self.weight,
            kind_source=KIND_SOURCE,
            neighbours=self.neighbours,
            limit=candidates.limit,
        )
        return Ranking(
            hits,
            "linear",
            {**candidates.weights, KIND: self.weight},
            _distinct(candidates.lists),
            normaliser=self.fallback.normaliser,
            photo_kind=PhotoKindTerm(self.weight, self.neighbours, DEFAULT_EPSILON),
        )


@dataclass(frozen=True)
class AdaptiveRanker:
    """Linear fusion with BM25's and text kNN's shares of their summed weight predicted for the query.

    ``model`` reads the index's :class:`AdaptiveFusion` (None: it has none, and ``fallback`` ranks with the
    configured weights). Other retrievers keep their weights; one whose predicted weight is 0 ran, but its list
    does not count.
    """

    model: Callable[[], AdaptiveFusion | None]
    fallback: LinearRanker

    def rank(self, candidates: Candidates) -> Ranking:
        model = self.model()
        if model is None or candidates.text is None:
            return self.fallback.rank(candidates)
        lexical, dense = candidates.lists.get(LEXICAL, []), candidates.lists.get(DENSE, [])
        share = model.predict(query_features(candidates.text, lexical, dense))
        total = candidates.weights[LEXICAL] + candidates.weights[DENSE]
        weights = {**candidates.weights, LEXICAL: total * (1.0 - share), DENSE: total * share}
        lists = {name: hits for name, hits in candidates.lists.items() if weights.get(name, 0.0) > 0}
        hits = fuse(
            "linear",
            lists,
            {name: w for name, w in weights.items() if name in lists},
            normaliser=self.fallback.normaliser,
            rank_constant=self.fallback.rank_constant,
            limit=candidates.limit,
        )
        return Ranking(
            hits, "linear", weights, _distinct(lists), normaliser=self.fallback.normaliser, adaptive=True
        )


@dataclass(frozen=True)
class LearnedRanker:
    """The index's learned model ranks the BM25 and text kNN candidates of a text query without a photo.

    ``model`` reads it (and refuses a query when the index has none); ``fetch_titles`` reads the stored titles
    the candidates' doc values cut short. Other queries, and queries neither retriever found anything for, are
    ranked by ``fallback`` (what ``linear`` would be) and the ranking says why.
    """

    model: Callable[[], LearnedFusion]
    fetch_titles: FetchTitles
    fallback: Ranker

    def rank(self, candidates: Candidates) -> Ranking:
        text = candidates.text
        if text is None or candidates.has_image:
            return dataclasses.replace(self.fallback.rank(candidates), learned=LEARNED_REFUSES_PHOTOS)
        if not candidates.lists.get(LEXICAL) and not candidates.lists.get(DENSE):
            reason = f"learned fusion needs the {LEXICAL} or {DENSE} retriever"
            return dataclasses.replace(self.fallback.rank(candidates), learned=reason)
        model = self.model()
        lists = {name: hits for name, hits in candidates.lists.items() if name in (LEXICAL, DENSE)}
        hits = model.fuse(text, lists, self._titles(lists, candidates.fields), limit=candidates.limit)
        return Ranking(hits, "learned", dict(candidates.weights), _distinct(lists), learned=True)

    def _titles(
        self, lists: Mapping[str, Sequence[Hit]], fields: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, str | None]:
        """Titles of the candidates: doc values, and the stored field for titles too long for them."""
        ids = {hit.doc_id for name in (LEXICAL, DENSE) for hit in lists.get(name, ())}
        titles: dict[str, str | None] = {doc: fields.get(doc, {}).get("title") for doc in ids}
        missing = [doc for doc, title in titles.items() if title is None]
        if missing:
            found = self.fetch_titles(missing)
            titles.update({doc: found.get(doc) for doc in missing})
        return titles


@dataclass(frozen=True)
class RankingConfig:
    """What picks a query's ranker: the fusion and its parameters, and what the query is made of.

    ``retrievers``: the retrievers that run; ``own_weights``: the query set weights of its own (adaptive
    fusion then leaves them as they are).
    """

    method: str
    normaliser: str
    rank_constant: float
    retrievers: tuple[str, ...]
    has_text: bool
    own_weights: bool
    photo_kind_weight: float
    photo_kind_neighbours: int


@dataclass(frozen=True)
class RankingSources:
    """Where rankers read what the candidates do not hold, each called only by a ranker that needs it.

    ``adaptive_model``: the index's adaptive fusion model, or None; ``learned_model``: its learned fusion model
    (refusing the query when it has none); ``fetch_titles``: the stored titles of some candidates.
    """

    adaptive_model: Callable[[], AdaptiveFusion | None]
    learned_model: Callable[[], LearnedFusion]
    fetch_titles: FetchTitles


def choose_ranker(config: RankingConfig, sources: RankingSources) -> Ranker:
    """The one ranker of a query (module docstring: the table). Pure: models are read when a ranker ranks."""
    linear = LinearRanker(config.normaliser, config.rank_constant)
    running = set(config.retrievers)
    linear_kind: Ranker = linear
    if (
        not config.has_text
        and config.photo_kind_weight > 0
        and KIND_SOURCE in running
        and running <= PHOTO_RETRIEVERS
    ):
        linear_kind = PhotoKindRanker(config.photo_kind_weight, config.photo_kind_neighbours, linear)
    elif (
        config.has_text
        and not config.own_weights
        and config.normaliser == "minmax"
        and {LEXICAL, DENSE} <= running
    ):
        linear_kind = AdaptiveRanker(sources.adaptive_model, linear)
    rankers: dict[str, Callable[[], Ranker]] = {  # built only for the method the query uses
        "linear": lambda: linear_kind,
        "rrf": lambda: RrfRanker(config.rank_constant, config.normaliser),
        NATIVE: NativeRanker,
        "learned": lambda: LearnedRanker(sources.learned_model, sources.fetch_titles, linear_kind),
    }
    make = rankers.get(config.method)
    if make is None:
        raise ValidationError(
            f"unknown fusion method {config.method!r}; expected one of {', '.join(rankers)}", field="fusion"
        )
    return make()


def rank(config: RankingConfig, candidates: Candidates, sources: RankingSources) -> Ranking:
    """The rank stage: the ranker the configuration picks (:func:`choose_ranker`) ranks the candidates."""
    return choose_ranker(config, sources).rank(candidates)


__all__ = [
    "KIND_SOURCE",
    "NATIVE",
    "PHOTO_RETRIEVERS",
    "AdaptiveRanker",
    "Candidates",
    "FetchTitles",
    "LearnedRanker",
    "LinearRanker",
    "NativeRanker",
    "PhotoKindRanker",
    "PhotoKindTerm",
    "Ranker",
    "Ranking",
    "RankingConfig",
    "RankingSources",
    "RrfRanker",
    "choose_ranker",
    "rank",
]
