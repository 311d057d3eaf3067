"""Query-adaptive fusion: features pinned on hand-made hit lists, the ridge model recovers a planted rule."""

from __future__ import annotations

import pytest

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.adaptive import FEATURES, AdaptiveFusion, fit_adaptive, query_features
from hybrid_search.ranking.fusion import Hit

pytestmark = pytest.mark.unit


def _hits(prefix: str, scores: list[float]) -> list[Hit]:
    return [Hit(f"{prefix}{n}", s) for n, s in enumerate(scores)]


def test_features_of_a_hand_made_query() -> None:
    lexical = _hits("d", [10.0, 8.0, 6.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5])
    dense = [Hit("d0", 0.9), Hit("x1", 0.8), Hit("d2", 0.7)]
    values = dict(zip(FEATURES, query_features('3/4 in. x 10 ft. pipe 2"', lexical, dense), strict=True))
    assert values["words"] == 7
    assert values["chars"] == len('3/4 in. x 10 ft. pipe 2"')
    assert values["numbers"] == 3  # "3/4", "10", '2"'
    assert values["units"] >= 3  # in., x, ft. and 2"
    assert values["lexical_gap"] == pytest.approx((10.0 - 1.0) / 10.0)
    assert values["dense_top"] == pytest.approx(0.9)
    assert values["dense_gap"] == pytest.approx((0.9 - 0.7) / 0.9)  # fewer than 10 hits: the last one
    assert values["overlap10"] == pytest.approx(0.2)  # d0 and d2 in both top-10s


def test_features_of_empty_lists_are_zero_not_errors() -> None:
    values = dict(zip(FEATURES, query_features("anything", [], []), strict=True))
    assert values["lexical_top"] == values["dense_top"] == values["overlap10"] == 0.0


def test_fit_recovers_a_planted_rule_and_round_trips_as_json() -> None:
    grid = (0.0, 0.5, 1.0)
    features, gains = [], []
    for n in range(40):
        numeric = n % 2 == 0
        f = query_features("12 in. shelf" if numeric else "cosy reading lamp", _hits("a", [5.0, 1.0]), [])
        features.append(f)
        # numeric queries do best with BM25 only (share 0), the others with the dense retriever only
        gains.append([0.9, 0.5, 0.1] if numeric else [0.1, 0.5, 0.9])
    model = fit_adaptive(features, gains, grid, alpha=0.1)
    numeric_query = query_features("6 ft. ladder", _hits("a", [5.0, 1.0]), [])
    plain_query = query_features("soft blanket", _hits("a", [5.0, 1.0]), [])
    assert model.predict(numeric_query) == 0.0
    assert model.predict(plain_query) == 1.0
    again = AdaptiveFusion.from_dict(model.to_dict())
    assert again == model


def test_strong_penalty_falls_back_to_the_best_global_weight() -> None:
    features = [[float(n), 1.0] + [0.0] * (len(FEATURES) - 2) for n in range(10)]
    gains = [[0.2, 0.6, 0.4] if n % 3 else [0.3, 0.1, 0.2] for n in range(10)]
    model = fit_adaptive(features, gains, (0.0, 0.5, 1.0), alpha=1e9)
    assert {model.predict(f) for f in features} == {0.5}  # mean gains: 0.23, 0.45, 0.34


@pytest.mark.parametrize(
    ("features", "gains"),
    [([[1.0]], [[0.1, 0.2]]), ([[1.0], [2.0]], [[0.1], [0.2]]), ([], [])],
)
def test_fit_refuses_bad_shapes(features: list[list[float]], gains: list[list[float]]) -> None:
    with pytest.raises(ValidationError):
        fit_adaptive(features, gains, (0.0, 1.0))


def test_from_dict_refuses_other_features_and_bad_shapes() -> None:
    model = fit_adaptive([[float(n)] * len(FEATURES) for n in range(3)], [[0.1, 0.2]] * 3, (0.0, 1.0))
    data = model.to_dict()
    with pytest.raises(ValidationError, match="features"):
        AdaptiveFusion.from_dict({**data, "features": ["words"]})
    with pytest.raises(ValidationError, match="shapes"):
        AdaptiveFusion.from_dict({**data, "grid": [0.0]})
    with pytest.raises(ValidationError, match="malformed"):
        AdaptiveFusion.from_dict({k: v for k, v in data.items() if k != "coef"})
    with pytest.raises(ValidationError, match="features"):
        model.predict([1.0])
