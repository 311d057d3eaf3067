"""Spoken forms to written forms (inverse text normalisation for product search): pure, no model."""

from __future__ import annotations

import pytest

from hybrid_search.voice.spoken import written_form

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        # numbers
        ("twenty five foot hose", "25 ft. hose"),
        ("one hundred and twenty volt", "120 volt"),
        ("nine hundred forty two thousand one hundred ninety six", "942196"),
        ("three thousand four hundred five gal", "3405 gal"),
        ("two point five gallon bucket", "2.5 gal. bucket"),
        ("ten large copper wire", "10 large copper wire"),
        # a model number read digit by digit stays digit by digit; "twenty twelve" is two numbers
        ("white drop ceiling six six three", "white drop ceiling 6 6 3"),
        ("twenty twelve", "20 12"),
        # dimensions
        ("1 slash 4 dash 20 jam nuts", "1/4-20 jam nuts"),
        ("three slash four plywood four by eight", "3/4 plywood 4x8"),
        ("4 x 8 sheet", "4x8 sheet"),
        ("12x 20 shade", "12x20 shade"),
        ("5x3 slash 8", "5x3/8"),
        ("one by four board", "1x4 board"),
        ("cabinet locks one slash two", "cabinet locks 1/2"),
        # fractions and mixed numbers, as titles write them
        ("three quarter inch plywood", "3/4 in. plywood"),
        ("a half inch pipe", "1/2 in. pipe"),
        ("half inch copper pipe", "1/2 in. copper pipe"),
        ("five eighths plywood", "5/8 plywood"),
        ("two and a half inch screws", "2-1/2 in. screws"),
        ("one and a half inch screws", "1-1/2 in. screws"),
        # units only after a number
        ("six foot ladder", "6 ft. ladder"),
        ("12 square feet of tile", "12 sq. ft. of tile"),
        ("two cubic foot bag", "2 cu. ft. bag"),
        ("one inch pipe", "1 in. pipe"),
        ("square foot tile", "square foot tile"),
        ("inch worm", "inch worm"),
    ],
)
def test_spoken_numbers_dimensions_and_units_are_written_as_titles_write_them(
    spoken: str, written: str
) -> None:
    assert written_form(spoken) == written


@pytest.mark.parametrize(
    "text",
    ["the blue one", "all in one", "one next door", "red hoodie", "", "quarter round molding", "half moon"],
)
def test_words_that_are_not_numbers_are_left_alone(text: str) -> None:
    assert written_form(text) == text


def test_written_form_is_idempotent() -> None:
    for spoken in ("three slash four plywood four by eight", "two and a half inch screws", "6 ft. ladder"):
        once = written_form(spoken)
        assert written_form(once) == once
