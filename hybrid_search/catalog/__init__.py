"""Catalogue input: products from JSONL, CSV, the Luma store folder or the Home Depot products file."""

from hybrid_search.catalog.readers import Catalogue, RecordError, convert_to_jsonl, open_catalogue
from hybrid_search.catalog.records import Product, product_text, validate_product

__all__ = [
    "Catalogue",
    "Product",
    "RecordError",
    "convert_to_jsonl",
    "open_catalogue",
    "product_text",
    "validate_product",
]
