"""Stage 1, understand: the query as typed becomes a :class:`StructuredQuery` with nothing left unset.

A :class:`hybrid_search.search.SearchQuery` validates its own inputs when it is built; what it leaves unset
(fusion method, normaliser, rank constant, rank window, the weights of the retrievers it does not name) is
resolved here, once, from the index's tuned configuration (``hybrid-search tune``) and else the settings, so
every later stage reads one value and never asks where it came from. The rank window is known here, so a page
beyond it is refused before anything is encoded or sent.

Today this stage only resolves and checks; it is where the query's reading (spelling corrections, attributes
named in the text) belongs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_search.catalog.attachment import AttachConfig
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.search.query import ImageInput, SearchQuery, check_page
from hybrid_search.settings import Settings


@dataclass(frozen=True)
class StructuredQuery:
    """What to search for and how to rank it, every parameter resolved.

    ``filters``: the filter clauses every retriever applies; ``weights``: the query's own weights (None: it
    set none); ``default_weights``: each retriever's weight where the query sets none (the settings', then the
    index's tuned weights); ``photo_kind_weight`` / ``photo_kind_neighbours``: the kind term of photo fusion;
    ``schema``: the index's field names, which every later stage's requests and hits read; ``lexical``: the
    index's own BM25 clause for this text (an attached shop's query; None: the schema's ``multi_match``);
    ``attached``: the attachment of a shop's index (hits read from ``_source``, shown under the shop's ids),
    None for the layer's own (:mod:`hybrid_search.search.profile`).
    """

    text: str | None
    image: ImageInput | None
    filters: tuple[dict[str, Any], ...]
    page: int
    size: int
    explain: bool
    facets: bool
    weights: Mapping[str, float] | None
    default_weights: Mapping[str, float]
    method: str
    normaliser: str
    rank_constant: float
    window: int
    photo_kind_weight: float
    photo_kind_neighbours: int
    schema: FieldSchema = DEFAULT_SCHEMA
    lexical: Mapping[str, Any] | None = None
    attached: AttachConfig | None = None


def default_weights(settings: Settings) -> dict[str, float]:
    """The settings' weight of each retriever."""
    return {
        "bm25": settings.fusion_bm25_weight,
        "text_knn": settings.fusion_text_knn_weight,
        "image_knn": settings.fusion_image_knn_weight,
        "colour_knn": settings.fusion_colour_knn_weight,
        "fused_knn": settings.fusion_fused_knn_weight,
        "text_to_image": settings.fusion_cross_modal_weight,
        "image_to_text": settings.fusion_cross_modal_weight,
    }


def understand(
    query: SearchQuery,
    settings: Settings,
    *,
    tuned: Mapping[str, Any],
    schema: FieldSchema = DEFAULT_SCHEMA,
    lexical: Mapping[str, Any] | None = None,
    attached: AttachConfig | None = None,
) -> StructuredQuery:
    """``query`` with each parameter it leaves unset taken from ``tuned``, else from ``settings``.

    ``tuned``: the index's checked tuned configuration (:meth:`hybrid_search.search.SearchService.tuned`,
    ``{}`` for none); its weights replace the settings' default weights of the retrievers they name.
    ``schema``: the index's field roles; the filters become clauses on its fields. ``lexical`` and
    ``attached``: what the index's profile adds (:class:`StructuredQuery`).
    Raises :class:`hybrid_search.errors.ValidationError` (``page``) for a page beyond the rank window.
    """
    method = query.fusion or tuned.get("fusion") or settings.fusion_method
    normaliser = query.normaliser or tuned.get("normaliser") or settings.fusion_normaliser
    if query.rank_constant is not None:
        rank_constant = query.rank_constant
    else:
        rank_constant = tuned.get("rank_constant", settings.fusion_rank_constant)
    window = query.rank_window or tuned.get("rank_window") or settings.fusion_rank_window
    check_page(query.page, query.size, window)
    return StructuredQuery(
        text=query.text,
        image=query.image,
        filters=tuple(query.filters.clauses(schema)),
        page=query.page,
        size=query.size,
        explain=query.explain,
        facets=query.facets,
        weights=query.weights,
        default_weights={**default_weights(settings), **tuned.get("weights", {})},
        method=method,
        normaliser=normaliser,
        rank_constant=rank_constant,
        window=window,
        photo_kind_weight=settings.photo_kind_weight,
        photo_kind_neighbours=settings.photo_kind_neighbours,
        schema=schema,
        lexical=lexical,
        attached=attached,
    )


__all__ = ["StructuredQuery", "default_weights", "understand"]
