"""The Ranker protocol: which ranker the configuration picks, and what each ranker returns and reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.adaptive import FEATURES as ADAPTIVE_FEATURES
from hybrid_search.ranking.adaptive import AdaptiveFusion
from hybrid_search.ranking.fusion import Hit, fuse
from hybrid_search.ranking.learned import FEATURES as LEARNED_FEATURES
from hybrid_search.ranking.learned import LearnedFusion
from hybrid_search.ranking.photo_fusion import KIND, photo_fusion
from hybrid_search.ranking.rankers import (
    NATIVE,
    AdaptiveRanker,
    Candidates,
    LearnedRanker,
    LinearRanker,
    NativeRanker,
    PhotoKindRanker,
    RankingConfig,
    RankingSources,
    RrfRanker,
    choose_ranker,
    rank,
)

pytestmark = pytest.mark.unit

LISTS = {
    "bm25": [Hit("a", 9.0), Hit("b", 7.0), Hit("c", 1.0)],
    "text_knn": [Hit("c", 0.9), Hit("d", 0.8), Hit("a", 0.5)],
}
WEIGHTS = {"bm25": 0.5, "text_knn": 0.5}
PHOTO_LISTS = {
    "image_knn": [Hit("p1", 0.95), Hit("p2", 0.9), Hit("p3", 0.7)],
    "colour_knn": [Hit("p3", 0.99), Hit("p4", 0.8)],
}
CATEGORIES = {"p1": ["Bags"], "p2": ["Bags"], "p3": ["Tops"], "p4": ["Bags"]}


def config(**changes: Any) -> RankingConfig:
    values: dict[str, Any] = {
        "method": "linear",
        "normaliser": "minmax",
        "rank_constant": 60,
        "retrievers": ("bm25", "text_knn"),
        "has_text": True,
        "own_weights": False,
        "photo_kind_weight": 0.2,
        "photo_kind_neighbours": 20,
    }
    values.update(changes)
    return RankingConfig(**values)


def candidates(lists: Mapping[str, Sequence[Hit]] = LISTS, **changes: Any) -> Candidates:
    values: dict[str, Any] = {
        "lists": lists,
        "weights": {name: 0.5 for name in lists},
        "fields": {
            doc: {"title": f"title {doc}"} for hits in lists.values() for doc in (h.doc_id for h in hits)
        },
        "text": "red coat",
        "has_image": False,
        "limit": 10,
    }
    values.update(changes)
    return Candidates(**values)


class Sources:
    """Records which models were read and which fields were fetched."""

    def __init__(self, adaptive: AdaptiveFusion | None = None, learned: LearnedFusion | None = None) -> None:
        self.adaptive, self.learned = adaptive, learned
        self.reads: list[str] = []
        self.fetched: list[list[str]] = []

    def sources(self) -> RankingSources:
        return RankingSources(self._adaptive, self._learned, self._fetch)

    def _adaptive(self) -> AdaptiveFusion | None:
        self.reads.append("adaptive")
        return self.adaptive

    def _learned(self) -> LearnedFusion:
        self.reads.append("learned")
        if self.learned is None:
            raise ValidationError("no learned model", field="fusion")
        return self.learned

    def _fetch(self, ids: Sequence[str]) -> dict[str, str | None]:
        self.fetched.append(sorted(ids))
        return {doc: f"stored title {doc}" for doc in ids}


def learned_model() -> LearnedFusion:
    n = len(LEARNED_FEATURES)
    return LearnedFusion(
        mean=(0.0,) * n, scale=(1.0,) * n, coef=tuple(1.0 if i == 8 else 0.1 for i in range(n))
    )


def adaptive_model(share: float) -> AdaptiveFusion:
    """A model that always predicts ``share`` for the dense retriever (its grid's best intercept)."""
    n = len(ADAPTIVE_FEATURES)
    return AdaptiveFusion(
        grid=(share, 0.5),
        mean=(0.0,) * n,
        scale=(1.0,) * n,
        coef=((1.0,) + (0.0,) * n, (0.0,) + (0.0,) * n),
        alpha=1.0,
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, AdaptiveRanker),  # text, BM25 and text kNN, minmax, weights from the configuration
        ({"own_weights": True}, LinearRanker),  # the query's own weights are kept
        ({"normaliser": "zscore"}, LinearRanker),
        ({"retrievers": ("bm25",)}, LinearRanker),
        ({"method": "rrf"}, RrfRanker),
        ({"method": NATIVE}, NativeRanker),
        ({"method": "learned"}, LearnedRanker),
        ({"has_text": False, "retrievers": ("image_knn", "colour_knn")}, PhotoKindRanker),
        (
            {"has_text": False, "retrievers": ("image_knn", "colour_knn"), "photo_kind_weight": 0.0},
            LinearRanker,
        ),
        ({"has_text": False, "retrievers": ("colour_knn",)}, LinearRanker),  # no neighbours to vote
        ({"has_text": False, "retrievers": ("image_knn", "image_to_text")}, LinearRanker),
        ({"has_text": False, "retrievers": ("image_knn",), "method": "rrf"}, RrfRanker),
    ],
)
def test_the_configuration_picks_one_ranker(changes: dict[str, Any], expected: type) -> None:
    recorder = Sources()
    assert type(choose_ranker(config(**changes), recorder.sources())) is expected
    assert recorder.reads == [] and recorder.fetched == []  # choosing reads nothing


def test_learned_falls_back_to_what_linear_would_be() -> None:
    text = choose_ranker(config(method="learned"), Sources().sources())
    photo = choose_ranker(
        config(method="learned", has_text=False, retrievers=("image_knn", "colour_knn")), Sources().sources()
    )
    assert isinstance(text, LearnedRanker) and isinstance(text.fallback, AdaptiveRanker)
    assert isinstance(photo, LearnedRanker) and isinstance(photo.fallback, PhotoKindRanker)


def test_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        choose_ranker(config(method="magic"), Sources().sources())
    assert info.value.field == "fusion"


def test_linear_and_rrf_rank_as_fuse_does() -> None:
    for method, ranker in (("linear", LinearRanker("zscore", 60)), ("rrf", RrfRanker(5, "minmax"))):
        ranking = ranker.rank(candidates(limit=3))
        expected = fuse(method, LISTS, WEIGHTS, normaliser="zscore" if method == "linear" else "minmax",
                        rank_constant=60 if method == "linear" else 5, limit=3)  # fmt: skip
        assert ranking.hits == expected
        assert ranking.method == method and ranking.weights == WEIGHTS
        assert ranking.candidates == 4  # a, b, c, d
    assert LinearRanker("zscore", 60).rank(candidates()).normaliser == "zscore"
    assert RrfRanker(5, "minmax").rank(candidates()).rank_constant == 5


def test_native_keeps_the_engines_order_and_scores() -> None:
    page = [Hit("x", 3.5), Hit("y", 3.5), Hit("z", 1.0)]
    ranking = NativeRanker().rank(candidates({NATIVE: page}, weights=WEIGHTS))
    assert [(h.doc_id, h.score) for h in ranking.hits] == [("x", 3.5), ("y", 3.5), ("z", 1.0)]
    assert ranking.method == NATIVE and ranking.weights == WEIGHTS and ranking.normaliser is None


def test_photo_kind_fusion_needs_image_knn_hits() -> None:
    ranker = PhotoKindRanker(0.2, 20, LinearRanker("minmax", 60))
    fields = {doc: {"categories": cats} for doc, cats in CATEGORIES.items()}
    ranking = ranker.rank(candidates(PHOTO_LISTS, fields=fields, text=None, has_image=True))
    expected = photo_fusion(PHOTO_LISTS, {"image_knn": 0.5, "colour_knn": 0.5}, CATEGORIES, kind_weight=0.2,
                            neighbours=20, limit=10)  # fmt: skip
    assert ranking.hits == expected
    assert ranking.weights == {"image_knn": 0.5, "colour_knn": 0.5, KIND: 0.2}
    assert ranking.photo_kind is not None and (ranking.photo_kind.weight, ranking.photo_kind.neighbours) == (
        0.2,
        20,
    )
    no_votes = {**PHOTO_LISTS, "image_knn": []}
    fallback = ranker.rank(candidates(no_votes, fields=fields, text=None, has_image=True))
    assert fallback.photo_kind is None and fallback.method == "linear"
    assert fallback.hits == fuse("linear", no_votes, {"image_knn": 0.5, "colour_knn": 0.5}, limit=10)


def test_adaptive_predicts_the_shares_and_drops_a_list_it_turns_off() -> None:
    linear = LinearRanker("minmax", 60)
    without = Sources()
    assert AdaptiveRanker(without.sources().adaptive_model, linear).rank(candidates()) == linear.rank(
        candidates()
    )
    assert without.reads == ["adaptive"]

    ranking = AdaptiveRanker(Sources(adaptive_model(0.8)).sources().adaptive_model, linear).rank(candidates())
    assert ranking.adaptive and ranking.method == "linear"
    assert ranking.weights == pytest.approx({"bm25": 0.2, "text_knn": 0.8})
    assert ranking.hits == fuse("linear", LISTS, dict(ranking.weights), limit=10)

    dense_only = AdaptiveRanker(Sources(adaptive_model(1.0)).sources().adaptive_model, linear).rank(
        candidates()
    )
    assert dense_only.weights == {"bm25": 0.0, "text_knn": 1.0}
    assert dense_only.candidates == 3  # BM25 ran, but its list no longer counts: c, d, a
    assert all(set(h.contributions) == {"text_knn"} for h in dense_only.hits)


def test_learned_ranks_text_and_reads_only_the_titles_doc_values_cut_short() -> None:
    recorder = Sources(learned=learned_model())
    fields: dict[str, dict[str, Any]] = {
        "a": {"title": "red coat"},
        "b": {"title": None},
        "c": {},
        "d": {"title": "x"},
    }
    ranker = LearnedRanker(recorder._learned, recorder._fetch, LinearRanker("minmax", 60))
    ranking = ranker.rank(candidates(fields=fields))
    assert recorder.reads == ["learned"] and recorder.fetched == [["b", "c"]]
    titles = {"a": "red coat", "b": "stored title b", "c": "stored title c", "d": "x"}
    assert ranking.hits == learned_model().fuse("red coat", LISTS, titles, limit=10)
    assert ranking.method == "learned" and ranking.learned is True and ranking.normaliser is None
    assert ranking.hits[0].doc_id == "a"  # the title holding every query word


def test_learned_falls_back_without_reading_its_model() -> None:
    recorder = Sources()  # no model: reading it would refuse the query
    linear = LinearRanker("minmax", 60)
    ranker = LearnedRanker(recorder._learned, recorder._fetch, linear)
    photo = ranker.rank(candidates(has_image=True))
    assert photo.learned == "learned fusion ranks text queries without a photo"
    assert photo.hits == linear.rank(candidates()).hits and photo.method == "linear"
    empty = ranker.rank(candidates({"bm25": [], "text_knn": []}))
    assert empty.learned == "learned fusion needs the bm25 or text_knn retriever"
    assert recorder.reads == [] and recorder.fetched == []
    with pytest.raises(ValidationError, match="no learned model"):
        ranker.rank(candidates())


def test_rank_is_choose_then_rank() -> None:
    recorder = Sources()
    assert rank(config(method="rrf"), candidates(), recorder.sources()) == RrfRanker(60, "minmax").rank(
        candidates()
    )
