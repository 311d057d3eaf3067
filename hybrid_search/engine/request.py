"""Engine-neutral search requests: what the query layer asks for, before a dialect renders it.

``query`` and ``filter`` use the query DSL that Elasticsearch and OpenSearch share (bool, term, terms, range,
multi_match...). Only kNN differs between the engines, so it is modelled here and rendered by each dialect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid_search.errors import ValidationError

SIMILARITIES = ("cosine", "dot_product", "l2")


@dataclass(frozen=True)
class KnnClause:
    """Nearest neighbours on one vector field: approximate (HNSW), or ``exact``.

    ``k`` hits are wanted; ``num_candidates`` is the per-shard candidate pool (HNSW beam), at least ``k``.
    ``boost`` weights this clause's score in a server-side sum (``native`` hybrid).

    ``exact``: every document that passes the request's filters and has the field is scored against the vector
    (a script_score, a pre-filter by construction) and the request's ``size`` decides how many come back:
    ``k`` is no cap, so in a ``native`` hybrid sum every filtered document gets a vector score. It is for a
    field without an HNSW graph (OpenSearch ``knn_vector`` on an index without ``index.knn``). ``similarity``
    (``cosine``, ``dot_product``, ``l2``) is the field's, which an exact query must name: the scores are on the
    same scale as the approximate ones of that similarity (cosine: ``(1 + cos) / 2``), see the dialects.
    Top-level vector fields only.
    """

    field: str
    vector: tuple[float, ...]
    k: int
    num_candidates: int | None = None
    boost: float = 1.0
    exact: bool = False
    similarity: str = "cosine"

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITIES:
            raise ValidationError(
                f"kNN similarity must be one of {', '.join(SIMILARITIES)}, got {self.similarity!r}",
                field="similarity",
            )
        if self.exact and "." in self.field:
            raise ValidationError(
                f"exact kNN takes a top-level vector field, got {self.field!r}", field="field"
            )
        if self.k < 1:
            raise ValidationError(f"kNN k must be at least 1, got {self.k}", field="k")
        if self.num_candidates is not None and self.num_candidates < self.k:
            raise ValidationError(
                f"kNN num_candidates ({self.num_candidates}) must be at least k ({self.k})",
                field="num_candidates",
            )
        if not self.vector:
            raise ValidationError(f"kNN on {self.field!r} got an empty vector", field="vector")
        if self.boost < 0:
            raise ValidationError(f"kNN boost must not be negative, got {self.boost}", field="boost")

    @property
    def candidates(self) -> int:
        """The candidate pool: given, or twice ``k`` (at least 100), capped at 10,000."""
        if self.num_candidates is not None:
            return self.num_candidates
        return min(10_000, max(self.k, 2 * self.k, 100))


@dataclass(frozen=True)
class SearchRequest:
    """One search: an optional lexical ``query``, kNN clauses, a ``filter`` applied to all of them, paging."""

    query: Mapping[str, Any] | None = None
    knn: tuple[KnnClause, ...] = ()
    filter: Sequence[Mapping[str, Any]] = ()
    size: int = 10
    from_: int = 0
    aggs: Mapping[str, Any] | None = None
    source: bool | Sequence[str] = True
    track_total_hits: bool | int = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size < 0 or self.from_ < 0:
            raise ValidationError("size and from must not be negative", field="size")


__all__ = ["KnnClause", "SearchRequest"]
