"""Learned fusion: a linear ranker over BM25, dense and title-match features of every candidate.

Score fusion only sees two numbers per product, so it cannot tell "the query's words are all in this title"
from "one rare word matched". :class:`LearnedFusion` scores each candidate in the union of the BM25 and text kNN
lists with a linear function of the :data:`FEATURES` of :func:`candidate_features`:

- from each list: the score relative to the list's top score (BM25) or the raw cosine (dense), its min-max
  normalised value, whether the product is in the list at all, and its reciprocal rank ``1 / (60 + rank)``;
- from the product's title (doc values, no extra request): the share of the query's words it contains, the share
  of the query's numbers it contains (sizes and model numbers matter), the share of the query's word pairs it
  contains in order, its length, and how late its first matching word comes.

The weights are learned from judged queries (``hybrid-search tune --learned``) with a pairwise logistic loss (the
linear RankNet): for each judged product and products of the same query judged lower or not judged, the model is
pushed to score the better one higher, each pair weighted by the gain difference. Features are standardised with
the training means and scales; the model is plain JSON in the index's tuned configuration. Pure numpy.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import Contribution, FusedHit, Hit

LEXICAL, DENSE = "bm25", "text_knn"
TITLE = "title_match"  # the explain entry of the title features
RANK_CONSTANT = 60
FEATURES: tuple[str, ...] = (
    "lexical_relative",
    "lexical_minmax",
    "lexical_listed",
    "lexical_reciprocal_rank",
    "dense_score",
    "dense_minmax",
    "dense_listed",
    "dense_reciprocal_rank",
    "title_word_coverage",
    "title_number_coverage",
    "title_pair_coverage",
    "title_log_words",
    "title_first_match",
)
GROUPS: dict[str, tuple[int, ...]] = {LEXICAL: (0, 1, 2, 3), DENSE: (4, 5, 6, 7), TITLE: (8, 9, 10, 11, 12)}
_TOKEN = re.compile(r"[^\W_]+(?:[.,/][0-9]+)*")
_FIRST_MATCH_CAP = 30

Matrix = npt.NDArray[np.float64]


def tokens(text: str) -> list[str]:
    """Lower-cased words and numbers (``3/4``, ``1.5`` kept whole), English plural ``s`` stripped."""
    out = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss") and token.isalpha():
            token = token[:-1]
        out.append(token)
    return out


def _by_doc(hits: Sequence[Hit]) -> tuple[dict[str, tuple[float, int]], float, float]:
    """``{doc: (score, rank from 0)}`` (first occurrence), the top and the lowest score of a list."""
    found: dict[str, tuple[float, int]] = {}
    for rank, hit in enumerate(hits):
        found.setdefault(hit.doc_id, (hit.score, rank))
    if not hits:
        return found, 0.0, 0.0
    scores = [h.score for h in hits]
    return found, max(scores), min(scores)


def candidate_features(
    text: str, lists: Mapping[str, Sequence[Hit]], titles: Mapping[str, str | None]
) -> tuple[list[str], Matrix]:
    """The candidates (BM25's list, then the dense list's new ones, each in rank order) and their features.

    ``lists``: ``{"bm25": hits, "text_knn": hits}`` (either may be missing or empty: its features are then 0);
    ``titles``: each candidate's title (missing or None = no title words).
    """
    lexical, lex_top, lex_low = _by_doc(lists.get(LEXICAL, ()))
    dense, dense_top, dense_low = _by_doc(lists.get(DENSE, ()))
    ids = list(dict.fromkeys([*lexical, *dense]))
    query = tokens(text)
    words = set(query)
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    pairs = set(itertools.pairwise(query))
    rows = np.zeros((len(ids), len(FEATURES)), dtype=np.float64)
    lex_span = lex_top - lex_low
    dense_span = dense_top - dense_low
    for n, doc in enumerate(ids):
        row = rows[n]
        if doc in lexical:
            score, rank = lexical[doc]
            row[0] = score / lex_top if lex_top > 0 else 0.0
            row[1] = (score - lex_low) / lex_span if lex_span > 0 else 1.0
            row[2] = 1.0
            row[3] = 1.0 / (RANK_CONSTANT + rank + 1)
        if doc in dense:
            score, rank = dense[doc]
            row[4] = score
            row[5] = (score - dense_low) / dense_span if dense_span > 0 else 1.0
            row[6] = 1.0
            row[7] = 1.0 / (RANK_CONSTANT + rank + 1)
        else:
            row[4] = dense_low  # not in the dense top: its similarity is at most the list's lowest
        title = tokens(titles.get(doc) or "")
        in_title = set(title)
        row[8] = len(words & in_title) / len(words) if words else 0.0
        row[9] = len(numbers & in_title) / len(numbers) if numbers else 1.0
        row[10] = len(pairs & set(itertools.pairwise(title))) / len(pairs) if pairs else 0.0
        row[11] = math.log1p(len(title))
        first = min((title.index(w) for w in words & in_title), default=_FIRST_MATCH_CAP)
        row[12] = min(first, _FIRST_MATCH_CAP) / _FIRST_MATCH_CAP
    return ids, rows


@dataclass(frozen=True)
class LearnedFusion:
    """A fitted ranker: standardisation and one weight per feature (see the module docstring)."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    rank_window: int | None = None  # the candidates per retriever it was trained on (informative)

    def scores(self, features: Matrix) -> Matrix:
        """Each candidate's score (rows of ``features``)."""
        if features.ndim != 2 or features.shape[1] != len(self.coef):
            raise ValidationError(
                f"expected {len(self.coef)} features per candidate, got shape {features.shape}",
                field="features",
            )
        scores: Matrix = self._standardised(features) @ np.asarray(self.coef)
        return scores

    def _standardised(self, features: Matrix) -> Matrix:
        standardised: Matrix = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return standardised

    def fuse(
        self,
        text: str,
        lists: Mapping[str, Sequence[Hit]],
        titles: Mapping[str, str | None],
        *,
        limit: int | None = None,
    ) -> list[FusedHit]:
        """The candidates ranked by the model, best first (ties: BM25's order, then the dense list's).

        Each hit's ``contributions`` split its score by feature group (``bm25``, ``text_knn``, ``title_match``),
        so the score is their sum as in every other fusion.
        """
        ids, features = candidate_features(text, lists, titles)
        if not ids:
            return []
        parts = self._standardised(features) * np.asarray(self.coef)
        totals = parts.sum(axis=1)
        order = np.argsort(-totals, kind="stable")[:limit]
        lexical, _, _ = _by_doc(lists.get(LEXICAL, ()))
        dense, _, _ = _by_doc(lists.get(DENSE, ()))
        out = []
        for i in order:
            doc = ids[int(i)]
            contributions: dict[str, Contribution] = {}
            for group, columns in GROUPS.items():
                listed = lexical.get(doc) if group == LEXICAL else dense.get(doc) if group == DENSE else None
                normalised = float(features[i, columns[1]]) if group != TITLE else float(features[i, 8])
                contributions[group] = Contribution(
                    raw_score=listed[0] if listed else None,
                    rank=listed[1] + 1 if listed else None,
                    normalised=normalised if group == TITLE or listed else None,
                    weighted=float(math.fsum(float(parts[i, c]) for c in columns)),
                )
            score = math.fsum(c.weighted for c in contributions.values())
            out.append(FusedHit(doc, score, contributions))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "rank_window": self.rank_window,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedFusion:
        try:
            if list(data["features"]) != list(FEATURES):
                raise ValidationError(
                    f"learned fusion model uses features {data['features']}, this version computes {FEATURES}",
                    field="learned",
                )
            window = data.get("rank_window")
            model = cls(
                mean=tuple(float(m) for m in data["mean"]),
                scale=tuple(float(s) for s in data["scale"]),
                coef=tuple(float(c) for c in data["coef"]),
                rank_window=int(window) if window is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"malformed learned fusion model: {exc}", field="learned") from None
        sizes = {len(model.mean), len(model.scale), len(model.coef)}
        if sizes != {len(FEATURES)}:
            raise ValidationError("malformed learned fusion model: shapes do not match", field="learned")
        values = [*model.mean, *model.scale, *model.coef]
        if not all(math.isfinite(v) for v in values) or any(s <= 0 for s in model.scale):
            raise ValidationError("malformed learned fusion model: values must be finite", field="learned")
        return model


def fit_learned(
    groups: Sequence[tuple[Matrix, npt.ArrayLike]],
    *,
    pairs_per_item: int = 20,
    l2: float = 1e-3,
    iterations: int = 300,
    learning_rate: float = 0.5,
    seed: int = 0,
    rank_window: int | None = None,
) -> LearnedFusion:
    """Fit on training queries: ``groups[q] = (features of q's candidates, their gains)`` (unjudged = 0).

    Pairs: each candidate with a gain > 0 against up to ``pairs_per_item`` candidates of the same query with a
    lower gain (seeded sample), weighted by the gain difference; full-batch gradient descent on the L2-penalised
    pairwise logistic loss from zero weights (deterministic for a seed).
    """
    usable = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in groups]
    usable = [(x, y) for x, y in usable if len(x)]
    if any(x.ndim != 2 or x.shape[1] != len(FEATURES) or len(y) != len(x) for x, y in usable):
        raise ValidationError(f"each query needs a (candidates x {len(FEATURES)}) matrix and one gain each")
    if l2 < 0 or iterations < 1 or learning_rate <= 0 or pairs_per_item < 1:
        raise ValidationError("l2 must be >= 0; iterations, learning_rate and pairs_per_item > 0")
    every = np.vstack([x for x, _ in usable]) if usable else np.zeros((0, len(FEATURES)))
    mean = every.mean(axis=0) if len(every) else np.zeros(len(FEATURES))
    scale = every.std(axis=0) if len(every) else np.ones(len(FEATURES))
    scale[scale == 0] = 1.0
    rng = np.random.default_rng(seed)
    differences: list[Matrix] = []
    weights: list[Matrix] = []
    for x, y in usable:
        z = (x - mean) / scale
        for better in np.flatnonzero(y > 0):
            worse = np.flatnonzero(y < y[better])
            if not len(worse):
                continue
            picked = rng.choice(worse, size=min(pairs_per_item, len(worse)), replace=False)
            differences.append(z[better] - z[picked])
            weights.append(y[better] - y[picked])
    if not differences:
        raise ValidationError("no training pairs: the queries need judged candidates with a gain > 0")
    d = np.vstack(differences)
    w = np.concatenate(weights)
    coef = np.zeros(len(FEATURES))
    for _ in range(iterations):
        margin = np.clip(d @ coef, -50.0, 50.0)
        push = w / (1.0 + np.exp(margin))  # the loss's slope for each pair, times its weight
        gradient = -(d * push[:, None]).mean(axis=0) + l2 * coef
        coef -= learning_rate * gradient
    return LearnedFusion(
        mean=tuple(float(m) for m in mean),
        scale=tuple(float(s) for s in scale),
        coef=tuple(float(c) for c in coef),
        rank_window=rank_window,
    )


__all__ = [
    "DENSE",
    "FEATURES",
    "LEXICAL",
    "TITLE",
    "LearnedFusion",
    "candidate_features",
    "fit_learned",
    "tokens",
]
