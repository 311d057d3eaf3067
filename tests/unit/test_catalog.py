"""Catalogue input: validation of each field, readers of every format, clear per-record errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_search.catalog import Product, RecordError, open_catalogue, validate_product
from hybrid_search.errors import ValidationError

pytestmark = pytest.mark.unit


def reasons(path: Path) -> list[tuple[str | None, str]]:
    return [(r.id, r.reason) for r in open_catalogue(path).records() if isinstance(r, RecordError)]


def test_a_full_record_becomes_the_index_document() -> None:
    product = validate_product(
        {
            "id": "MH01",
            "title": "<b>Chaz</b> Kangeroo &amp; Hoodie",
            "description": "<p>Warm.</p>\n\n<ul><li>Two-tone</li></ul>",
            "brand": "Luma",
            "category_path": "Men/Tops/Hoodies|Collections > Eco Friendly",
            "price": "52.5",
            "currency": "eur",
            "color": "Black|Gray",
            "sizes": ["S", "M"],
            "material": "Wool\nFleece",
            "attributes": {"climate": "Cool|Windy", "eco": True, "weight": 1.5},
            "image": "a.jpg|https://cdn.example.com/b.jpg",
        }
    )
    assert product.document() == {
        "id": "MH01",
        "title": "Chaz Kangeroo & Hoodie",
        "description": "Warm. Two-tone",
        "brand": "Luma",
        "category_path": "Men > Tops > Hoodies; Collections > Eco Friendly",
        "categories": ["Men", "Tops", "Hoodies", "Collections", "Eco Friendly"],
        "colour": ["Black", "Gray"],
        "material": ["Wool", "Fleece"],
        "sizes": ["S", "M"],
        "attributes": ["climate=Cool", "climate=Windy", "eco=true", "weight=1.5"],
        "attributes_text": "climate: Cool, Windy; eco: true; weight: 1.5",
        "price": 52.5,
        "currency": "EUR",
        "image_url": "a.jpg",
        "image_urls": ["a.jpg", "https://cdn.example.com/b.jpg"],
    }
    assert validate_product(product.to_input()) == product


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"title": "x"}, "id: Field required"),
        ({"id": "", "title": "x"}, "id: id is empty"),
        ({"id": ["a"], "title": "x"}, "id: id must be a string, got list"),
        ({"id": "a\x00b", "title": "x"}, "id: id contains control characters"),
        ({"id": "a"}, "title: Field required"),
        ({"id": "a", "title": "  <br> "}, "title: title is empty"),
        ({"id": "a", "title": 42}, "title: title must be a string, got int"),
        ({"id": "a", "title": "t" * 10_000_000}, "title: title is 10000000 characters (limit 1000)"),
        ({"id": "a", "title": "t", "price": "abc"}, "price: price must be a number, got 'abc'"),
        ({"id": "a", "title": "t", "price": -1}, "price: price must be a finite number >= 0"),
        ({"id": "a", "title": "t", "price": "nan"}, "price: price must be a finite number >= 0"),
        ({"id": "a", "title": "t", "price": True}, "price: price must be a number, got a boolean"),
        ({"id": "a", "title": "t", "currency": "dollars"}, "currency: currency must be a 3-letter code"),
        ({"id": "a", "title": "t", "colour": {"r": 1}}, "colour must be a string or a list of strings"),
        ({"id": "a", "title": "t", "attributes": "{oops"}, "attributes is not a JSON object"),
        ({"id": "a", "title": "t", "attributes": [1, 2]}, "attributes must be an object"),
        (
            {"id": "a", "title": "t", "images": [f"{n}.jpg" for n in range(21)]},
            "images: 21 images (limit 20)",
        ),
        ({"id": "a", "title": "t", "sku_colour": "red"}, "unknown field(s) ['sku_colour']"),
        ("just a string", "a product must be an object, got str"),
    ],
)
def test_bad_records_name_the_problem(record: object, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_product(record)
    assert reason in str(info.value)


def test_control_characters_are_removed_from_text() -> None:
    product = validate_product({"id": "a", "title": "Red\x07 hoodie\u200b\r\n", "description": "a\x1bb"})
    assert (product.title, product.description) == ("Red hoodie", "a b")


def test_jsonl_reader_reports_each_bad_line_and_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [
        json.dumps({"id": "1", "title": "One"}).encode(),
        b"{broken",
        json.dumps({"id": "2", "title": "Caf\u00e9"}).encode("utf-8"),
        '{"id": "3", "title": "Caf\u00e9"}'.encode("latin-1"),  # mixed encodings: latin-1 in a UTF-8 file
        b"",
        json.dumps({"id": "1", "title": "One again"}).encode(),
        b"[1, 2]",
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    items = list(open_catalogue(path).records())
    assert [p.id for p in items if isinstance(p, Product)] == ["1", "2"]
    errors = [(e.source, e.id, e.reason) for e in items if isinstance(e, RecordError)]
    assert errors[0][:2] == ("c.jsonl:2", None) and errors[0][2].startswith("not valid JSON")
    assert errors[1] == ("c.jsonl:4", None, "not valid UTF-8 (byte 25)")
    assert errors[2] == ("c.jsonl:6", "1", "duplicate id '1' (first at c.jsonl:1)")
    assert errors[3] == ("c.jsonl:7", None, "a product must be an object, got list")


def test_csv_reader(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(
        b"id,title,price,colour,attributes\n"
        b'1,Red hoodie,12.5,Red|Black,"{""material"": ""Cotton""}"\n'
        b"2,,3,,\n"
        b"3,Blue cap,cheap,,\n"
        b"4,Extra,1,Red,{},surplus\n"
        b"5,Caf\xe9,1,,\n"
    )
    items = list(open_catalogue(path).records())
    products = [p for p in items if isinstance(p, Product)]
    assert [p.id for p in products] == ["1"]
    assert products[0].document()["attributes"] == ["material=Cotton"]
    assert reasons(path) == [
        ("2", "title: Field required"),
        ("3", "price: price must be a number, got 'cheap'"),
        ("4", "more fields than the header names"),
        ("5", "not valid UTF-8"),
    ]


def test_catalogue_formats_are_recognised(tmp_path: Path) -> None:
    (tmp_path / "hd.csv").write_text("product_uid,title\n100001,Simpson Strong-Tie 12-Gauge Angle\n")
    hd = open_catalogue(tmp_path / "hd.csv")
    assert hd.format == "homedepot"
    assert [p.id for p in hd.records() if isinstance(p, Product)] == ["100001"]
    (tmp_path / "x.csv").write_text("sku,name\n1,a\n")
    with pytest.raises(ValidationError, match="needs id and title columns"):
        open_catalogue(tmp_path / "x.csv")
    with pytest.raises(ValidationError, match="does not exist"):
        open_catalogue(tmp_path / "missing.jsonl")
    with pytest.raises(ValidationError, match=r"without products_flat\.csv"):
        open_catalogue(tmp_path)
    (tmp_path / "c.xml").write_text("<products/>")
    with pytest.raises(ValidationError, match="unknown catalogue format"):
        open_catalogue(tmp_path / "c.xml")
