"""Pin the fusion formulas of ``hybrid_search.ranking.fusion`` on hand-computed examples.

Scores are chosen dyadic (exactly representable) wherever the formula allows, so most expectations are
exact; the rest use ``pytest.approx(rel=1e-12)`` against closed forms worked out in the comments.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence

import pytest

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import (
    DEFAULT_RANK_CONSTANT,
    METHODS,
    NORMALISERS,
    Contribution,
    FusedHit,
    Hit,
    fuse,
    linear_fusion,
    normalise,
    rrf_fusion,
)

pytestmark = pytest.mark.unit

REL = 1e-12


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(doc_id, score) for doc_id, score in pairs]


def ids(fused: Sequence[FusedHit]) -> list[str]:
    return [h.doc_id for h in fused]


def assert_explained(fused: Sequence[FusedHit]) -> None:
    """The explain data adds up exactly, and with <= 2 retrievers plain ``sum`` agrees too."""
    for hit in fused:
        weighted = [c.weighted for c in hit.contributions.values()]
        assert math.fsum(weighted) == hit.score
        if len(weighted) <= 2:
            assert sum(weighted) == hit.score


# ----------------------------------------------------------------------------------------------- normalise


def test_minmax_exact() -> None:
    assert normalise([4.0, 2.0, 0.0], "minmax") == [1.0, 0.5, 0.0]
    # (s - 2) / (10 - 2): 8/8, 5/8, 4/8, 0/8
    assert normalise([10.0, 7.0, 6.0, 2.0], "minmax") == [1.0, 0.625, 0.5, 0.0]


def test_zscore_uses_population_std() -> None:
    # mean 2, population variance (4 + 0 + 4) / 3 = 8/3, z(4) = 2 / sqrt(8/3) = sqrt(3/2).
    # (The sample std, 2, would give exactly [1, 0, -1].)
    result = normalise([4.0, 2.0, 0.0], "zscore")
    assert result == pytest.approx([math.sqrt(1.5), 0.0, -math.sqrt(1.5)], rel=REL)
    assert result[0] != pytest.approx(1.0, rel=1e-3)
    # mean 3, deviations +-1, population std 1 -> exact
    assert normalise([4.0, 2.0], "zscore") == [1.0, -1.0]


def test_l2_exact_and_without_overflow() -> None:
    assert normalise([4.0, 3.0], "l2") == [0.8, 0.6]
    assert normalise([5.0], "l2") == [1.0]
    assert normalise([-2.0], "l2") == [-1.0]
    # sum of squares would overflow to inf; math.hypot does not
    assert normalise([1e200, 1e200], "l2") == pytest.approx([math.sqrt(0.5)] * 2, rel=REL)


def test_dbsf_uses_population_std_mu_plus_minus_three_sigma() -> None:
    # mean 3, population std 1 -> [low, high] = [0, 6] -> 4/6, 2/6 (sample std sqrt(2) would differ)
    assert normalise([4.0, 2.0], "dbsf") == pytest.approx([2 / 3, 1 / 3], rel=REL)
    # mean 2, sigma = sqrt(8/3): N(s) = 0.5 + (s - 2) / (6 sigma); 2 / (6 sqrt(8/3)) = 1 / (2 sqrt(6))
    half_width = 1 / (2 * math.sqrt(6))
    assert normalise([4.0, 2.0, 0.0], "dbsf") == pytest.approx(
        [0.5 + half_width, 0.5, 0.5 - half_width], rel=REL
    )


def test_dbsf_is_clipped_to_unit_interval() -> None:
    # 20 scores: one 100, nineteen 0. mean 5, population variance (95^2 + 19 * 5^2) / 20 = 475.
    # The outlier is 95 / sqrt(475) = 4.36 sigma above the mean: unclipped it would map to 1.226.
    scores = [100.0] + [0.0] * 19
    sigma = math.sqrt(475.0)
    result = normalise(scores, "dbsf")
    assert result[0] == 1.0
    assert result[1:] == pytest.approx([0.5 - 5 / (6 * sigma)] * 19, rel=REL)
    assert all(0.0 <= v <= 1.0 for v in result)


@pytest.mark.parametrize(
    ("method", "expected"),
    [("minmax", 1.0), ("dbsf", 0.5), ("zscore", 0.0)],
)
def test_degenerate_lists(method: str, expected: float) -> None:
    assert normalise([0.3], method) == [expected]
    assert normalise([2.5, 2.5, 2.5], method) == [expected] * 3
    # 0.1 * 3 / 3 is not exactly 0.1 in floats: equal scores must still not produce huge z-values
    assert normalise([0.1, 0.1, 0.1], method) == [expected] * 3


def test_l2_degenerate_cases() -> None:
    assert normalise([0.0, 0.0], "l2") == [0.0, 0.0]
    assert normalise([2.0, 2.0], "l2") == pytest.approx([math.sqrt(0.5)] * 2, rel=REL)


@pytest.mark.parametrize("method", NORMALISERS)
def test_normalise_empty_and_does_not_mutate(method: str) -> None:
    assert normalise([], method) == []
    scores = [3.0, 1.0, 0.5]
    result = normalise(scores, method)
    assert scores == [3.0, 1.0, 0.5]
    assert result is not scores


def test_normalise_rejects_unknown_method_and_non_finite_scores() -> None:
    with pytest.raises(ValidationError, match="unknown normaliser 'softmax'") as info:
        normalise([1.0], "softmax")
    assert info.value.field == "normaliser"
    with pytest.raises(ValidationError, match="not finite") as info:
        normalise([1.0, math.nan], "minmax")
    assert info.value.field == "scores"


# -------------------------------------------------------------------------------------------- linear fusion


def test_linear_minmax_weighted_exact() -> None:
    results = {
        "bm25": hits(("a", 8.0), ("b", 4.0), ("c", 0.0)),  # minmax 1, 0.5, 0
        "knn": hits(("b", 0.75), ("d", 0.5), ("a", 0.25)),  # minmax 1, 0.5, 0
    }
    fused = linear_fusion(results, {"bm25": 2.0, "knn": 1.0})
    # a = 2*1 + 1*0 = 2; b = 2*0.5 + 1*1 = 2 (tie: best rank 1 both -> doc_id); d = 0 + 0.5; c = 0 + 0
    assert [(h.doc_id, h.score) for h in fused] == [("a", 2.0), ("b", 2.0), ("d", 0.5), ("c", 0.0)]
    by_id = {h.doc_id: h for h in fused}
    assert by_id["a"].contributions == {
        "bm25": Contribution(raw_score=8.0, rank=1, normalised=1.0, weighted=2.0),
        "knn": Contribution(raw_score=0.25, rank=3, normalised=0.0, weighted=0.0),
    }
    assert by_id["d"].contributions == {
        "bm25": Contribution(raw_score=None, rank=None, normalised=0.0, weighted=0.0),
        "knn": Contribution(raw_score=0.5, rank=2, normalised=0.5, weighted=0.5),
    }
    assert list(by_id["c"].contributions) == ["bm25", "knn"]  # order of ``results``
    assert_explained(fused)


def test_linear_zscore_missing_document_gets_the_list_floor() -> None:
    results = {
        "bm25": hits(("a", 4.0), ("b", 2.0), ("c", 0.0)),  # z: sqrt(1.5), 0, -sqrt(1.5)
        "knn": hits(("c", 3.0), ("d", 1.0)),  # z: 1, -1
    }
    fused = linear_fusion(results, normaliser="zscore")
    r = math.sqrt(1.5)
    # a: sqrt(1.5) + floor_knn(-1); b: 0 + (-1); c: -sqrt(1.5) + 1; d: floor_bm25(-sqrt(1.5)) + (-1)
    assert ids(fused) == ["a", "c", "b", "d"]
    expected = {"a": r - 1, "c": 1 - r, "b": -1.0, "d": -r - 1}
    assert {h.doc_id: h.score for h in fused} == pytest.approx(expected, rel=REL)
    b = next(h for h in fused if h.doc_id == "b")
    assert b.contributions["knn"] == Contribution(None, None, -1.0, -1.0)
    # with "missing contributes 0", b (absent from knn) would outrank d's knn hit; with the floor it cannot
    # beat any hit the retriever actually returned.
    assert_explained(fused)


def test_linear_l2_and_all_zero_list() -> None:
    results = {
        "bm25": hits(("b", 4.0), ("a", 3.0)),  # 0.8, 0.6
        "knn": hits(("a", 1.0)),  # 1.0
        "sparse": hits(("x", 0.0), ("y", 0.0)),  # all zero -> 0.0, 0.0
    }
    fused = linear_fusion(results, normaliser="l2")
    assert [(h.doc_id, h.score) for h in fused] == [("a", 1.6), ("b", 0.8), ("x", 0.0), ("y", 0.0)]
    x = fused[2]
    assert x.contributions["sparse"] == Contribution(0.0, 1, 0.0, 0.0)
    assert x.contributions["bm25"] == Contribution(None, None, 0.0, 0.0)
    assert_explained(fused)


def test_linear_dbsf_with_single_hit_list() -> None:
    results = {
        "bm25": hits(("a", 4.0), ("b", 2.0)),  # mean 3, sigma 1: 2/3, 1/3
        "knn": hits(("b", 0.9)),  # single hit: 0.5
    }
    fused = linear_fusion(results, normaliser="dbsf")
    assert ids(fused) == ["b", "a"]
    assert [h.score for h in fused] == pytest.approx([1 / 3 + 0.5, 2 / 3], rel=REL)
    assert fused[0].contributions["knn"] == Contribution(0.9, 1, 0.5, 0.5)
    assert fused[1].contributions["knn"] == Contribution(None, None, 0.0, 0.0)
    assert_explained(fused)


def test_linear_minmax_single_hit_list_counts_fully() -> None:
    fused = linear_fusion({"bm25": hits(("a", 8.0), ("b", 0.0)), "knn": hits(("sku-1", 0.3))})
    assert [(h.doc_id, h.score) for h in fused] == [("a", 1.0), ("sku-1", 1.0), ("b", 0.0)]


def test_weights_are_used_as_given_not_normalised() -> None:
    results = {"bm25": hits(("a", 2.0), ("b", 0.0)), "knn": hits(("b", 1.0), ("a", 0.0))}
    ones = linear_fusion(results, {"bm25": 1.0, "knn": 1.0})
    threes = linear_fusion(results, {"bm25": 3.0, "knn": 3.0})
    assert [h.score for h in threes] == [3 * h.score for h in ones] == [3.0, 3.0]
    assert ids(threes) == ids(ones) == ["a", "b"]  # tie: best rank 1 both -> doc_id


def test_missing_weight_defaults_to_one() -> None:
    results = {"bm25": hits(("a", 2.0), ("b", 0.0)), "knn": hits(("b", 1.0), ("a", 0.0))}
    assert linear_fusion(results, {"bm25": 0.5}) == linear_fusion(results, {"bm25": 0.5, "knn": 1.0})
    assert linear_fusion(results) == linear_fusion(results, {"bm25": 1.0, "knn": 1.0})
    assert rrf_fusion(results, {}) == rrf_fusion(results, None)


def test_zero_weight_keeps_candidates_without_score() -> None:
    results = {"bm25": hits(("a", 2.0), ("b", 0.0)), "knn": hits(("c", 1.0))}
    fused = linear_fusion(results, {"knn": 0.0})
    # b and c tie at 0.0: c is rank 1 in knn, b rank 2 in bm25 -> c first
    assert [(h.doc_id, h.score) for h in fused] == [("a", 1.0), ("c", 0.0), ("b", 0.0)]
    assert fused[1].contributions["knn"] == Contribution(1.0, 1, 1.0, 0.0)


# ------------------------------------------------------------------------------------------------------- rrf


def test_rrf_default_k_60_exact_terms() -> None:
    results = {
        "bm25": hits(("a", 9.0), ("b", 5.0), ("c", 1.0)),
        "knn": hits(("b", 0.9), ("d", 0.8)),
    }
    assert DEFAULT_RANK_CONSTANT == 60
    fused = rrf_fusion(results)
    # a = 1/61; b = 1/62 + 1/61; c = 1/63; d = 1/62
    assert ids(fused) == ["b", "a", "d", "c"]
    expected = {"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63, "d": 1 / 62}
    assert {h.doc_id: h.score for h in fused} == pytest.approx(expected, rel=REL)
    assert fused[0].contributions == {
        "bm25": Contribution(raw_score=5.0, rank=2, normalised=None, weighted=1 / 62),
        "knn": Contribution(raw_score=0.9, rank=1, normalised=None, weighted=1 / 61),
    }
    assert fused[1].contributions["knn"] == Contribution(None, None, None, 0.0)
    assert_explained(fused)


def test_rrf_weighted_with_custom_k() -> None:
    results = {"bm25": hits(("a", 3.0), ("b", 2.0), ("c", 1.0)), "knn": hits(("b", 0.5), ("d", 0.4))}
    fused = rrf_fusion(results, {"bm25": 2.0, "knn": 0.5}, rank_constant=1)
    # a = 2/(1+1) = 1; b = 2/(1+2) + 0.5/(1+1) = 11/12; c = 2/(1+3) = 0.5; d = 0.5/(1+2) = 1/6
    assert ids(fused) == ["a", "b", "c", "d"]
    assert [h.score for h in fused] == pytest.approx([1.0, 11 / 12, 0.5, 1 / 6], rel=REL)
    assert fused[0].score == 1.0
    assert fused[2].score == 0.5
    fractional = {h.doc_id: h for h in rrf_fusion(results, rank_constant=0.5)}
    assert fractional["a"].score == 1 / 1.5
    assert fractional["b"].contributions["bm25"].weighted == 1 / 2.5
    assert_explained(fused)


def test_rrf_ignores_scores() -> None:
    one = {"bm25": hits(("a", 9.0), ("b", 1.0)), "knn": hits(("b", 0.9), ("c", 0.1))}
    two = {"bm25": hits(("a", 0.2), ("b", 0.1)), "knn": hits(("b", 70.0), ("c", 60.0))}
    assert [(h.doc_id, h.score) for h in rrf_fusion(one)] == [(h.doc_id, h.score) for h in rrf_fusion(two)]


# ---------------------------------------------------------------------------------- order, limit, edge cases


def test_tie_break_best_rank_then_doc_id() -> None:
    # equal scores (degenerate minmax list -> 1.0 each): z has rank 1, a has rank 2 -> z first
    fused = linear_fusion({"bm25": hits(("z", 5.0), ("a", 5.0))})
    assert [(h.doc_id, h.score) for h in fused] == [("z", 1.0), ("a", 1.0)]
    # equal scores and equal best rank -> doc_id ascending
    fused = rrf_fusion({"bm25": hits(("q", 1.0)), "knn": hits(("p", 1.0))})
    assert ids(fused) == ["p", "q"]


def test_order_is_deterministic_and_independent_of_retriever_order() -> None:
    # x and y get the same terms {1/61, 1/62} in different order; fsum makes the scores bit-identical
    results = {
        "bm25": hits(("y", 2.0), ("x", 1.0)),
        "knn": hits(("x", 2.0), ("y", 1.0)),
        "t": hits(("x", 1.0)),
    }
    reversed_results = dict(reversed(list(results.items())))
    for method in METHODS:
        first = [(h.doc_id, h.score) for h in fuse(method, results)]
        again = [(h.doc_id, h.score) for h in fuse(method, results)]
        flipped = [(h.doc_id, h.score) for h in fuse(method, reversed_results)]
        assert first == again == flipped
    fused = rrf_fusion({"bm25": hits(("y", 2.0), ("x", 1.0)), "knn": hits(("x", 2.0), ("y", 1.0))})
    assert fused[0].score == fused[1].score
    assert ids(fused) == ["x", "y"]


def test_empty_lists_are_ignored() -> None:
    results: dict[str, list[Hit]] = {"bm25": hits(("a", 2.0), ("b", 1.0)), "knn": []}
    for method in METHODS:
        fused = fuse(method, results, {"knn": 5.0})
        assert ids(fused) == ["a", "b"]
        assert all(list(h.contributions) == ["bm25"] for h in fused)
        assert fuse(method, {"bm25": [], "knn": []}) == []
        assert fuse(method, {}) == []


def test_limit() -> None:
    results = {"bm25": hits(("a", 3.0), ("b", 2.0), ("c", 1.0)), "knn": hits(("d", 1.0))}
    full = rrf_fusion(results)
    assert rrf_fusion(results, limit=2) == full[:2]
    assert linear_fusion(results, limit=0) == []
    assert linear_fusion(results, limit=10) == linear_fusion(results)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValidationError, match="limit must be") as info:
            fuse("rrf", results, limit=bad)  # type: ignore[arg-type]
        assert info.value.field == "limit"


def test_inputs_are_not_mutated_and_outputs_are_new() -> None:
    results = {
        "bm25": hits(("a", 8.0), ("b", 4.0), ("c", 0.0)),
        "knn": hits(("b", 0.75), ("d", 0.5)),
    }
    weights = {"bm25": 2.0, "knn": 1.0}
    results_before = copy.deepcopy(results)
    weights_before = dict(weights)
    outputs = [linear_fusion(results, weights, normaliser=n) for n in NORMALISERS]
    outputs.append(rrf_fusion(results, weights))
    assert results == results_before
    assert weights == weights_before
    assert [h.doc_id for h in results["bm25"]] == ["a", "b", "c"]
    input_objects = {id(h) for hs in results.values() for h in hs}
    for fused in outputs:
        assert all(isinstance(h, FusedHit) and id(h) not in input_objects for h in fused)
        # each hit owns its contributions dict
        assert len({id(h.contributions) for h in fused}) == len(fused)
    with pytest.raises(AttributeError):
        results["bm25"][0].score = 1.0  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("method", METHODS)
def test_weight_validation_names_the_problem(method: str) -> None:
    results = {"bm25": hits(("a", 1.0)), "knn": hits(("b", 1.0))}
    cases = [
        ({"knn": -0.5}, r"weight for retriever 'knn' is negative \(-0.5\)"),
        ({"bm25": 0.0, "knn": 0.0}, "all weights are zero"),
        (
            {"bm25": 1.0, "image": 1.0, "audio": 2.0},
            r"unknown retriever\(s\) 'audio', 'image'; known: 'bm25', 'knn'",
        ),
        ({"bm25": math.nan}, "weight for retriever 'bm25' must be a finite number"),
        ({"bm25": math.inf}, "weight for retriever 'bm25' must be a finite number"),
    ]
    for weights, message in cases:
        with pytest.raises(ValidationError, match=message) as info:
            fuse(method, results, weights)
        assert info.value.field == "weights"


@pytest.mark.parametrize("bad", [0, -1, 0.0, math.nan, math.inf])
def test_rank_constant_must_be_positive(bad: float) -> None:
    results = {"bm25": hits(("a", 1.0))}
    with pytest.raises(ValidationError, match="rank_constant must be a finite number > 0") as info:
        rrf_fusion(results, rank_constant=bad)
    assert info.value.field == "rank_constant"
    with pytest.raises(ValidationError, match="rank_constant"):
        fuse("linear", results, rank_constant=bad)  # validated whatever the method


def test_unknown_method_and_normaliser() -> None:
    results = {"bm25": hits(("a", 1.0))}
    with pytest.raises(
        ValidationError, match="unknown fusion method 'borda'; expected one of linear, rrf"
    ) as info:
        fuse("borda", results)
    assert info.value.field == "method"
    with pytest.raises(ValidationError, match="unknown normaliser 'max'") as info:
        linear_fusion(results, normaliser="max")
    assert info.value.field == "normaliser"
    with pytest.raises(ValidationError, match="unknown normaliser 'zcore'"):
        fuse("rrf", results, normaliser="zcore")  # a typo never passes silently


def test_bad_hit_lists() -> None:
    with pytest.raises(ValidationError, match="retriever 'knn' lists doc_id 'a' twice") as info:
        rrf_fusion({"bm25": hits(("a", 1.0)), "knn": hits(("a", 0.9), ("a", 0.8))})
    assert info.value.field == "results"
    with pytest.raises(ValidationError, match="'bm25' gives doc_id 'b' a non-finite score nan"):
        linear_fusion({"bm25": hits(("a", 1.0), ("b", math.nan))})


def test_fuse_dispatches() -> None:
    results = {"bm25": hits(("a", 3.0), ("b", 1.0)), "knn": hits(("b", 0.5), ("c", 0.25))}
    weights = {"bm25": 0.7, "knn": 0.3}
    for n in NORMALISERS:
        assert fuse("linear", results, weights, normaliser=n) == linear_fusion(results, weights, normaliser=n)
    assert fuse("rrf", results, weights, rank_constant=10) == rrf_fusion(results, weights, rank_constant=10)


# ---------------------------------------------------------------------------------------------- properties


def _random_results(rng: random.Random) -> dict[str, list[Hit]]:
    pool = [f"doc-{i}" for i in range(40)]
    results: dict[str, list[Hit]] = {}
    for name in ("bm25", "knn", "image", "audio")[: rng.randint(1, 4)]:
        chosen = rng.sample(pool, rng.randint(0, 30))
        # rounded scores make ties common; negative scores exercise the zscore/l2 floors
        scored = [Hit(d, round(rng.uniform(-5.0, 20.0), rng.choice([0, 1, 6]))) for d in chosen]
        results[name] = sorted(scored, key=lambda h: h.score, reverse=True)
    return results


def test_random_lists_sorted_and_explained() -> None:
    rng = random.Random(0)
    checked = 0
    for _ in range(300):
        results = _random_results(rng)
        weights = {name: rng.choice([0.0, 0.25, 1.0, 2.5]) for name in results}
        if all(w == 0.0 for w in weights.values()):
            weights[next(iter(weights))] = 1.0
        candidates = {h.doc_id for hs in results.values() for h in hs}
        k = rng.choice([1, 60, 2.5])
        runs = [("linear", n, linear_fusion(results, weights, normaliser=n)) for n in NORMALISERS]
        runs.append(("rrf", "", rrf_fusion(results, weights, rank_constant=k)))
        for method, normaliser, fused in runs:
            assert {h.doc_id for h in fused} == candidates
            keys = []
            for h in fused:
                assert math.fsum(c.weighted for c in h.contributions.values()) == h.score
                assert list(h.contributions) == [name for name, hs in results.items() if hs]
                ranks = [c.rank for c in h.contributions.values() if c.rank is not None]
                keys.append((-h.score, min(ranks), h.doc_id))
                for name, c in h.contributions.items():
                    w = weights[name]
                    if c.rank is not None:
                        assert results[name][c.rank - 1] == Hit(h.doc_id, c.raw_score)  # type: ignore[arg-type]
                    if method == "linear":
                        assert c.normalised is not None
                        assert c.weighted == w * c.normalised
                        if normaliser in ("minmax", "dbsf"):
                            assert 0.0 <= c.normalised <= 1.0
                        if c.rank is None:  # absent: the floor, never above a retrieved hit of that list
                            present = normalise([x.score for x in results[name]], normaliser)
                            assert c.normalised == min(0.0, *present)
                    else:
                        assert c.normalised is None
                        assert c.weighted == (0.0 if c.rank is None else w / (k + c.rank))
                checked += 1
            assert keys == sorted(keys)
            assert len(set(keys)) == len(keys)
            assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)
    assert checked > 10_000
