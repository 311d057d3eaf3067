"""The index a query searches: its field roles, vector fields, lexical query and kNN mode, resolved once per query.

    profile = service.profile("shop-products")   # the attachment in its _meta, or the layer's own index
    profile.schema.value_field("title")           # "name"
    lexical_clause(engine, profile, "red coat")   # the shop's own BM25 clause for this text (None: own index)

The layer's own index is searched through :data:`~hybrid_search.catalog.schema.DEFAULT_SCHEMA` (or the schema
the service was given), the vector fields of ``mappings/``, its ``multi_match`` over the schema's text fields and
HNSW kNN; its hits read their display fields from doc values.

An *attached* index (a shop's own, ``hybrid-search attach``) records its attachment in its ``_meta``
(:class:`~hybrid_search.catalog.attachment.AttachConfig`), which every process reads:

- its field roles are the attachment's schema (filters, facets and display read the shop's names);
- its vector fields are the layer's ``hs_`` fields (:data:`~hybrid_search.catalog.attachment.VECTOR_FIELDS`),
  those that its ``_meta`` vector records list;
- its BM25 retriever is the shop's own lexical query (so with every kNN weight at 0 the ranking is the shop's);
- kNN is exact (a ``script_score`` over the pre-filtered documents) when the attachment says ``knn = "exact"``
  (an OpenSearch index without ``index.knn``), else approximate;
- its hits are identified by ``_id`` while ranked and shown under the shop's id (the id role's value in
  ``_source``, else ``_id``), their display fields read from ``_source`` in the retrieval response itself (doc
  values do not serve a shop's text fields), and the image value located by the attachment's image source.

Pure data, and one function that may talk to the engine (:func:`lexical_clause`, for a stored template).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hybrid_search.catalog.attachment import VECTOR_FIELDS, AttachConfig, LexicalSpec
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine import SearchEngine
from hybrid_search.errors import ConfigurationError


@dataclass(frozen=True)
class IndexProfile:
    """How one index is searched (module docstring).

    ``role_fields``: vector role -> the field that holds it (:func:`~hybrid_search.search.plan.index_fields`
    keeps those the index records); ``lexical``: the shop's BM25 query, None for the schema's ``multi_match``;
    ``exact_knn``: kNN scores every pre-filtered document exactly instead of searching an HNSW graph;
    ``attachment``: the attached index's configuration, None for the layer's own index.
    """

    schema: FieldSchema = DEFAULT_SCHEMA
    role_fields: Mapping[str, str] = field(default_factory=dict)
    lexical: LexicalSpec | None = None
    exact_knn: bool = False
    attachment: AttachConfig | None = None


def own_profile(schema: FieldSchema, role_fields: Mapping[str, str]) -> IndexProfile:
    """The layer's own index: ``schema``'s names, the mappings' vector fields, HNSW."""
    return IndexProfile(schema=schema, role_fields=dict(role_fields))


def attached_profile(config: AttachConfig) -> IndexProfile:
    """An attached index: the attachment's schema and lexical query, the ``hs_`` vector fields, its kNN mode."""
    return IndexProfile(
        schema=config.schema,
        role_fields=dict(VECTOR_FIELDS),
        lexical=config.lexical,
        exact_knn=config.knn == "exact",
        attachment=config,
    )


def lexical_clause(engine: SearchEngine, profile: IndexProfile, text: str | None) -> dict[str, Any] | None:
    """The BM25 clause of ``text`` on the profile's index; None where the schema's ``multi_match`` serves (the
    own index, or no text).

    The shop's ``fields`` and ``query`` forms are built here (the text is a JSON value, never query syntax); a
    stored ``template`` is rendered by the engine with the param ``query``: one more round trip per query.
    """
    spec = profile.lexical
    if spec is None or text is None:
        return None
    if spec.template is None:
        return spec.body(text)
    rendered = engine.render_template(spec.template, {"query": text})
    clause = rendered.get("query") if isinstance(rendered, Mapping) else None
    if not isinstance(clause, Mapping) or not clause:
        raise ConfigurationError(
            f"the shop's search template {spec.template!r} rendered no query clause (got {str(rendered)[:200]})"
        )
    return dict(clause)


__all__ = ["IndexProfile", "attached_profile", "lexical_clause", "own_profile"]
