"""Stage 2, plan: which retrievers answer a structured query, with which weights, and how it will be ranked.

:func:`plan` is pure: from the :class:`~hybrid_search.search.understand.StructuredQuery`, the configured encoder
roles and the index's vector records it chooses the retrievers (:func:`choose_retrievers`), the encoder roles
:mod:`.encode` must run, and the :class:`~hybrid_search.ranking.rankers.RankingConfig` that picks the query's
ranker. The requests themselves are data built from the plan and the query vectors by :mod:`.bodies`.

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

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hybrid_search.encoders.roles import PHOTO_ROLES
from hybrid_search.errors import ValidationError
from hybrid_search.ranking.rankers import NATIVE, RankingConfig
from hybrid_search.search.bodies import Retriever
from hybrid_search.search.query import RETRIEVERS
from hybrid_search.search.understand import StructuredQuery


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


@dataclass(frozen=True)
class Plan:
    """What runs for one query: its retrievers, the encoder roles they embed with, how the result is ranked.

    ``engine_ranks``: ``native`` fusion, where one request is scored, ranked and paged by the engine instead
    of each retriever's list being fetched and fused here.
    """

    query: StructuredQuery
    retrievers: tuple[Retriever, ...]
    roles: tuple[str, ...]
    ranking: RankingConfig
    engine_ranks: bool


def index_fields(records: Mapping[str, Any], role_fields: Mapping[str, str]) -> dict[str, str]:
    """Vector role -> field name, for the vector fields the index has (``records``: its vector records).

    ``role_fields``: vector role -> field name in the mappings. An index with every photo of a product
    (``photos.image_vector``, ``photos.colour_vector``) answers the image and colour retrievers from those: a
    product then scores its best photo.
    """
    fields = {role: name for role, name in role_fields.items() if name in records}
    for photo_role, role in PHOTO_ROLES.items():
        if photo_role in fields:
            fields[role] = fields[photo_role]
    return fields


def plan(
    query: StructuredQuery,
    *,
    encoders: Collection[str],
    records: Mapping[str, Any],
    role_fields: Mapping[str, str],
    exact: bool = False,
) -> Plan:
    """The plan of ``query`` on an index with these vector ``records`` and these configured encoder roles.

    ``exact``: the index's vectors are searched exactly (an attached index without HNSW), each field with the
    similarity its record names.
    """
    retrievers = choose_retrievers(
        has_text=query.text is not None,
        has_image=query.image is not None,
        defaults=query.default_weights,
        weights=query.weights,
        encoders=list(encoders),
        fields=index_fields(records, role_fields),
    )
    if exact:
        retrievers = [
            replace(r, exact=True, similarity=str(records[r.field].get("similarity") or "cosine"))
            if r.field is not None
            else r
            for r in retrievers
        ]
    ranking = RankingConfig(
        method=query.method,
        normaliser=query.normaliser,
        rank_constant=query.rank_constant,
        retrievers=tuple(r.name for r in retrievers),
        has_text=query.text is not None,
        own_weights=query.weights is not None,
        photo_kind_weight=query.photo_kind_weight,
        photo_kind_neighbours=query.photo_kind_neighbours,
    )
    return Plan(
        query=query,
        retrievers=tuple(retrievers),
        roles=tuple(sorted({role for r in retrievers for role in SPECS[r.name].encoders})),
        ranking=ranking,
        engine_ranks=query.method == NATIVE,
    )


__all__ = [
    "SPECS",
    "Plan",
    "Retriever",
    "RetrieverSpec",
    "choose_retrievers",
    "index_fields",
    "plan",
]
