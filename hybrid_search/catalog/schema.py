"""Field roles: which engine field of an index serves each role of a product, in one typed object.

    schema = FieldSchema(id="sku", title="name", description="body", colour="colours", price="price_usd")
    schema.value_field("price")      # "price_usd": the value shown and the range a price filter matches
    schema.keyword_field("colour")   # "colours": the exact values that filters, facets and doc values read
    schema.match_fields()            # ("name^3", "colours^1.5", "body"): the text BM25 matches

Query bodies, facets, response building, display, the index document and the voice hotwords read field names
from a :class:`FieldSchema` and never spell them. Each takes the schema as an argument and defaults to
:data:`DEFAULT_SCHEMA`, the names of the layer's own index (``mappings/products.json``); an index that a shop
already has brings its own schema with its own names.

A role (:data:`ROLES`) names one field, the one that holds its value in ``_source``. Where that field cannot
serve every purpose, the schema says which field does:

- ``keywords``: the keyword field that filters, facets and doc values read instead of a text field (the own
  index's ``title`` is text, and ``title.raw`` is its keyword; ``category_path`` is the readable path, and
  ``categories`` holds the category names one by one). A field not listed is its own keyword.
- ``match``: the fields BM25 matches the query text against, with boosts, subfields included (the own index
  adds its CJK subfields and ``attributes_text``). Left empty, BM25 matches the text roles the schema has,
  with :data:`MATCH_BOOSTS`.
- ``attributes``: the keyword field of ``name=value`` pairs that attribute filters match (the own index's
  free attributes); None when the index has none.

A role left None is a field the index does not have: what reads it leaves it out (an empty value on a hit, no
aggregation), and a filter on it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType

from hybrid_search.errors import ConfigurationError, ValidationError

ROLES: tuple[str, ...] = (
    "id",
    "title",
    "description",
    "brand",
    "category",
    "colour",
    "size",
    "material",
    "price",
    "currency",
    "image",
    "in_stock",
    "updated_at",
)
# the text roles BM25 matches, and their boosts, for a schema that does not list its own ``match`` fields
MATCH_BOOSTS: tuple[tuple[str, float], ...] = (
    ("title", 3.0),
    ("brand", 2.0),
    ("category", 1.5),
    ("colour", 1.5),
    ("material", 1.0),
    ("description", 1.0),
)


@dataclass(frozen=True, kw_only=True)
class FieldSchema:
    """The engine field of each role (None: the index has no such field), and how the fields are read.

    ``id``: None means the document's ``_id`` is the product id. ``image``: a path (relative to an image
    root) or an http(s) URL. ``extra_facets``: further keyword fields to facet on, each facet named by its
    field. ``keywords``, ``match`` and ``attributes``: the module docstring.
    """

    title: str
    id: str | None = None
    description: str | None = None
    brand: str | None = None
    category: str | None = None
    colour: str | None = None
    size: str | None = None
    material: str | None = None
    price: str | None = None
    currency: str | None = None
    image: str | None = None
    in_stock: str | None = None
    updated_at: str | None = None
    extra_facets: tuple[str, ...] = ()
    keywords: Mapping[str, str] = field(default_factory=dict)
    match: tuple[str, ...] = ()
    attributes: str | None = None

    def __post_init__(self) -> None:
        if self.title is None:
            raise ConfigurationError("field role title is required: hits show it and BM25 matches it")
        for f in fields(self):
            value = getattr(self, f.name)
            named = f.name in ROLES or f.name == "attributes"
            if named and value is not None and (not isinstance(value, str) or not value.strip()):
                what = "field role " if f.name in ROLES else ""
                raise ConfigurationError(f"{what}{f.name} must name a field, got {value!r}")
        for name in self.extra_facets:
            if not isinstance(name, str) or not name.strip() or name in ROLES:
                raise ConfigurationError(f"extra facet {name!r} must be a field name that is not a role name")
        for source, keyword in self.keywords.items():
            if not isinstance(keyword, str) or not keyword.strip():
                raise ConfigurationError(
                    f"the keyword field of {source!r} must name a field, got {keyword!r}"
                )
        if any(not isinstance(f, str) or not f.strip() for f in self.match):
            raise ConfigurationError(f"match fields must be field names, got {list(self.match)!r}")
        object.__setattr__(self, "keywords", MappingProxyType(dict(self.keywords)))
        object.__setattr__(self, "match", tuple(self.match))
        object.__setattr__(self, "extra_facets", tuple(self.extra_facets))

    def __hash__(self) -> int:  # hashable like any frozen dataclass, though ``keywords`` is a mapping
        values = (getattr(self, f.name) for f in fields(self))
        return hash(tuple(tuple(sorted(v.items())) if isinstance(v, Mapping) else v for v in values))

    def value_field(self, role: str) -> str | None:
        """The field that holds ``role``'s value in ``_source`` (what a hit shows), or None."""
        if role not in ROLES:
            raise KeyError(f"no field role {role!r}; roles: {', '.join(ROLES)}")
        value: str | None = getattr(self, role)
        return value

    def keyword_field(self, role: str) -> str | None:
        """The field whose exact values filters, facets and doc values read for ``role``, or None."""
        source = self.value_field(role)
        return None if source is None else self.keywords.get(source, source)

    def filter_field(self, role: str) -> str:
        """:meth:`keyword_field` for a filter on ``role``; a ``ValidationError`` when the index has none."""
        keyword = self.keyword_field(role)
        if keyword is None:
            raise ValidationError(f"this index has no {role} field to filter on", field=f"filters.{role}")
        return keyword

    def match_fields(self) -> tuple[str, ...]:
        """The fields BM25 matches, with boosts (``"title^3"``): ``match``, else the text roles present."""
        if self.match:
            return self.match
        out = []
        for role, boost in MATCH_BOOSTS:
            name = self.value_field(role)
            if name is not None:
                out.append(name if boost == 1.0 else f"{name}^{boost:g}")
        return tuple(out)


DEFAULT_SCHEMA = FieldSchema(
    id="id",
    title="title",
    description="description",
    brand="brand",
    category="category_path",
    colour="colour",
    size="sizes",
    material="material",
    price="price",
    currency="currency",
    image="image_url",
    updated_at="updated_at",
    # keyword doc values store what the index keeps: colour and material lowercased by the ``facet`` normalizer,
    # categories one by one, titles up to the ``title.raw`` limit (512 characters)
    keywords={
        "title": "title.raw",
        "brand": "brand.keyword",
        "category_path": "categories",
        "colour": "colour.keyword",
        "material": "material.keyword",
    },
    match=(
        "title^3",
        "title.cjk^2",
        "brand^2",
        "category_path^1.5",
        "colour^1.5",
        "material",
        "attributes_text",
        "description",
        "description.cjk",
    ),
    attributes="attributes",
)
"""The layer's own index (``mappings/products.json``); it has no ``in_stock`` field."""


__all__ = ["DEFAULT_SCHEMA", "MATCH_BOOSTS", "ROLES", "FieldSchema"]
