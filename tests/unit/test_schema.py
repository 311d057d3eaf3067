"""Field roles: the default schema is the own index's names, and another schema changes only the names sent.

The shop index of issue 16 (``sku``, ``name``, ``body``, ``colours``, ``price_usd``, ``picture``, ``modified``)
stands for an index the layer did not create.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hybrid_search
from hybrid_search.catalog import validate_product
from hybrid_search.catalog.records import product_text
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, ROLES, FieldSchema
from hybrid_search.engine.dialects import opensearch_search_body
from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.search import Filters
from hybrid_search.search.bodies import (
    Retriever,
    bm25_request,
    display_fields,
    display_from_docvalues,
    display_from_source,
    docvalue_fields,
    facet_aggs,
    filter_clauses,
    retriever_request,
)
from hybrid_search.search.response import parse_facets
from hybrid_search.voice.hotwords import vocabulary_request

pytestmark = pytest.mark.unit

SHOP = FieldSchema(
    id="sku",
    title="name",
    description="body",
    colour="colours",
    price="price_usd",
    image="picture",
    updated_at="modified",
)


def mapped_fields() -> set[str]:
    """Every field and subfield of the own index's mapping, dotted."""
    path = Path(hybrid_search.__file__).parent / "mappings" / "products.json"
    properties = json.loads(path.read_text())["mappings"]["properties"]
    names = set()
    for name, spec in properties.items():
        names.add(name)
        names.update(f"{name}.{sub}" for sub in spec.get("fields", {}))
    return names


def test_the_default_schema_is_the_own_index() -> None:
    schema = DEFAULT_SCHEMA
    assert {role: schema.value_field(role) for role in ROLES} == {
        "id": "id", "title": "title", "description": "description", "brand": "brand", "category": "category_path",
        "colour": "colour", "size": "sizes", "material": "material", "price": "price", "currency": "currency",
        "image": "image_url", "in_stock": None, "updated_at": "updated_at",
    }  # fmt: skip
    keywords = {
        role: schema.keyword_field(role) for role in ("title", "brand", "category", "colour", "material")
    }
    assert keywords == {
        "title": "title.raw",
        "brand": "brand.keyword",
        "category": "categories",
        "colour": "colour.keyword",
        "material": "material.keyword",
    }
    assert schema.keyword_field("size") == "sizes" and schema.keyword_field("price") == "price"
    named = {f for role in ROLES if (f := schema.value_field(role)) is not None}
    named |= {f for role in ROLES if (f := schema.keyword_field(role)) is not None}
    named |= {f.partition("^")[0] for f in schema.match_fields()}
    named.add(str(schema.attributes))
    assert named <= mapped_fields()  # every field the schema names is in mappings/products.json


def test_a_shop_schema_names_only_its_own_fields() -> None:
    assert SHOP.match_fields() == ("name^3", "colours^1.5", "body")  # the text roles it has, default boosts
    assert SHOP.keyword_field("colour") == "colours"  # a field not listed in keywords is its own keyword
    assert SHOP.value_field("brand") is None and SHOP.keyword_field("brand") is None
    assert SHOP.attributes is None
    assert FieldSchema(title="t", match=("t^2", "t.ngram")).match_fields() == ("t^2", "t.ngram")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"title": ""}, "field role title"),
        ({"title": "t", "brand": 3}, "field role brand"),
        ({"title": "t", "extra_facets": ("colour",)}, "extra facet 'colour'"),
        ({"title": "t", "keywords": {"t": " "}}, "keyword field of 't'"),
        ({"title": "t", "match": ("t", "")}, "match fields"),
        ({"title": None}, "title is required"),
        ({"title": "t", "attributes": ""}, "^attributes must name a field"),
    ],
)
def test_a_schema_that_cannot_work_is_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        FieldSchema(**changes)


def test_schemas_are_frozen_and_unknown_roles_are_refused() -> None:
    with pytest.raises(AttributeError):
        SHOP.title = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        DEFAULT_SCHEMA.keywords["title"] = "title"  # type: ignore[index]
    with pytest.raises(KeyError, match="stock"):
        SHOP.value_field("stock")


def test_a_shop_schema_changes_the_request_bodies() -> None:
    clauses = filter_clauses(
        keywords={"colour": ["red", "blue"]}, price_min=10.0, price_max=50.0, schema=SHOP
    )
    assert clauses == [
        {"terms": {"colours": ["red", "blue"]}},
        {"range": {"price_usd": {"gte": 10.0, "lte": 50.0}}},
    ]
    body = opensearch_search_body(bm25_request("red coat", size=10, filters=clauses, schema=SHOP))
    assert body["query"]["bool"]["should"][0]["multi_match"]["fields"] == ["name^3", "colours^1.5", "body"]
    assert body["_source"] == ["sku", "name", "colours", "price_usd", "picture"]  # the display fields it has
    request = retriever_request(
        Retriever("bm25", 1.0, None), text="coat", vector=None, window=5, filters=(), schema=SHOP
    )
    assert request.extra["docvalue_fields"] == ["sku", "name", "colours", "price_usd", "picture"]
    assert facet_aggs(schema=SHOP) == {
        "colour": {"terms": {"field": "colours", "size": 20}},
        "price": {"range": {"field": "price_usd", "ranges": facet_aggs()["price"]["range"]["ranges"]}},
    }


def test_a_filter_on_a_field_the_index_lacks_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Filters(material="wool").clauses(SHOP)
    assert info.value.field == "filters.material"
    with pytest.raises(ValidationError) as info:
        Filters(attributes={"climate": "Cool"}).clauses(SHOP)
    assert info.value.field == "filters.attributes"
    without_price = FieldSchema(title="name")
    with pytest.raises(ValidationError, match="no price field") as info:
        filter_clauses(price_max=5.0, schema=without_price)
    assert info.value.field == "filters.price_max"
    assert "price" not in facet_aggs(schema=without_price)
    assert parse_facets({}, without_price) == {}


def test_a_shop_schema_maps_its_fields_back_to_the_role_keys() -> None:
    hit = {
        "_id": "internal-7",
        "fields": {
            "sku": ["MH01"],
            "name": ["Chaz Hoodie"],
            "colours": ["black", "grey"],
            "price_usd": [52.0],
        },
    }
    doc_id, fields = display_from_docvalues(hit, SHOP)
    assert doc_id == "MH01"
    assert fields == {
        "id": "MH01", "title": "Chaz Hoodie", "brand": None, "categories": [], "colour": ["black", "grey"],
        "price": 52.0, "currency": None, "image_url": None,
    }  # fmt: skip
    assert (
        display_from_docvalues({"_id": "x", "fields": {}}, FieldSchema(title="name"))[0] == "x"
    )  # no id field
    source = {
        "sku": "MH01",
        "name": "Chaz Hoodie",
        "colours": ["Black"],
        "price_usd": 52.0,
        "picture": "a.jpg",
    }
    assert display_from_source("MH01", source, SHOP) == {
        "id": "MH01", "title": "Chaz Hoodie", "brand": None, "category_path": None, "colour": ["Black"],
        "price": 52.0, "currency": None, "image_url": "a.jpg",
    }  # fmt: skip
    facets = parse_facets({"colour": {"buckets": [{"key": "black", "doc_count": 3}]}}, SHOP)
    assert facets == {"colour": [{"value": "black", "count": 3}], "price": []}


def test_the_default_schema_sends_what_the_own_index_always_got() -> None:
    assert display_fields() == [
        "id",
        "title",
        "brand",
        "category_path",
        "colour",
        "price",
        "currency",
        "image_url",
    ]
    assert docvalue_fields() == [
        "id", "title.raw", "brand.keyword", "categories", "colour.keyword", "price", "currency", "image_url",
    ]  # fmt: skip
    assert list(facet_aggs()) == ["category", "brand", "colour", "price"]


def test_extra_facets_are_aggregated_under_their_field_name() -> None:
    schema = FieldSchema(title="name", extra_facets=("season",))
    assert facet_aggs(schema=schema) == {"season": {"terms": {"field": "season", "size": 20}}}
    parsed = parse_facets({"season": {"buckets": [{"key": "winter", "doc_count": 2}]}}, schema)
    assert parsed == {"season": [{"value": "winter", "count": 2}]}


def test_hotwords_read_the_schemas_keyword_fields() -> None:
    assert vocabulary_request(schema=SHOP).aggs == {
        "colours": {"terms": {"field": "colours", "size": 40}},
        "titles": {"terms": {"field": "name", "size": 2000}},
    }


def test_product_text_and_the_document_follow_the_schema() -> None:
    product = validate_product(
        {"id": "MH01", "title": "Chaz Hoodie", "description": "Warm", "colour": "Black", "price": 52}
    )
    shop_doc = {
        "sku": "MH01",
        "name": "Chaz Hoodie",
        "body": "Warm",
        "colours": ["Black"],
        "brand": "ignored",
    }
    assert product_text(shop_doc, SHOP) == product_text(product.document())
    document = product.document(SHOP)
    assert {k: document[k] for k in ("sku", "name", "body", "colours", "price_usd", "picture")} == {
        "sku": "MH01", "name": "Chaz Hoodie", "body": "Warm", "colours": ["Black"], "price_usd": 52.0,
        "picture": None,
    }  # fmt: skip
    assert not {"id", "title", "categories", "colour", "price"} & set(document)


def test_equal_schemas_are_one_cache_key() -> None:
    again = FieldSchema(
        id="sku", title="name", description="body", colour="colours", price="price_usd", image="picture",
        updated_at="modified",
    )  # fmt: skip
    assert again == SHOP and hash(again) == hash(SHOP)
    assert len({DEFAULT_SCHEMA, SHOP, again}) == 2
