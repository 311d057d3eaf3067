"""One product of a catalogue: validated input, and the index document made from it.

Input fields (JSONL objects or CSV columns; in CSV, lists are ``|``-separated and ``attributes`` is a JSON object):

| field | type | notes |
|---|---|---|
| ``id`` | string, required | stable: it is the document id; 1-256 printable characters |
| ``title`` | string, required | at most 1,000 characters |
| ``description`` | string | at most 50,000 characters; HTML tags are removed |
| ``brand`` | string | |
| ``category_path`` | string or list | ``Men/Tops/Jackets`` (``/`` or ``>`` between levels); a list for several paths |
| ``price`` | number >= 0 | |
| ``currency`` | 3-letter code | default ``USD`` |
| ``colour`` (or ``color``, ``colours``) | string or list | |
| ``size`` (or ``sizes``) | string or list | |
| ``material`` | string or list | |
| ``attributes`` | object of string/number/bool/list | free attributes, searchable and filterable as ``key=value`` |
| ``images`` (or ``image``) | string or list | local paths (relative to the catalogue) or http(s) URLs; the first is the main photo |
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema

MAX_ID = 256
MAX_TITLE = 1_000
MAX_DESCRIPTION = 50_000
MAX_SHORT = 500
MAX_LIST = 100
MAX_IMAGES = 20
_TAG = re.compile(r"<[^>]{0,2000}>")
_SPACE = re.compile(r"\s+")
_CONTROL = {"Cc", "Cf", "Cs", "Co", "Cn"}
_ALIASES = {"color": "colour", "colours": "colour", "colors": "colour", "sizes": "size", "image": "images"}


def clean_text(value: str) -> str:
    """Decode HTML entities, drop tags and control characters, collapse whitespace."""
    text = html.unescape(_TAG.sub(" ", value))
    text = "".join(" " if unicodedata.category(c) in _CONTROL else c for c in text)
    return _SPACE.sub(" ", text).strip()


def json_problem(exc: ValueError | RecursionError) -> str:
    """What ``json.loads`` found wrong, in a few words: a syntax error, nesting too deep, a 5,000-digit number."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def _as_list(value: Any, field: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    items = re.split(r"[|\n]", value) if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"{field} must be a string or a list of strings")
    out = []
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise ValueError(f"{field} holds a {type(item).__name__}, expected strings")
        text = clean_text(str(item))
        if len(text) > MAX_SHORT:
            raise ValueError(f"{field} item is {len(text)} characters (limit {MAX_SHORT})")
        if text and text not in out:
            out.append(text)
    if len(out) > MAX_LIST:
        raise ValueError(f"{field} has {len(out)} items (limit {MAX_LIST})")
    return out


class Product(BaseModel):
    """A validated catalogue product."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    description: str = ""
    brand: str | None = None
    category_paths: list[list[str]] = Field(default_factory=list)
    price: float | None = None
    currency: str = "USD"
    colours: list[str] = Field(default_factory=list)
    sizes: list[str] = Field(default_factory=list)
    materials: list[str] = Field(default_factory=list)
    attributes: dict[str, list[str]] = Field(default_factory=dict)
    images: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _normalise_input(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise ValueError(f"a product must be an object, got {type(data).__name__}")
        raw = {_ALIASES.get(str(k), str(k)): v for k, v in data.items()}
        known = {"id", "title", "description", "brand", "category_path", "price", "currency", "colour", "size",
                 "material", "attributes", "images"}  # fmt: skip
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        out: dict[str, Any] = {k: raw[k] for k in ("id", "title", "brand", "price", "currency") if k in raw}
        if raw.get("description") is not None:
            out["description"] = raw["description"]
        paths = raw.get("category_path")
        if isinstance(paths, str):
            paths = paths.split("|")
        out["category_paths"] = [
            [clean_text(level) for level in re.split(r"\s*(?:/|>)\s*", p) if clean_text(level)]
            for p in _as_list(paths, "category_path")
        ]
        out["colours"] = _as_list(raw.get("colour"), "colour")
        out["sizes"] = _as_list(raw.get("size"), "size")
        out["materials"] = _as_list(raw.get("material"), "material")
        out["images"] = _as_list(raw.get("images"), "images")
        attributes = raw.get("attributes") or {}
        if isinstance(attributes, str):
            try:
                attributes = json.loads(attributes)
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"attributes is not a JSON object: {json_problem(exc)}") from None
        if not isinstance(attributes, Mapping):
            raise ValueError("attributes must be an object of name -> value")
        out["attributes"] = {
            clean_text(str(k)): _as_list(v if not isinstance(v, bool) else str(v).lower(), f"attributes.{k}")
            for k, v in attributes.items()
        }
        return out

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"id must be a string, got {type(value).__name__}")
        value = value.strip()
        if not value:
            raise ValueError("id is empty")
        if len(value) > MAX_ID:
            raise ValueError(f"id is {len(value)} characters (limit {MAX_ID})")
        if any(unicodedata.category(c) in _CONTROL for c in value):
            raise ValueError("id contains control characters")
        return str(value)

    @field_validator("title", mode="before")
    @classmethod
    def _title(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"title must be a string, got {type(value).__name__}")
        if len(value) > 4 * MAX_TITLE:
            raise ValueError(f"title is {len(value)} characters (limit {MAX_TITLE})")
        text = clean_text(value)
        if not text:
            raise ValueError("title is empty")
        if len(text) > MAX_TITLE:
            raise ValueError(f"title is {len(text)} characters (limit {MAX_TITLE})")
        return text

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"description must be a string, got {type(value).__name__}")
        if len(value) > 4 * MAX_DESCRIPTION:
            raise ValueError(f"description is {len(value)} characters (limit {MAX_DESCRIPTION})")
        text = clean_text(value)
        if len(text) > MAX_DESCRIPTION:
            raise ValueError(f"description is {len(text)} characters (limit {MAX_DESCRIPTION})")
        return text

    @field_validator("brand", mode="before")
    @classmethod
    def _brand(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"brand must be a string, got {type(value).__name__}")
        text = clean_text(value)
        if len(text) > MAX_SHORT:
            raise ValueError(f"brand is {len(text)} characters (limit {MAX_SHORT})")
        return text or None

    @field_validator("price", mode="before")
    @classmethod
    def _price(cls, value: Any) -> float | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            raise ValueError("price must be a number, got a boolean")
        try:
            price = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"price must be a number, got {str(value)[:40]!r}") from None
        if not math.isfinite(price) or price < 0:
            raise ValueError(f"price must be a finite number >= 0, got {value!r}")
        return price

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, value: Any) -> str:
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
            raise ValueError(f"currency must be a 3-letter code, got {str(value)[:20]!r}")
        return value.strip().upper()

    @field_validator("images")
    @classmethod
    def _images(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_IMAGES:
            raise ValueError(f"{len(value)} images (limit {MAX_IMAGES})")
        return value

    # ---- the index document ---------------------------------------------------------------------------

    @property
    def category_path(self) -> str:
        return "; ".join(" > ".join(path) for path in self.category_paths)

    @property
    def categories(self) -> list[str]:
        """Every category name of the product's paths, once each, in the order they first appear."""
        names: list[str] = []
        for path in self.category_paths:
            for level in path:
                if level not in names:
                    names.append(level)
        return names

    @property
    def main_image(self) -> str | None:
        return self.images[0] if self.images else None

    def to_input(self, base_dir: Any = None) -> dict[str, Any]:
        """The product in the catalogue input format (what the queue carries; validates back to itself).

        With ``base_dir``, relative image paths become absolute paths under it.
        """
        images = [img if "://" in img or base_dir is None else str(base_dir / img) for img in self.images]
        record = {
            "id": self.id,
            "title": self.title,
            "description": self.description or None,
            "brand": self.brand,
            "category_path": [" / ".join(path) for path in self.category_paths],
            "price": self.price,
            "currency": self.currency,
            "colour": self.colours,
            "size": self.sizes,
            "material": self.materials,
            "attributes": self.attributes,
            "images": images,
        }
        return {k: v for k, v in record.items() if v not in (None, [], {})}

    def document(self, schema: FieldSchema = DEFAULT_SCHEMA) -> dict[str, Any]:
        """The product's text and keyword fields under ``schema``'s names (no vectors): the document of the
        layer's own index (``mappings/products.json``).

        The category names go to the category's keyword field when it is a field of its own (the own index's
        ``categories``); ``attributes_text`` (the attributes as text, matched by BM25) and ``image_urls`` (every
        photo) are fields only the own index has.
        """
        doc: dict[str, Any] = {}

        def put(name: str | None, value: Any) -> None:
            if name is not None:
                doc[name] = value

        put(schema.id, self.id)
        put(schema.title, self.title)
        put(schema.description, self.description or None)
        put(schema.brand, self.brand)
        put(schema.category, self.category_path or None)
        names = schema.keyword_field("category")
        if names not in (None, schema.category) and not str(names).startswith(f"{schema.category}."):
            put(names, self.categories)  # (a subfield of the category field is the engine's to fill)
        put(schema.colour, self.colours)
        put(schema.material, self.materials)
        put(schema.size, self.sizes)
        put(schema.attributes, [f"{k}={v}" for k, values in self.attributes.items() for v in values])
        doc["attributes_text"] = "; ".join(f"{k}: {', '.join(v)}" for k, v in self.attributes.items()) or None
        put(schema.price, self.price)
        put(schema.currency, self.currency)
        put(schema.image, self.main_image)
        doc["image_urls"] = self.images
        return doc


def validate_product(data: Any) -> Product:
    """A :class:`Product`, or ``ValueError`` with one readable line naming each problem."""
    try:
        return Product.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError("; ".join(problems)) from None


TEXT_ROLES: tuple[str, ...] = ("title", "brand", "category", "colour", "material", "description")


def product_text(product: Mapping[str, Any], schema: FieldSchema = DEFAULT_SCHEMA) -> str:
    """The text a product's ``text_vector`` embeds: the values of its :data:`TEXT_ROLES` (title, brand,
    categories, colour, material, description), read from a document with ``schema``'s field names."""
    parts = [product.get(name) for role in TEXT_ROLES if (name := schema.value_field(role)) is not None]
    return ". ".join(str(p).strip() for p in parts if p and str(p).strip())


__all__ = ["TEXT_ROLES", "Product", "clean_text", "json_problem", "product_text", "validate_product"]
