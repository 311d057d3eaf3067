"""Ranking metrics on hand-computed rankings: unjudged documents, ties, cutoffs, empty results, the bootstrap.

Every expected value below is worked out by hand in the comment next to it (linear gain, log2 discount).
"""

from __future__ import annotations

import math

import pytest

from hybrid_search.errors import ValidationError
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

pytestmark = pytest.mark.unit

L3 = math.log2(3)  # discount of rank 2
L5 = math.log2(5)  # discount of rank 4


def test_dcg_of_the_textbook_example() -> None:
    # gains 3, 2, 3, 0, 1, 2 at ranks 1..6: 3/1 + 2/log2(3) + 3/2 + 0/log2(5) + 1/log2(6) + 2/log2(7)
    expected = 3 + 2 / L3 + 3 / 2 + 0 + 1 / math.log2(6) + 2 / math.log2(7)
    assert dcg_at_k([3, 2, 3, 0, 1, 2], 6) == pytest.approx(expected)
    assert round(expected, 3) == 6.861
    assert dcg_at_k([3, 2, 3, 0, 1, 2], 2) == pytest.approx(3 + 2 / L3)  # cutoff
    assert dcg_at_k([], 10) == 0.0


def test_ndcg_ideal_comes_from_every_judged_document_not_only_the_retrieved() -> None:
    # Retrieved d1..d6 with gains 3,2,3,0,1,2; d7 (3) and d8 (2) are judged but not retrieved, so the ideal
    # top 6 is 3,3,3,2,2,2: IDCG@6 = 3 + 3/log2(3) + 3/2 + 2/log2(5) + 2/log2(6) + 2/log2(7) = 8.740...
    gains = {"d1": 3, "d2": 2, "d3": 3, "d4": 0, "d5": 1, "d6": 2, "d7": 3, "d8": 2}
    ranking = ["d1", "d2", "d3", "d4", "d5", "d6"]
    ideal = 3 + 3 / L3 + 3 / 2 + 2 / L5 + 2 / math.log2(6) + 2 / math.log2(7)
    assert idcg_at_k(gains, 6) == pytest.approx(ideal)
    assert round(ideal, 3) == 8.740
    assert ndcg_at_k(ranking, gains, 6) == pytest.approx(6.861 / 8.740, abs=1e-3)  # 0.785
    assert ndcg_at_k(ranking, gains, 6) == pytest.approx(dcg_at_k([3, 2, 3, 0, 1, 2], 6) / ideal)


def test_ndcg_counts_an_unjudged_document_as_gain_zero() -> None:
    # ranking a, b, c with a=2, b=0, c=1; d=2 judged, not retrieved; x unjudged
    gains = {"a": 2.0, "b": 0.0, "c": 1.0, "d": 2.0}
    # DCG = 2/1 + 0 + 1/2 = 2.5; IDCG = 2 + 2/log2(3) + 1/2 = 3.7619
    assert ndcg_at_k(["a", "b", "c"], gains) == pytest.approx(2.5 / (2.5 + 2 / L3))
    # an unjudged document in front pushes everything down one rank: DCG = 0 + 2/log2(3) + 0 + 1/log2(5)
    assert ndcg_at_k(["x", "a", "b", "c"], gains) == pytest.approx((2 / L3 + 1 / L5) / (2.5 + 2 / L3))
    # unjudged and judged-irrelevant documents count the same
    assert ndcg_at_k(["x", "a"], gains) == ndcg_at_k(["b", "a"], gains)


def test_condensed_ndcg_removes_unjudged_documents_before_scoring() -> None:
    gains = {"a": 1.0, "b": 1.0}
    ranking = ["u1", "a", "u2", "b"]
    # full list: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3)) = 0.651
    assert ndcg_at_k(ranking, gains) == pytest.approx((1 / L3 + 1 / L5) / (1 + 1 / L3))
    # condensed: [a, b] -> the ideal ranking
    assert condensed_ndcg_at_k(ranking, gains) == 1.0
    # a judged document with gain 0 stays in the condensed list
    assert condensed_ndcg_at_k(["u1", "z", "a"], {"a": 1.0, "z": 0.0}) == pytest.approx(1 / L3)
    # condensing brings documents from beyond the cutoff into it
    deep = [f"u{i}" for i in range(10)] + ["a"]
    assert ndcg_at_k(deep, {"a": 1.0}) == 0.0
    assert condensed_ndcg_at_k(deep, {"a": 1.0}) == 1.0


def test_ties_are_the_engines_order_and_equal_gains_are_interchangeable() -> None:
    gains = {"a": 2.0, "b": 1.0, "c": 1.0}
    # the metric scores the order it is given (the engine broke any score tie): a before b is better
    assert ndcg_at_k(["a", "b"], gains) > ndcg_at_k(["b", "a"], gains)
    # (2 + 1/log2(3)) vs (1 + 2/log2(3)), each over IDCG = 2 + 1/log2(3) + 1/2
    ideal = 2 + 1 / L3 + 0.5
    assert ndcg_at_k(["b", "a"], gains) == pytest.approx((1 + 2 / L3) / ideal)
    # swapping two documents of equal gain changes nothing
    assert ndcg_at_k(["a", "b", "c"], gains) == ndcg_at_k(["a", "c", "b"], gains) == pytest.approx(1.0)
    # tied gains in the ideal ranking: IDCG does not depend on which tied document comes first
    assert idcg_at_k({"p": 1.0, "q": 1.0}) == idcg_at_k({"q": 1.0, "p": 1.0}) == pytest.approx(1 + 1 / L3)


def test_cutoff_k() -> None:
    gains = {f"d{i}": 1.0 for i in range(12)}
    ranking = [f"d{i}" for i in range(12)]
    assert ndcg_at_k(ranking, gains, 10) == pytest.approx(1.0)
    # a relevant document at rank 11 is not counted, and IDCG@10 uses only the 10 best judged gains
    late = [f"u{i}" for i in range(10)] + ["d0"]
    assert ndcg_at_k(late, gains, 10) == 0.0
    assert ndcg_at_k(["d0"], gains, 1) == 1.0
    assert ndcg_at_k(["d0"], gains, 2) == pytest.approx(1 / (1 + 1 / L3))


def test_empty_rankings_and_nothing_to_gain() -> None:
    gains = {"a": 2.0}
    for metric in (ndcg_at_k, condensed_ndcg_at_k):
        assert metric([], gains) == 0.0
        assert metric(["a"], {}) == 0.0  # no judged document
        assert metric(["a"], {"a": 0.0, "b": 0.0}) == 0.0  # IDCG = 0: defined as 0, never a division by 0
    assert recall_at_k([], {"a"}, 10) == 0.0
    assert precision_at_k([], {"a"}, 10) == 0.0
    assert mrr_at_k([], {"a"}) == 0.0
    assert recall_at_k(["a"], set(), 10) == 0.0  # nothing relevant
    assert mrr_at_k(["a"], set()) == 0.0


def test_recall_precision_and_mrr_by_hand() -> None:
    ranking = ["a", "x", "b", "y"]
    relevant = {"a", "b", "c"}
    assert recall_at_k(ranking, relevant, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranking, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranking, relevant, 3) == pytest.approx(2 / 3)
    assert recall_at_k(ranking, relevant, 100) == pytest.approx(2 / 3)  # c was never retrieved
    assert precision_at_k(ranking, relevant, 2) == 0.5
    assert precision_at_k(ranking, relevant, 10) == 0.2  # divides by k, not by the 4 returned
    assert mrr_at_k(ranking, relevant) == 1.0
    assert mrr_at_k(["x", "y", "b"], relevant) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b"], relevant, 2) == 0.0  # first relevant beyond the cutoff
    assert mrr_at_k(["x", "b", "a"], relevant) == 0.5  # only the first relevant counts


def test_bad_input_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="appears more than once"):
        ndcg_at_k(["a", "b", "a"], {"a": 1.0})
    with pytest.raises(ValidationError, match="more than once"):
        recall_at_k(["a", "a"], {"a"}, 10)
    with pytest.raises(ValidationError, match="grade offset"):
        ndcg_at_k(["a"], {"a": -1.0})
    with pytest.raises(ValidationError, match="finite"):
        ndcg_at_k(["a"], {"a": math.nan})
    with pytest.raises(ValidationError, match="k must be"):
        ndcg_at_k(["a"], {"a": 1.0}, 0)
    with pytest.raises(ValidationError, match="k must be"):
        mrr_at_k(["a"], {"a"}, True)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not one string"):
        recall_at_k("abc", {"a"}, 3)


def test_paired_bootstrap() -> None:
    same = [0.1, 0.5, 0.9, 0.3]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    # a constant difference has a zero-width interval at that difference
    mean, low, high = paired_bootstrap([0.5, 0.7, 0.9], [0.25, 0.45, 0.65])
    assert (mean, low, high) == pytest.approx((0.25, 0.25, 0.25))
    # differences 1, 0, 0, 0: mean 0.25; every resample mean is a multiple of 1/4 in [0, 1]
    mean, low, high = paired_bootstrap([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], samples=5000, seed=3)
    assert mean == 0.25
    assert low == 0.0 and 0.5 <= high <= 0.75
    # deterministic for a seed; another seed moves only the interval
    a, b = [0.2, 0.4, 0.1, 0.8, 0.5, 0.3], [0.1, 0.5, 0.1, 0.6, 0.2, 0.3]
    assert paired_bootstrap(a, b, seed=1) == paired_bootstrap(a, b, seed=1)
    assert paired_bootstrap(a, b, seed=1)[0] == paired_bootstrap(a, b, seed=2)[0] == pytest.approx(0.5 / 6)
    # a clear, consistent gain has an interval above 0; the sign flips with the order of a and b
    gain = [0.6 + 0.01 * i for i in range(50)]
    base = [0.5 + 0.01 * i + (0.02 if i % 2 else -0.02) for i in range(50)]
    diff, low, high = paired_bootstrap(gain, base)
    assert low > 0 and low <= diff <= high
    assert paired_bootstrap(base, gain) == pytest.approx((-diff, -high, -low), abs=0.01)
    with pytest.raises(ValidationError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 2.0])
    with pytest.raises(ValidationError, match="at least one"):
        paired_bootstrap([], [])
    with pytest.raises(ValidationError, match="finite"):
        paired_bootstrap([math.inf], [0.0])
    with pytest.raises(ValidationError, match="samples"):
        paired_bootstrap([1.0], [0.0], samples=0)
