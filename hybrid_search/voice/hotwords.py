"""Catalogue hotwords: the words a recogniser is told to expect, read from the live index.

    vocabulary = catalogue_vocabulary(engine, "products")  # category names, colours, frequent title words
    vocabulary.hotwords()                                  # "red, blue, hoodie, bottle, Jackets, yoga, ..."
    cache = VocabularyCache(engine, words=40)              # the same per index, refreshed every few minutes

faster-whisper's ``hotwords`` is a prompt of words the model is told to expect. It is built from the index: its
category names, colours, the commonest last words of its product titles (what the products are: "hoodie",
"bottle") and the most frequent title words, read with one size-0 aggregation request over the keyword fields
of the index's field schema, through the engine adapter (:func:`catalogue_vocabulary`). Without it a small
model hears a catalogue word it does not expect as common words ("water bottle" as "Welcome, Otto").
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine import SearchRequest

if TYPE_CHECKING:
    from hybrid_search.engine import SearchEngine

VOCABULARY_TTL_S = 300.0
MAX_HOTWORD_CHARS = 250  # a longer prompt made the default model hear fewer queries right
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "for",
        "with",
        "in",
        "on",
        "to",
        "by",
        "at",
        "from",
        "or",
        "&",
        "x",
        "is",
        "it",
        "its",
        "this",
        "that",
        "set",
        "pack",
        "kit",
        "new",
        "size",
        "one",
    ]
)


@dataclass(frozen=True)
class Vocabulary:
    """Words the recogniser is told to expect: category names, colours, product nouns, frequent title words."""

    categories: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    nouns: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    def hotwords(self, max_chars: int = MAX_HOTWORD_CHARS) -> str | None:
        """The hotwords prompt, most telling first: colours, product nouns, categories, frequent words.

        ``"red, blue, hoodie, bottle, Jackets, yoga, ..."``, cut at ``max_chars`` whole terms: a short prompt
        keeps the words that tell most (docs/voice.md has the prompt lengths compared).
        """
        seen: set[str] = set()
        terms: list[str] = []
        for term in (*self.colours, *self.nouns, *self.categories, *self.words):
            key = term.lower()
            if key not in seen:
                seen.add(key)
                terms.append(term)
        out = ""
        for term in terms:
            candidate = f"{out}, {term}" if out else term
            if len(candidate) > max_chars:
                break
            out = candidate
        return out or None

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "categories": list(self.categories),
            "colours": list(self.colours),
            "nouns": list(self.nouns),
            "words": list(self.words),
        }


def _words(title: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*[A-Za-z]", title)]


def _top(counts: Counter[str], limit: int) -> list[str]:
    return [w for w, _n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def title_words(titles: Mapping[str, int], limit: int) -> list[str]:
    """The ``limit`` most frequent words of product titles (``{title: documents}``), stop words and numbers out."""
    counts: Counter[str] = Counter()
    for title, docs in titles.items():
        for word in set(_words(title)):
            if len(word) >= 3 and word not in _STOPWORDS:
                counts[word] += int(docs)
    return _top(counts, limit)


def title_nouns(titles: Mapping[str, int], limit: int) -> list[str]:
    """The most frequent last words of product titles: what products are ("hoodie", "bottle", "tank")."""
    counts: Counter[str] = Counter()
    for title, docs in titles.items():
        words = [w for w in _words(title) if len(w) >= 3 and w not in _STOPWORDS]
        if words:
            counts[words[-1]] += int(docs)
    return _top(counts, limit)


def vocabulary_request(
    titles: int = 2000, categories: int = 100, colours: int = 40, *, schema: FieldSchema = DEFAULT_SCHEMA
) -> SearchRequest:
    """The size-0 aggregation request :func:`catalogue_vocabulary` sends (pure): terms of the category, colour
    and title keyword fields, those the index has."""
    wanted = (
        ("categories", schema.keyword_field("category"), categories),
        ("colours", schema.keyword_field("colour"), colours),
        ("titles", schema.keyword_field("title"), titles),
    )
    return SearchRequest(
        size=0,
        source=False,
        track_total_hits=False,
        aggs={name: {"terms": {"field": field, "size": size}} for name, field, size in wanted if field},
    )


def catalogue_vocabulary(
    engine: SearchEngine, index: str, *, words: int = 40, schema: FieldSchema = DEFAULT_SCHEMA
) -> Vocabulary:
    """The index's category names, colours and ``words`` most frequent title words (one aggregation request)."""
    response = engine.search(index, vocabulary_request(schema=schema))
    aggs = response.get("aggregations") or {}

    def keys(name: str) -> list[tuple[str, int]]:
        return [(str(b["key"]), int(b["doc_count"])) for b in aggs.get(name, {}).get("buckets", [])]

    categories = [k for k, _n in keys("categories") if k.strip()]
    colours = [k for k, _n in keys("colours") if k.strip()]
    titles = dict(keys("titles"))
    frequent = title_words(titles, words) if words else []
    nouns = title_nouns(titles, words) if words else []
    return Vocabulary(tuple(categories), tuple(colours), tuple(nouns), tuple(frequent))


class VocabularyCache:
    """:func:`catalogue_vocabulary` per index and schema, refreshed every :data:`VOCABULARY_TTL_S` seconds."""

    def __init__(self, engine: SearchEngine, *, words: int, ttl_s: float = VOCABULARY_TTL_S) -> None:
        self.engine = engine
        self.words = words
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, FieldSchema], tuple[float, Vocabulary]] = {}
        self._lock = threading.Lock()

    def get(self, index: str, *, schema: FieldSchema = DEFAULT_SCHEMA) -> Vocabulary:
        """``index``'s vocabulary, read over ``schema``'s fields when it is not cached or is stale."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((index, schema))
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        vocabulary = catalogue_vocabulary(self.engine, index, words=self.words, schema=schema)
        with self._lock:
            self._cache[(index, schema)] = (now, vocabulary)
        return vocabulary


__all__ = [
    "MAX_HOTWORD_CHARS",
    "VOCABULARY_TTL_S",
    "Vocabulary",
    "VocabularyCache",
    "catalogue_vocabulary",
    "title_nouns",
    "title_words",
    "vocabulary_request",
]
