"""Catalogue input: products from JSONL, CSV, the Luma store folder or the Home Depot products file, and the
field roles that say which engine field of an index holds each part of a product (:mod:`.schema`)."""

from hybrid_search.catalog.readers import Catalogue, RecordError, convert_to_jsonl, open_catalogue
from hybrid_search.catalog.records import Product, product_text, validate_product
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema

__all__ = [
    "DEFAULT_SCHEMA",
    "Catalogue",
    "FieldSchema",
    "Product",
    "RecordError",
    "convert_to_jsonl",
    "open_catalogue",
    "product_text",
    "validate_product",
]
