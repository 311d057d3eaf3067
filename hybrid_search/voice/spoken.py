"""Spoken forms to the catalogue's written forms: what a voice query says, as a product title would write it.

    written_form("three slash four plywood four by eight")   # "3/4 plywood 4x8"
    written_form("two and a half inch screws")               # "2-1/2 in. screws"
    written_form("six foot ladder")                          # "6 ft. ladder"
    written_form("the blue one")                             # "the blue one" (no number context)

A recogniser writes what it hears: "one slash four dash twenty", "three quarter inch", "four by eight". Product
titles write ``1/4-20``, ``3/4 in.`` and ``4x8``, and BM25 only matches the written form (the standard tokenizer
splits ``3/4`` into ``3`` and ``4``; ``slash`` matches nothing). This is inverse text normalisation for product
search, a pure function over lowercase transcript words (:func:`hybrid_search.voice.recognisers.normalise_transcript`):

- number words become digits: ``twenty five`` -> ``25``, ``three hundred and ten`` -> ``310``,
  ``two point five`` -> ``2.5``; a run of single digits stays a run (``six six three`` -> ``6 6 3``, a model
  number read digit by digit); ``one`` becomes ``1`` only next to a number, a unit or a dimension word, so
  "the blue one" keeps it;
- dimensions join: ``N slash M`` -> ``N/M``, ``N dash M`` -> ``N-M``, ``N by M`` and ``N x M`` -> ``NxM``;
- fractions: ``a half``, ``three quarters``, ``five eighths``, ``one sixteenth`` -> ``1/2``, ``3/4``, ``5/8``,
  ``1/16``; ``two and a half`` -> ``2-1/2`` (how titles write mixed numbers); a bare ``half`` or ``quarter``
  before a unit is ``1/2`` or ``1/4`` (``half inch pipe`` -> ``1/2 in. pipe``);
- units after a number take the catalogue's abbreviation: inch -> ``in.``, foot/feet -> ``ft.``, gallon ->
  ``gal.``, pound -> ``lb.``, ounce -> ``oz.``, yard -> ``yd.``, and ``square``/``cubic`` feet -> ``sq. ft.`` /
  ``cu. ft.``.

``benchmarks/voice.py`` measures what it is worth (its ``api-spoken`` way searches the recogniser's own words).
"""

from __future__ import annotations

import re

ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
DENOMINATORS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "eighth": 8, "eighths": 8, "sixteenth": 16, "sixteenths": 16,
}  # fmt: skip
UNITS = {
    "inch": "in.", "inches": "in.", "foot": "ft.", "feet": "ft.", "gallon": "gal.", "gallons": "gal.",
    "pound": "lb.", "pounds": "lb.", "ounce": "oz.", "ounces": "oz.", "yard": "yd.", "yards": "yd.",
}  # fmt: skip
AREA = {"square": "sq.", "cubic": "cu."}  # before foot/feet/inch/yard
JOINERS = {"slash": "/", "dash": "-", "by": "x", "x": "x"}
# words after which "one" is a number ("one inch", "one by four", "one half", "one slash two")
_NUMERIC_NEXT = frozenset([*UNITS, *AREA, *JOINERS, *DENOMINATORS, "point", "and"])
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_DIMENSION = re.compile(r"^\d[\dx./-]*\d$|^\d$")  # 4, 4x8, 3/4, 1/4-20, 2.5
_GLUED_X = re.compile(r"^\d[\d./-]*x$")  # "5x": the recogniser glued the x to the first number
_ONES_DIGIT = {w for w, v in ONES.items() if v < 10}


def _is_number_word(word: str) -> bool:
    return word in ONES or word in TENS


def _numeric_context(words: list[str], start: int, end: int) -> bool:
    """Whether words[start:end] sit next to a number, a unit or a dimension word."""
    before = words[start - 1] if start > 0 else ""
    after = words[end] if end < len(words) else ""
    return bool(
        after in _NUMERIC_NEXT
        or _DIMENSION.match(after)
        or _is_number_word(after)
        or _DIMENSION.match(before)
        or before in JOINERS
    )


def _read_number(words: list[str], i: int) -> tuple[int, int] | None:
    """(value, next index) for the number spelled from words[i], or None.

    ``twenty five`` is one number; ``six six`` is two (a digit after a digit starts a new number), and so is
    ``twelve five``. ``hundred`` and ``thousand`` scale what came before them.
    """
    total, current, j, read = 0, 0, i, False
    last: str | None = None  # "ones", "tens", "teen", "scale"
    while j < len(words):
        word = words[j]
        if word in TENS and last in (None, "scale"):
            current += TENS[word]
            last = "tens"
        elif word in ONES and ONES[word] < 10 and last in (None, "tens", "scale"):
            current += ONES[word]
            last = "ones"
        elif word in ONES and ONES[word] >= 10 and last in (None, "scale"):
            current += ONES[word]
            last = "teen"
        elif word == "hundred" and read and last in ("ones", "teen") and current < 100:
            current *= 100
            last = "scale"
        elif word == "thousand" and read and total == 0:
            total = current * 1000
            current = 0
            last = "scale"
        elif word == "and" and last == "scale" and j + 1 < len(words) and _is_number_word(words[j + 1]):
            j += 1
            continue
        else:
            break
        read = True
        j += 1
    if not read:
        return None
    return total + current, j


def _numbers(words: list[str]) -> list[str]:
    """Number words -> digits (``two point five`` -> ``2.5``); ``one`` alone only in number context."""
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not _is_number_word(word):
            out.append(word)
            i += 1
            continue
        read = _read_number(words, i)
        if read is None:
            out.append(word)
            i += 1
            continue
        value, j = read
        if j - i == 1 and word == "one" and not _numeric_context(words, i, j):
            out.append(word)
            i += 1
            continue
        text = str(value)
        if (
            j + 1 < len(words)
            and words[j] == "point"
            and (words[j + 1] in _ONES_DIGIT or words[j + 1].isdigit())
        ):
            decimals: list[str] = []
            k = j + 1
            while k < len(words) and (words[k] in _ONES_DIGIT or (words[k].isdigit() and not decimals)):
                decimals.append(str(ONES[words[k]]) if words[k] in ONES else words[k])
                k += 1
            text, j = f"{text}.{''.join(decimals)}", k
        out.append(text)
        i = j
    return out


def written_form(text: str) -> str:
    """``text`` (lowercase words, as transcripts are normalised) with spoken numbers, dimensions and units written."""
    words = _numbers(text.split())
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        after = words[i + 1] if i + 1 < len(words) else None
        previous = out[-1] if out else ""
        # N slash M, N dash M, N by M, N x M
        if word in JOINERS and _DIMENSION.match(previous) and after is not None and _NUMBER.match(after):
            out[-1] = f"{previous}{JOINERS[word]}{after}"
            i += 2
            continue
        # "5x" + "3" -> "5x3"
        if _GLUED_X.match(previous) and _DIMENSION.match(word):
            out[-1] = previous + word
            i += 1
            continue
        # fractions: a half, three quarters, [two and] five eighths
        if word in DENOMINATORS:
            numerator: str | None = None
            if previous in ("a", "an") or (previous and _NUMBER.match(previous) and "." not in previous):
                numerator = "1" if previous in ("a", "an") else previous
                out.pop()
            elif after in UNITS or after in AREA:
                numerator = "1"  # "half inch", "quarter inch"
            if numerator is not None:
                fraction = f"{numerator}/{DENOMINATORS[word]}"
                if len(out) >= 2 and out[-1] == "and" and _NUMBER.match(out[-2]):
                    out.pop()
                    out[-1] = f"{out[-1]}-{fraction}"
                else:
                    out.append(fraction)
                i += 1
                continue
        # units after a number: 24 inch -> 24 in.; square feet -> sq. ft.
        if word in AREA and after in UNITS and _DIMENSION.match(previous):
            out.extend([AREA[word], UNITS[after]])
            i += 2
            continue
        if word in UNITS and _DIMENSION.match(previous):
            out.append(UNITS[word])
            i += 1
            continue
        out.append(word)
        i += 1
    return " ".join(out)


__all__ = ["written_form"]
