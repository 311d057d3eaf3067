"""Convert the public Magento Luma sample data (magento2-sample-data) into the Luma catalogue folder format.

The sample data keeps its products in import fixtures (``app/code/Magento/*SampleData/fixtures``) and its photos
under ``pub/media/catalog/product``. :func:`convert_sample_data` writes ``products_flat.csv`` (one row per
sellable product: configurable styles with their colours, sizes and variant count; simple gear; downloadable,
bundle and grouped products) and links the photos folder, which :func:`hybrid_search.catalog.open_catalogue`
then reads like any Luma folder.
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hybrid_search.errors import ConfigurationError

FIXTURES = Path("app/code/Magento")
MEDIA = "pub/media/catalog/product"
COLUMNS = ("sku", "type", "name", "price", "categories", "description", "colors", "sizes", "attributes",
           "images", "n_variants")  # fmt: skip
_SKIP_ATTRIBUTES = {"category", "name", "sku", "price", "qty", "description", "short_description",
                    "meta_description", "attribute_set", "bundle_options", "associated_sku"}  # fmt: skip


def html_to_text(value: str) -> str:
    """Product HTML as one line of text; list items become "• " bullets."""
    text = re.sub(r"(?is)<li[^>]*>", " • ", value)
    text = re.sub(r"(?s)<[^>]+>", " ", text)
    return " ".join(html.unescape(text).split())


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _media(ref: str) -> str:
    return f"{MEDIA}/{ref.strip().lstrip('/')}"


def _configurable(fixtures: Path) -> Iterator[dict[str, Any]]:
    rows = list(_rows(fixtures / "ConfigurableSampleData/fixtures/products.csv"))
    children = {r["sku"]: r for r in rows if r["product_type"] == "simple"}
    for row in rows:
        if row["product_type"] != "configurable":
            continue
        attributes: dict[str, str] = {}
        for pair in re.split(r",(?=[a-z_]+=)", row.get("additional_attributes") or ""):
            key, _sep, value = pair.partition("=")
            if key and value and key not in ("has_options", "required_options"):
                attributes[key] = value
        colours: list[str] = []
        sizes: list[str] = []
        variants = [v for v in (row.get("configurable_variations") or "").split("|") if v]
        images = [_media(row["base_image"])] if row.get("base_image") else []
        images += [_media(i) for i in (row.get("additional_images") or "").split(",") if i.strip()]
        for variant in variants:
            fields = dict(part.partition("=")[::2] for part in variant.split(","))
            if fields.get("color") and fields["color"] not in colours:
                colours.append(fields["color"])
            if fields.get("size") and fields["size"] not in sizes:
                sizes.append(fields["size"])
            child = children.get(fields.get("sku", ""))
            photo = _media(child["base_image"]) if child and child.get("base_image") else None
            if photo and photo not in images and "_main" in photo:
                images.append(photo)
        categories = [c.removeprefix("Default Category/") for c in row["categories"].split(",")]
        yield {
            "sku": row["sku"],
            "type": "configurable",
            "name": row["name"],
            "price": row["price"],
            "categories": "|".join(c for c in categories if c and c != "Default Category"),
            "description": html_to_text(row.get("description") or ""),
            "colors": "|".join(sorted(colours)),
            "sizes": "|".join(sorted(sizes)),
            "attributes": json.dumps(attributes),
            "images": "|".join(images),
            "n_variants": len(variants),
        }


def _simple(fixtures: Path) -> Iterator[dict[str, Any]]:
    images: dict[str, list[str]] = {}
    for path in sorted(fixtures.glob("*SampleData/fixtures/**/images_*.csv")):
        for row in _rows(path):
            images.setdefault(row["sku"], []).append(_media(row["image"]))
    sources = {
        "simple": "CatalogSampleData/fixtures/SimpleProduct/products_*.csv",
        "downloadable": "DownloadableSampleData/fixtures/products_*.csv",
        "bundle": "BundleSampleData/fixtures/yoga_bundle.csv",
        "grouped": "GroupedProductSampleData/fixtures/yoga_grouped.csv",
    }
    for kind, pattern in sources.items():
        for path in sorted(fixtures.glob(pattern)):
            for row in _rows(path):
                attributes = {
                    k: v for k, v in row.items() if k not in _SKIP_ATTRIBUTES and v and v.strip() and k
                }
                yield {
                    "sku": row["sku"],
                    "type": kind,
                    "name": row["name"],
                    "price": row.get("price") or "",
                    "categories": "/".join(c.strip() for c in row["category"].splitlines() if c.strip()),
                    "description": html_to_text(row.get("description") or ""),
                    "colors": "",
                    "sizes": "",
                    "attributes": json.dumps(attributes),
                    "images": "|".join(images.get(row["sku"], [])),
                    "n_variants": 0,
                }


def convert_sample_data(source: Path, target: Path) -> int:
    """Write ``target/products_flat.csv`` from the sample data checked out at ``source``; link its photos.

    Returns the number of products written.
    """
    fixtures = source / FIXTURES
    if not (fixtures / "ConfigurableSampleData/fixtures/products.csv").is_file():
        raise ConfigurationError(
            f"{source} does not look like magento2-sample-data (no {FIXTURES}/*SampleData)"
        )
    products: dict[str, dict[str, Any]] = {}
    for product in [*_configurable(fixtures), *_simple(fixtures)]:
        products.setdefault(str(product["sku"]), product)
    target.mkdir(parents=True, exist_ok=True)
    media = target / MEDIA
    if source.resolve() != target.resolve() and not media.exists():
        media.parent.mkdir(parents=True, exist_ok=True)
        try:
            media.symlink_to((source / MEDIA).resolve(), target_is_directory=True)
        except OSError:
            shutil.copytree(source / MEDIA, media)
    partial = target / "products_flat.csv.part"
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in products.values():
            writer.writerow(row)
    partial.replace(target / "products_flat.csv")
    return len(products)


__all__ = ["convert_sample_data", "html_to_text"]
