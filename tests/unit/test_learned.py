"""Learned fusion (hybrid_search.ranking.learned): features computed by hand, fitting, ranking, the saved model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import Hit
from hybrid_search.ranking.learned import FEATURES, LearnedFusion, candidate_features, fit_learned, tokens

pytestmark = pytest.mark.unit


def col(name: str) -> int:
    return FEATURES.index(name)


def test_tokens_keep_sizes_and_strip_plurals() -> None:
    assert tokens("3/4 in. Copper Pipes, 1.5 GAL glass") == [
        "3/4",
        "in",
        "copper",
        "pipe",
        "1.5",
        "gal",
        "glass",
    ]
    assert tokens("") == [] and tokens("--- !!") == []
    assert tokens("Çà va DRILLS") == ["çà", "va", "drill"]


def test_candidate_features_by_hand() -> None:
    lists = {
        "bm25": [Hit("a", 10.0), Hit("b", 5.0)],
        "text_knn": [Hit("b", 0.8), Hit("c", 0.6), Hit("d", 0.4)],
    }
    titles = {"a": "Copper pipe 3/4 in", "b": "PVC pipe", "c": None}
    ids, x = candidate_features("3/4 copper pipe", lists, titles)
    assert ids == ["a", "b", "c", "d"]  # BM25's order, then the dense list's new ones
    a, b, c, d = x
    assert a[col("lexical_relative")] == 1.0 and b[col("lexical_relative")] == 0.5
    assert a[col("lexical_minmax")] == 1.0 and b[col("lexical_minmax")] == 0.0
    assert a[col("lexical_listed")] == 1.0 and c[col("lexical_listed")] == 0.0
    assert a[col("lexical_reciprocal_rank")] == pytest.approx(1 / 61)
    assert b[col("lexical_reciprocal_rank")] == pytest.approx(1 / 62)
    assert a[col("dense_score")] == pytest.approx(0.4)  # not in the dense list: its lowest score
    assert a[col("dense_listed")] == 0.0 and a[col("dense_minmax")] == 0.0
    assert b[col("dense_score")] == pytest.approx(0.8) and b[col("dense_minmax")] == pytest.approx(1.0)
    assert c[col("dense_minmax")] == pytest.approx(0.5) and c[col("dense_reciprocal_rank")] == pytest.approx(
        1 / 62
    )
    # query words {3/4, copper, pipe}, numbers {3/4}, pairs {(3/4, copper), (copper, pipe)}
    assert a[col("title_word_coverage")] == 1.0 and b[col("title_word_coverage")] == pytest.approx(1 / 3)
    assert a[col("title_number_coverage")] == 1.0 and b[col("title_number_coverage")] == 0.0
    assert a[col("title_pair_coverage")] == 0.5 and b[col("title_pair_coverage")] == 0.0
    assert a[col("title_log_words")] == pytest.approx(math.log1p(4))
    assert a[col("title_first_match")] == 0.0 and b[col("title_first_match")] == pytest.approx(1 / 30)
    # no title (c) or not even known (d): no title words, the first match at the cap
    for row in (c, d):
        assert row[col("title_word_coverage")] == 0.0 and row[col("title_first_match")] == 1.0
    # a query without numbers: every title covers all of its (no) numbers
    _, x2 = candidate_features("copper", lists, titles)
    assert set(x2[:, col("title_number_coverage")]) == {1.0}


def test_candidate_features_with_empty_or_missing_lists() -> None:
    ids, x = candidate_features("pipe", {}, {})
    assert ids == [] and x.shape == (0, len(FEATURES))
    ids, x = candidate_features("pipe", {"bm25": [Hit("a", 2.0)], "text_knn": []}, {"a": "pipe"})
    assert ids == ["a"] and x[0, col("lexical_minmax")] == 1.0 and x[0, col("dense_listed")] == 0.0
    ids, x = candidate_features("", {"text_knn": [Hit("a", 0.5), Hit("a", 0.4)]}, {})
    assert ids == ["a"] and x[0, col("dense_score")] == 0.5  # a repeated id keeps its first (best) rank


def synthetic(n_queries: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Queries whose judged products are those with the most title words; BM25's score is noise."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_queries):
        x = rng.random((20, len(FEATURES)))
        y = np.where(x[:, col("title_word_coverage")] > 0.7, 2.0, 0.0)
        groups.append((x, y))
    return groups


def test_fit_learns_which_feature_matters_and_is_deterministic() -> None:
    model = fit_learned(synthetic(40, 0), seed=3)
    assert int(np.argmax(model.coef)) == col("title_word_coverage")
    again = fit_learned(synthetic(40, 0), seed=3)
    assert model == again
    # on unseen queries it puts a judged product first almost always
    hits = 0
    for x, y in synthetic(50, 1):
        hits += int(y[int(np.argmax(model.scores(x)))] > 0)
    assert hits >= 45


def test_fit_refuses_what_it_cannot_learn_from() -> None:
    x = np.random.default_rng(0).random((5, len(FEATURES)))
    with pytest.raises(ValidationError, match="no training pairs"):
        fit_learned([(x, np.zeros(5))])
    with pytest.raises(ValidationError, match="matrix"):
        fit_learned([(x[:, :3], np.ones(5))])
    with pytest.raises(ValidationError, match="iterations"):
        fit_learned([(x, np.ones(5))], iterations=0)


def test_fuse_ranks_and_explains() -> None:
    coef = [0.0] * len(FEATURES)
    coef[col("title_word_coverage")] = 2.0
    coef[col("lexical_minmax")] = 1.0
    coef[col("dense_score")] = 0.5
    model = LearnedFusion(mean=(0.0,) * len(FEATURES), scale=(1.0,) * len(FEATURES), coef=tuple(coef))
    lists = {"bm25": [Hit("a", 3.0), Hit("b", 1.0)], "text_knn": [Hit("b", 0.9), Hit("c", 0.1)]}
    titles = {"a": "hammer", "b": "claw hammer", "c": "nails"}
    fused = model.fuse("claw hammer", lists, titles)
    # a: 2*0.5 + 1*1 + 0.5*0.1 = 2.05; b: 2*1 + 0 + 0.5*0.9 = 2.45; c: 0 + 0 + 0.05
    assert [f.doc_id for f in fused] == ["b", "a", "c"]
    assert [round(f.score, 6) for f in fused] == [2.45, 2.05, 0.05]
    b = fused[0].contributions
    assert b["bm25"].raw_score == 1.0 and b["bm25"].rank == 2 and b["bm25"].weighted == 0.0
    assert b["text_knn"].rank == 1 and b["text_knn"].weighted == pytest.approx(0.45)
    assert b["title_match"].raw_score is None and b["title_match"].weighted == pytest.approx(2.0)
    c = fused[2].contributions
    assert c["bm25"].raw_score is None and c["bm25"].normalised is None
    for f in fused:
        assert f.score == math.fsum(part.weighted for part in f.contributions.values())
    assert [f.doc_id for f in model.fuse("claw hammer", lists, titles, limit=1)] == ["b"]
    assert model.fuse("claw hammer", {}, titles) == []


def test_saved_model_round_trip_and_checks() -> None:
    model = fit_learned(synthetic(10, 2), rank_window=200)
    data = model.to_dict()
    assert data["features"] == list(FEATURES) and LearnedFusion.from_dict(data) == model
    with pytest.raises(ValidationError, match="uses features"):
        LearnedFusion.from_dict({**data, "features": ["words"]})
    with pytest.raises(ValidationError, match="shapes"):
        LearnedFusion.from_dict({**data, "coef": data["coef"][:-1]})
    with pytest.raises(ValidationError, match="finite"):
        LearnedFusion.from_dict({**data, "coef": [float("nan")] * len(FEATURES)})
    with pytest.raises(ValidationError, match="finite"):
        LearnedFusion.from_dict({**data, "scale": [0.0] * len(FEATURES)})
    with pytest.raises(ValidationError, match="malformed"):
        LearnedFusion.from_dict({"features": list(FEATURES)})
    with pytest.raises(ValidationError, match="features per candidate"):
        model.scores(np.zeros((2, 3)))
