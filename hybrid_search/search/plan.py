"""Which retrievers answer a query, with which weights, and the engine requests they send (pure functions).

Retrievers (``RETRIEVERS``), each searching the same filtered candidate set:

    name            needs           query vector from                       searches
    bm25            text            - (``multi_match``, never query syntax)  title, brand, category...
    text_knn        text            the text encoder                        text_vector
    image_knn       image           the image encoder                       image_vector
    colour_knn      image           the colour histogram                    colour_vector
    fused_knn       text and image  fuse_vectors(text, image, w)            fused_vector
    text_to_image   text            a CLIP text tower (image encoder CLIP)  image_vector
    image_to_text   image           a CLIP image tower (text encoder CLIP)  text_vector

A retriever *applies* when the query has its inputs, and is *available* when its encoder is configured and
the index has its vector field. It runs when it applies, is available and has a weight > 0. Asking for one
by weight that cannot run (no image given, no CLIP encoder, no such field) is a ``ValidationError``, never a
silent no-op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_search.engine.request import KnnClause, SearchRequest
from hybrid_search.errors import ValidationError
from hybrid_search.search.bodies import (
    bm25_request,
    candidates_request,
    facet_aggs,
    knn_clause,
    knn_request,
    native_request,
)
from hybrid_search.search.query import RETRIEVERS


@dataclass(frozen=True)
class RetrieverSpec:
    """One retriever: the query inputs it needs, the encoder roles it embeds with, the vector role it searches."""

    name: str
    needs: tuple[str, ...]
    encoders: tuple[str, ...]
    field_role: str | None
    description: str


SPECS: dict[str, RetrieverSpec] = {
    spec.name: spec
    for spec in (
        RetrieverSpec("bm25", ("text",), (), None, "BM25 over the product text fields"),
        RetrieverSpec("text_knn", ("text",), ("text",), "text", "kNN of the query text on the text vectors"),
        RetrieverSpec(
            "image_knn", ("image",), ("image",), "image", "kNN of the query image on the photo vectors"
        ),
        RetrieverSpec("colour_knn", ("image",), ("colour",), "colour", "kNN of the query image's colours"),
        RetrieverSpec(
            "fused_knn",
            ("text", "image"),
            ("text", "image"),
            "fused",
            "kNN of the fused text+image query vector on the fused vectors",
        ),
        RetrieverSpec(
            "text_to_image",
            ("text",),
            ("image_text",),
            "image",
            "cross-modal: the query text (CLIP text tower) on the photo vectors",
        ),
        RetrieverSpec(
            "image_to_text",
            ("image",),
            ("text_image",),
            "text",
            "cross-modal: the query image (CLIP image tower) on the text vectors",
        ),
    )
}
assert tuple(SPECS) == RETRIEVERS


@dataclass(frozen=True)
class Retriever:
    """A retriever that runs: its weight and the vector field it searches (None for BM25)."""

    name: str
    weight: float
    field: str | None


def choose_retrievers(
    *,
    has_text: bool,
    has_image: bool,
    defaults: Mapping[str, float],
    weights: Mapping[str, float] | None,
    encoders: Sequence[str],
    fields: Mapping[str, str],
) -> list[Retriever]:
    """The retrievers that run, in ``RETRIEVERS`` order.

    ``defaults``: the settings' weight per retriever; ``weights``: the query's overrides; ``encoders``: the
    configured encoder roles; ``fields``: vector role -> field name for the fields the index has.
    """
    given = dict(weights or {})
    inputs = {"text": has_text, "image": has_image}
    chosen: list[Retriever] = []
    applicable = 0
    for name, spec in SPECS.items():
        weight = given.get(name, defaults.get(name, 0.0))
        missing_input = [need for need in spec.needs if not inputs[need]]
        if missing_input:
            if given.get(name, 0.0) > 0:
                raise ValidationError(
                    f"retriever {name} needs a query {' and '.join(spec.needs)}; this query has no "
                    f"{' or '.join(missing_input)}",
                    field="weights",
                )
            continue
        problem = None
        missing_encoders = [role for role in spec.encoders if role not in encoders]
        if missing_encoders:
            problem = f"no {'/'.join(missing_encoders)} encoder is configured"
            if name in ("text_to_image", "image_to_text"):
                problem += " (cross-modal retrievers need a CLIP encoder)"
        elif spec.field_role is not None and spec.field_role not in fields:
            problem = f"the index has no {spec.field_role} vector field"
        if problem is not None:
            if given.get(name, 0.0) > 0:
                raise ValidationError(f"retriever {name} cannot run: {problem}", field="weights")
            continue
        applicable += 1
        if weight > 0:
            field_name = fields[spec.field_role] if spec.field_role is not None else None
            chosen.append(Retriever(name, weight, field_name))
    if not chosen:
        if applicable:
            raise ValidationError(
                "all weights of the retrievers that can answer this query are zero; give one a weight > 0",
                field="weights",
            )
        raise ValidationError(
            "no retriever can answer this query with this index and these encoders", field="image"
        )
    return chosen


def retriever_request(
    retriever: Retriever,
    *,
    text: str | None,
    vector: Sequence[float] | None,
    window: int,
    filters: Sequence[Mapping[str, Any]],
) -> SearchRequest:
    """One retriever's top ``window`` hits under ``filters`` (kNN: pre-filtered, ``k = window``).

    Hits carry the display fields from doc values, not ``_source`` (:func:`hybrid_search.search.bodies.docvalue_options`).
    """
    if retriever.field is None:
        if text is None:
            raise ValidationError("bm25 needs query text", field="text")
        return bm25_request(text, size=window, filters=filters, track_total_hits=False, docvalues=True)
    if vector is None:
        raise ValidationError(f"{retriever.name} needs a query vector", field="weights")
    return knn_request(
        retriever.field, vector, size=window, filters=filters, track_total_hits=False, docvalues=True
    )


def knn_clauses(
    retrievers: Sequence[Retriever], vectors: Mapping[str, Sequence[float]], *, k: int, boosted: bool
) -> tuple[KnnClause, ...]:
    """The kNN clauses of ``retrievers`` (BM25 skipped); ``boosted``: each clause's boost is its weight."""
    return tuple(
        knn_clause(r.field, vectors[r.name], k=k, boost=r.weight if boosted else 1.0)
        for r in retrievers
        if r.field is not None
    )


def facets_request(
    retrievers: Sequence[Retriever],
    *,
    text: str | None,
    vectors: Mapping[str, Sequence[float]],
    window: int,
    filters: Sequence[Mapping[str, Any]],
) -> SearchRequest:
    """Size 0: count and facet the filtered candidate set (BM25 matches or any kNN retriever's top ``window``)."""
    use_text = text if any(r.field is None for r in retrievers) else None
    return candidates_request(
        use_text,
        knn_clauses(retrievers, vectors, k=window, boosted=False),
        filters=filters,
        aggs=facet_aggs(),
    )


def native_search_request(
    retrievers: Sequence[Retriever],
    *,
    text: str | None,
    vectors: Mapping[str, Sequence[float]],
    window: int,
    page: int,
    size: int,
    filters: Sequence[Mapping[str, Any]],
    facets: bool,
) -> SearchRequest:
    """``native``: one request, score = the engine's sum of weight * BM25 and weight * kNN (``k = window``)."""
    bm25 = next((r for r in retrievers if r.field is None), None)
    return native_request(
        text if bm25 is not None else None,
        knn_clauses(retrievers, vectors, k=window, boosted=True),
        size=size,
        from_=(page - 1) * size,
        bm25_boost=bm25.weight if bm25 is not None else 1.0,
        filters=filters,
        aggs=facet_aggs() if facets else None,
        docvalues=True,
    )


__all__ = [
    "SPECS",
    "Retriever",
    "RetrieverSpec",
    "choose_retrievers",
    "facets_request",
    "knn_clauses",
    "native_search_request",
    "retriever_request",
]
