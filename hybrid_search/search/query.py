"""What a search asks for: :class:`SearchQuery` and its :class:`Filters`, validated when built.

Every refusal is a :class:`hybrid_search.errors.ValidationError` whose ``field`` names the input
(``text``, ``image``, ``filters.<name>``, ``page``, ``size``, ``weights``, ``fusion``, ``normaliser``,
``rank_constant``, ``rank_window``). Checks that need the settings or the index happen in the search stages:
the page against the resolved rank window in :mod:`.understand`, which retrievers can run in :mod:`.plan`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.errors import ValidationError
from hybrid_search.ranking.fusion import NORMALISERS
from hybrid_search.search.bodies import KEYWORD_FILTERS, filter_clauses

if TYPE_CHECKING:
    from PIL import Image

RETRIEVERS: tuple[str, ...] = (
    "bm25",
    "text_knn",
    "image_knn",
    "colour_knn",
    "fused_knn",
    "text_to_image",
    "image_to_text",
)
FUSION_METHODS: tuple[str, ...] = ("linear", "rrf", "native", "learned")
MAX_TEXT_CHARS = 1000
MAX_PAGE_SIZE = 100
MAX_RANK_WINDOW = 10_000  # the engines' default index.max_result_window and largest kNN k
MAX_FILTER_VALUES = 50
MAX_VALUE_CHARS = 256
ATTRIBUTE_PREFIX = "attr."
_INVISIBLE = frozenset(("Cc", "Cf", "Cs"))

ImageInput = Union[bytes, bytearray, memoryview, "Image.Image"]
FilterValue = str | Sequence[str]


def _visible(text: str) -> str:
    """``text`` with control, format (zero-width, bidi) and lone surrogate characters made spaces, as the
    catalogue's text is: they match nothing, and a lone surrogate cannot even be encoded for the engine."""
    return "".join(" " if unicodedata.category(c) in _INVISIBLE else c for c in text)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _filter_values(value: object, where: str) -> tuple[str, ...]:
    values: list[object] = []
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        values = list(value)
    if not values:
        raise ValidationError(f"filter {where} needs a string or a non-empty list of strings", field=where)
    if len(values) > MAX_FILTER_VALUES:
        raise ValidationError(f"filter {where} has {len(values)} values (limit {MAX_FILTER_VALUES})", where)
    out: list[str] = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise ValidationError(f"filter {where} values must be non-empty strings, got {item!r}", where)
        if len(item) > 4 * MAX_VALUE_CHARS:
            raise ValidationError(f"filter {where} value is {len(item)} characters (limit 256)", where)
        text = " ".join(_visible(item).split())
        if not text:
            raise ValidationError(f"filter {where} values must be non-empty strings, got {item!r}", where)
        if len(text) > MAX_VALUE_CHARS:
            raise ValidationError(f"filter {where} value is {len(text)} characters (limit 256)", where)
        if text not in out:
            out.append(text)
    return tuple(out)


def _price(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValidationError(f"{where} must be a number, got {value!r}", field=where) from None
    if not _is_number(value) or not math.isfinite(float(value)) or float(value) < 0:  # type: ignore[arg-type]
        raise ValidationError(f"{where} must be a finite number >= 0, got {value!r}", field=where)
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Filters:
    """Restrictions every retriever applies identically (kNN pre-filtering).

    ``category``, ``brand``, ``colour``, ``material`` and ``size`` take one value or several (any of them
    matches; colour and material ignore case); ``attributes`` maps an attribute name to its value(s);
    ``price_min`` / ``price_max`` are inclusive. Different filters must all hold.
    """

    category: FilterValue | None = None
    brand: FilterValue | None = None
    colour: FilterValue | None = None
    material: FilterValue | None = None
    size: FilterValue | None = None
    price_min: float | None = None
    price_max: float | None = None
    attributes: Mapping[str, FilterValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in KEYWORD_FILTERS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _filter_values(value, f"filters.{name}"))
        low = _price(self.price_min, "filters.price_min")
        high = _price(self.price_max, "filters.price_max")
        if low is not None and high is not None and low > high:
            raise ValidationError(
                f"filters.price_min ({low:g}) is above filters.price_max ({high:g})",
                field="filters.price_min",
            )
        object.__setattr__(self, "price_min", low)
        object.__setattr__(self, "price_max", high)
        if not isinstance(self.attributes, Mapping):
            raise ValidationError("filters.attributes must map names to values", field="filters.attributes")
        attributes: dict[str, tuple[str, ...]] = {}
        for key, value in self.attributes.items():
            where = f"filters.attributes.{key}"
            if not isinstance(key, str) or not key.strip() or "=" in key or len(key) > 100:
                raise ValidationError(f"attribute name {key!r} must be 1-100 characters without '='", where)
            attributes[key.strip()] = _filter_values(value, where)
        object.__setattr__(self, "attributes", attributes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """From plain data (JSON); an unknown key is refused, naming it."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValidationError("filters must be an object", field="filters")
        known = (*KEYWORD_FILTERS, "price_min", "price_max", "attributes")
        unknown = [str(k) for k in data if k not in known]
        if unknown:
            raise ValidationError(
                f"unknown filter {unknown[0]!r}; known: {', '.join(known)}", field=f"filters.{unknown[0]}"
            )
        return cls(**dict(data))

    @classmethod
    def from_pairs(cls, pairs: Sequence[str]) -> Filters:
        """From ``key=value`` strings (the CLI): a repeated key takes any of its values.

        Keys: ``category``, ``brand``, ``colour``, ``material``, ``size``, ``price_min``, ``price_max``, and
        ``attr.<name>`` for a product attribute (``attr.climate=Cool``).
        """
        keywords: dict[str, list[str]] = {}
        attributes: dict[str, list[str]] = {}
        prices: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValidationError(f"filter {pair!r} is not key=value", field="filters")
            if key in KEYWORD_FILTERS:
                keywords.setdefault(key, []).append(value)
            elif key.startswith(ATTRIBUTE_PREFIX) and len(key) > len(ATTRIBUTE_PREFIX):
                attributes.setdefault(key[len(ATTRIBUTE_PREFIX) :], []).append(value)
            elif key in ("price_min", "price_max"):
                if key in prices:
                    raise ValidationError(f"filter {key} given twice", field=f"filters.{key}")
                prices[key] = value
            else:
                raise ValidationError(
                    f"unknown filter {key!r}; use {', '.join(KEYWORD_FILTERS)}, price_min, price_max "
                    f"or {ATTRIBUTE_PREFIX}<attribute>",
                    field=f"filters.{key}",
                )
        return cls(
            **keywords,
            price_min=_price(prices.get("price_min"), "filters.price_min"),
            price_max=_price(prices.get("price_max"), "filters.price_max"),
            attributes=attributes,
        )

    def keywords(self) -> dict[str, tuple[str, ...]]:
        """The keyword filters that are set, ``{name: values}``."""
        return {name: getattr(self, name) for name in KEYWORD_FILTERS if getattr(self, name) is not None}

    def clauses(self, schema: FieldSchema = DEFAULT_SCHEMA) -> list[dict[str, Any]]:
        """The engine filter clauses on ``schema``'s fields (:func:`hybrid_search.search.bodies.filter_clauses`)."""
        return filter_clauses(
            keywords=self.keywords(),
            attributes=self.attributes,
            price_min=self.price_min,
            price_max=self.price_max,
            schema=schema,
        )

    def as_dict(self) -> dict[str, Any]:
        """The filters that are set, as plain data."""
        data: dict[str, Any] = {k: list(v) for k, v in self.keywords().items()}
        if self.price_min is not None:
            data["price_min"] = self.price_min
        if self.price_max is not None:
            data["price_max"] = self.price_max
        if self.attributes:
            data["attributes"] = {k: list(v) for k, v in self.attributes.items()}
        return data


def _check_image(image: object) -> None:
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise ValidationError("empty: the query image has no data", field="image")
        return
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - PIL ships with the workers extra
        PILImage = None  # type: ignore[assignment]
    if PILImage is None or not isinstance(image, PILImage.Image):
        raise ValidationError(
            f"the query image must be bytes or a PIL image, got {type(image).__name__}", field="image"
        )


@dataclass(frozen=True)
class SearchQuery:
    """One search: text and/or an image, filters, a page, and how to rank.

    ``weights`` override the settings' default weight of the named retrievers (``RETRIEVERS``); a weight of
    0 turns that retriever off. ``fusion``, ``normaliser``, ``rank_constant`` and ``rank_window`` default to
    the settings. ``rank_window`` is how many candidates each retriever fetches: it must hold the requested
    page (``page * size <= rank_window``), and because it does not depend on the page, page N+1 continues
    page N exactly. ``facets=False`` skips the facet aggregations (then ``total`` is a lower bound).
    """

    text: str | None = None
    image: ImageInput | None = None
    filters: Filters = field(default_factory=Filters)
    page: int = 1
    size: int = 10
    weights: Mapping[str, float] | None = None
    fusion: str | None = None
    normaliser: str | None = None
    rank_constant: float | None = None
    rank_window: int | None = None
    explain: bool = False
    facets: bool = True

    def __post_init__(self) -> None:
        text = self.text
        if text is not None:
            if not isinstance(text, str):
                raise ValidationError(f"text must be a string, got {type(text).__name__}", field="text")
            if len(text) > 4 * MAX_TEXT_CHARS:
                raise ValidationError(
                    f"text is {len(text)} characters (limit {MAX_TEXT_CHARS})", field="text"
                )
            text = " ".join(_visible(text).split()) or None
            if text is not None and len(text) > MAX_TEXT_CHARS:
                raise ValidationError(
                    f"text is {len(text)} characters (limit {MAX_TEXT_CHARS})", field="text"
                )
            object.__setattr__(self, "text", text)
        if self.image is not None:
            _check_image(self.image)
        if text is None and self.image is None:
            raise ValidationError("empty query: give search text, an image, or both", field="text")
        if not isinstance(self.filters, Filters):
            raise ValidationError("filters must be a Filters object", field="filters")
        if not _is_int(self.page) or self.page < 1:
            raise ValidationError(f"page must be an integer >= 1, got {self.page!r}", field="page")
        if not _is_int(self.size) or not 1 <= self.size <= MAX_PAGE_SIZE:
            raise ValidationError(
                f"size must be an integer from 1 to {MAX_PAGE_SIZE}, got {self.size!r}", field="size"
            )
        if self.weights is not None:
            object.__setattr__(self, "weights", _check_weights(self.weights))
        if self.fusion is not None and self.fusion not in FUSION_METHODS:
            raise ValidationError(
                f"unknown fusion method {self.fusion!r}; expected one of {', '.join(FUSION_METHODS)}",
                field="fusion",
            )
        if self.normaliser is not None and self.normaliser not in NORMALISERS:
            raise ValidationError(
                f"unknown normaliser {self.normaliser!r}; expected one of {', '.join(NORMALISERS)}",
                field="normaliser",
            )
        rank_constant = self.rank_constant
        if rank_constant is not None and (
            not _is_number(rank_constant) or not math.isfinite(rank_constant) or rank_constant <= 0
        ):
            raise ValidationError(
                f"rank_constant must be a finite number > 0, got {rank_constant!r}", field="rank_constant"
            )
        window = self.rank_window
        if window is not None:
            if not _is_int(window) or not 1 <= window <= MAX_RANK_WINDOW:
                raise ValidationError(
                    f"rank_window must be an integer from 1 to {MAX_RANK_WINDOW}, got {window!r}",
                    field="rank_window",
                )
            check_page(self.page, self.size, window)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchQuery:
        """From plain data (a JSON body); an unknown key is refused, naming it."""
        if not isinstance(data, Mapping):
            raise ValidationError("a search query must be an object", field="query")
        known = {f for f in cls.__dataclass_fields__}
        unknown = [str(k) for k in data if k not in known]
        if unknown:
            raise ValidationError(
                f"unknown search field {unknown[0]!r}; known: {', '.join(sorted(known))}", field=unknown[0]
            )
        values = dict(data)
        if "filters" in values and not isinstance(values["filters"], Filters):
            values["filters"] = Filters.from_dict(values["filters"])
        return cls(**values)


def check_page(page: int, size: int, window: int) -> None:
    """Refuse a page that reaches beyond the rank window (it would need candidates nobody fetched)."""
    if page * size > window:
        raise ValidationError(
            f"page {page} of size {size} reaches result {page * size}, beyond the rank window of {window} "
            f"candidates per retriever; ask for an earlier page or a rank_window of at least {page * size}",
            field="page",
        )


def _check_weights(weights: object) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ValidationError("weights must map retriever names to numbers", field="weights")
    out: dict[str, float] = {}
    for name, weight in weights.items():
        if name not in RETRIEVERS:
            raise ValidationError(
                f"unknown retriever {name!r} in weights; known: {', '.join(RETRIEVERS)}", field="weights"
            )
        if not _is_number(weight) or not math.isfinite(weight):
            raise ValidationError(
                f"weight of {name} must be a finite number, got {weight!r}", field="weights"
            )
        if weight < 0:
            raise ValidationError(
                f"weight of {name} is negative ({weight!r}); weights must be >= 0", "weights"
            )
        out[name] = float(weight)
    if out and all(w == 0.0 for w in out.values()) and len(out) == len(RETRIEVERS):
        raise ValidationError("all weights are zero; at least one retriever needs a weight > 0", "weights")
    return out


__all__ = [
    "FUSION_METHODS",
    "MAX_PAGE_SIZE",
    "MAX_RANK_WINDOW",
    "MAX_TEXT_CHARS",
    "RETRIEVERS",
    "Filters",
    "SearchQuery",
    "check_page",
]
