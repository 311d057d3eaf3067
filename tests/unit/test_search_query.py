"""SearchQuery and Filters: every refusal names its field; filters become pinned engine clauses."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hybrid_search.errors import ValidationError
from hybrid_search.search import Filters, SearchQuery
from hybrid_search.search.console import parse_weights
from hybrid_search.search.query import check_page

pytestmark = pytest.mark.unit


def refused(field: str, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        SearchQuery(**kwargs)
    assert info.value.field == field, str(info.value)
    return info.value


def test_text_is_trimmed_and_whitespace_collapsed() -> None:
    assert SearchQuery(text="  red \n long\tcoat ").text == "red long coat"


@pytest.mark.parametrize("text", [None, "", "   \n\t "])
def test_empty_query_without_image_is_refused(text: str | None) -> None:
    error = refused("text", text=text)
    assert "empty query" in str(error)


def test_whitespace_text_with_an_image_is_an_image_query() -> None:
    query = SearchQuery(text="  ", image=b"\xff\xd8\xff")
    assert query.text is None


def test_text_length_and_type() -> None:
    assert "1001 characters" in str(refused("text", text="a" * 1001))
    refused("text", text=42)


def test_image_must_be_bytes_or_a_pil_image() -> None:
    assert "empty" in str(refused("image", image=b""))
    refused("image", image="/some/path.jpg")
    from PIL import Image

    assert SearchQuery(image=Image.new("RGB", (4, 4))).image is not None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"page": 0}, "page"),
        ({"page": 1.0}, "page"),
        ({"page": True}, "page"),
        ({"size": 0}, "size"),
        ({"size": 101}, "size"),
        ({"fusion": "sum"}, "fusion"),
        ({"normaliser": "softmax"}, "normaliser"),
        ({"rank_constant": 0}, "rank_constant"),
        ({"rank_constant": math.inf}, "rank_constant"),
        ({"rank_window": 0}, "rank_window"),
        ({"rank_window": 10_001}, "rank_window"),
        ({"page": 3, "size": 10, "rank_window": 25}, "page"),
    ],
)
def test_paging_and_fusion_parameters_are_checked(kwargs: dict[str, Any], field: str) -> None:
    refused(field, text="coat", **kwargs)


def test_page_within_the_window_is_accepted() -> None:
    query = SearchQuery(text="coat", page=3, size=10, rank_window=30, fusion="rrf", rank_constant=2)
    assert (query.page, query.rank_window, query.rank_constant) == (3, 30, 2)


def test_page_beyond_the_window_names_the_window() -> None:
    with pytest.raises(ValidationError) as info:
        check_page(11, 10, 100)
    assert info.value.field == "page"
    assert "rank window of 100" in str(info.value) and "at least 110" in str(info.value)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"bm25": -0.1}, "negative"),
        ({"bm25": math.nan}, "finite"),
        ({"bm25": True}, "finite number"),
        ({"bm25": "1"}, "finite number"),
        ({"dense": 1.0}, "unknown retriever 'dense'"),
        (["bm25"], "must map"),
        (
            dict.fromkeys(
                (
                    "bm25",
                    "text_knn",
                    "image_knn",
                    "colour_knn",
                    "fused_knn",
                    "text_to_image",
                    "image_to_text",
                ),
                0.0,
            ),
            "all weights are zero",
        ),
    ],
)
def test_bad_weights_are_refused(weights: Any, message: str) -> None:
    assert message in str(refused("weights", text="coat", weights=weights))


def test_weights_become_floats() -> None:
    assert SearchQuery(text="coat", weights={"bm25": 1, "text_knn": 0}).weights == {
        "bm25": 1.0,
        "text_knn": 0.0,
    }


def test_from_dict_refuses_unknown_fields_and_builds_filters() -> None:
    with pytest.raises(ValidationError) as info:
        SearchQuery.from_dict({"text": "coat", "sort": "price"})
    assert info.value.field == "sort"
    query = SearchQuery.from_dict({"text": "coat", "filters": {"colour": "Red", "price_max": 50}})
    assert query.filters == Filters(colour="Red", price_max=50)


# ---- filters ------------------------------------------------------------------------------------------


def test_filters_become_pinned_clauses() -> None:
    filters = Filters(
        category="Jackets",
        brand=["Luma", "Sprite"],
        colour="Red",
        material="Wool",
        size="M",
        price_min=10,
        price_max="99.5",  # type: ignore[arg-type]
        attributes={"climate": ["Cool", "Windy"], "eco_collection": "Yes"},
    )
    assert filters.clauses() == [
        {"term": {"categories": "Jackets"}},
        {"terms": {"brand.keyword": ["Luma", "Sprite"]}},
        {"term": {"colour.keyword": "Red"}},
        {"term": {"material.keyword": "Wool"}},
        {"term": {"sizes": "M"}},
        {"terms": {"attributes": ["climate=Cool", "climate=Windy"]}},
        {"term": {"attributes": "eco_collection=Yes"}},
        {"range": {"price": {"gte": 10.0, "lte": 99.5}}},
    ]
    assert Filters().clauses() == []
    assert Filters(price_max=0).clauses() == [{"range": {"price": {"lte": 0.0}}}]


def test_filter_values_are_deduplicated_and_trimmed() -> None:
    assert Filters(colour=[" red", "red ", "Blue"]).colour == ("red", "Blue")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category": ""}, "filters.category"),
        ({"category": []}, "filters.category"),
        ({"brand": [1]}, "filters.brand"),
        ({"colour": "x" * 257}, "filters.colour"),
        ({"size": ["S"] * 51}, "filters.size"),
        ({"price_min": -1}, "filters.price_min"),
        ({"price_max": math.inf}, "filters.price_max"),
        ({"price_max": "cheap"}, "filters.price_max"),
        ({"price_min": 50, "price_max": 10}, "filters.price_min"),
        ({"attributes": {"a=b": "c"}}, "filters.attributes.a=b"),
        ({"attributes": {"climate": ""}}, "filters.attributes.climate"),
        ({"attributes": ["climate"]}, "filters.attributes"),
    ],
)
def test_bad_filters_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Filters(**kwargs)
    assert info.value.field == field, str(info.value)


def test_filters_from_dict_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError) as info:
        Filters.from_dict({"color": "red"})
    assert info.value.field == "filters.color"
    assert "unknown filter 'color'" in str(info.value)


def test_filters_from_cli_pairs() -> None:
    filters = Filters.from_pairs(
        ["colour=Red", "colour=Blue", "attr.climate=Cool", "price_max=80", "category=Women Sale"]
    )
    assert filters.as_dict() == {
        "category": ["Women Sale"],
        "colour": ["Red", "Blue"],
        "price_max": 80.0,
        "attributes": {"climate": ["Cool"]},
    }


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        (["colour"], "filters"),
        (["=red"], "filters"),
        (["climate=Cool"], "filters.climate"),
        (["attr.=x"], "filters.attr."),
        (["price_min=1", "price_min=2"], "filters.price_min"),
        (["price_min=abc"], "filters.price_min"),
    ],
)
def test_bad_cli_filter_pairs_are_refused(pairs: list[str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Filters.from_pairs(pairs)
    assert info.value.field == field, str(info.value)


def test_cli_weights() -> None:
    assert parse_weights(["bm25=0.7", "text_knn=0"]) == {"bm25": 0.7, "text_knn": 0.0}
    assert parse_weights([]) is None
    for bad in (["bm25"], ["bm25=x"], ["=1"]):
        with pytest.raises(ValidationError):
            parse_weights(bad)
