"""Query-adaptive fusion: the weight of the dense retriever predicted per query from cheap features.

One global weight suits the average query; "3/4 in. x 10 ft. copper pipe" wants BM25's exact tokens, "something
to keep the bathroom from fogging" wants the dense model. :class:`AdaptiveFusion` predicts, for one query, the
expected nDCG@10 of each weight on a grid (a ridge regression per grid weight over the standardised features of
:func:`query_features`) and fuses with the weight of the highest prediction. Strong ridge penalties shrink every
prediction towards that weight's mean over the training queries, so with uninformative features the model falls
back to the best global weight.

Features (all cheap, no extra engine call): query length in words and characters, numbers, units of measure,
each retriever's top score, its gap between rank 1 and rank 10, how many hits it returned, and the overlap of the
two top-10 lists. Pure numpy; the fitted model is plain JSON (it lives in the index's tuned configuration).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import Hit

FEATURES: tuple[str, ...] = (
    "words",
    "chars",
    "numbers",
    "units",
    "lexical_top",
    "lexical_gap",
    "lexical_hits",
    "dense_top",
    "dense_gap",
    "overlap10",
)
_NUMBER = re.compile(r"\d")
_UNITS = re.compile(
    r"(?i)\b\d*\s*(?:in|inch|inches|ft|feet|foot|gal|gallon|lb|lbs|oz|mm|cm|m|amp|amps|volt|v|watt|w|btu|"
    r"gauge|ga|psi|sq|cu|qt|pc|pack|x)\b\.?|\d+\s*['\"]|\d+x\d+"
)


def query_features(text: str, lexical: Sequence[Hit], dense: Sequence[Hit]) -> list[float]:
    """The :data:`FEATURES` of one query, from its text and the two retrievers' ranked hits (best first)."""
    words = text.split()

    def top_and_gap(hits: Sequence[Hit]) -> tuple[float, float]:
        if not hits:
            return 0.0, 0.0
        top = hits[0].score
        tenth = hits[min(9, len(hits) - 1)].score
        return top, (top - tenth) / top if top > 0 else 0.0

    lexical_top, lexical_gap = top_and_gap(lexical)
    dense_top, dense_gap = top_and_gap(dense)
    first = {h.doc_id for h in lexical[:10]}
    second = {h.doc_id for h in dense[:10]}
    return [
        float(len(words)),
        float(len(text)),
        float(sum(bool(_NUMBER.search(w)) for w in words)),
        float(len(_UNITS.findall(text))),
        math.log1p(max(lexical_top, 0.0)),
        lexical_gap,
        math.log1p(len(lexical)),
        dense_top,
        dense_gap,
        len(first & second) / 10.0,
    ]


@dataclass(frozen=True)
class AdaptiveFusion:
    """A fitted model: feature scaling, one ridge regression per grid weight (see the module docstring)."""

    grid: tuple[float, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[tuple[float, ...], ...]  # one row per grid weight: intercept, then one per feature
    alpha: float

    def predict(self, features: Sequence[float]) -> float:
        """The dense retriever's weight (share in [0, 1]) for a query with these features."""
        if len(features) != len(self.mean):
            raise ValidationError(
                f"expected {len(self.mean)} features, got {len(features)}", field="features"
            )
        x = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        scores = np.asarray(self.coef) @ np.concatenate(([1.0], x))
        return float(self.grid[int(np.argmax(scores))])

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "grid": list(self.grid),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": [list(row) for row in self.coef],
            "alpha": self.alpha,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AdaptiveFusion:
        try:
            if list(data["features"]) != list(FEATURES):
                raise ValidationError(
                    f"adaptive fusion model uses features {data['features']}, this version computes {FEATURES}",
                    field="adaptive",
                )
            model = cls(
                grid=tuple(float(g) for g in data["grid"]),
                mean=tuple(float(m) for m in data["mean"]),
                scale=tuple(float(s) for s in data["scale"]),
                coef=tuple(tuple(float(c) for c in row) for row in data["coef"]),
                alpha=float(data["alpha"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"malformed adaptive fusion model: {exc}", field="adaptive") from None
        if len(model.coef) != len(model.grid) or any(len(r) != len(model.mean) + 1 for r in model.coef):
            raise ValidationError("malformed adaptive fusion model: shapes do not match", field="adaptive")
        return model


def fit_adaptive(
    features: npt.ArrayLike,
    gains: npt.ArrayLike,
    grid: Sequence[float],
    *,
    alpha: float = 10.0,
) -> AdaptiveFusion:
    """Fit on training queries: ``features[q]`` and ``gains[q][i]`` = the metric of query q fused at ``grid[i]``."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(gains, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or y.shape[1] != len(grid) or len(x) < 2:
        raise ValidationError("need at least 2 queries, each with features and one gain per grid weight")
    if alpha < 0:
        raise ValidationError("alpha must be >= 0", field="alpha")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    penalty = alpha * np.eye(z.shape[1])
    penalty[0, 0] = (
        0.0  # the intercept is not shrunk: with alpha -> inf every query gets the best global weight
    )
    coef = np.linalg.solve(z.T @ z + penalty, z.T @ y).T
    return AdaptiveFusion(
        grid=tuple(float(g) for g in grid),
        mean=tuple(float(m) for m in mean),
        scale=tuple(float(s) for s in scale),
        coef=tuple(tuple(float(c) for c in row) for row in coef),
        alpha=float(alpha),
    )


__all__ = ["FEATURES", "AdaptiveFusion", "fit_adaptive", "query_features"]
