"""A shop with its own product index, written by its own code: what the attach tests work on.

:class:`ShopWriter` talks to the engine over plain HTTP (httpx), never through hybrid-search's adapter: it is the
shop's code. Its index has the shop's names (``sku``, ``name``, ``body``, ``colours``, ``price_usd``,
``picture``, ``modified``), its own analyzers, ``"dynamic": "strict"`` and no k-NN setting; it holds the 199 Luma
products (:func:`shop_document`). It writes the way shops do: full overwrites (the index API, which drops any
field it does not send, the layer's ``hs_`` fields among them), partial updates, deletes and inserts.

    with shop_index(url) as shop:            # created, loaded with Luma, deleted afterwards
        shop.overwrite("MH01", {...})
        shop.update("MH01", {"price_usd": 9.5})
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from api_support import luma_folder, luma_products

from hybrid_search.catalog import Product

SHOP_MAPPING: dict[str, Any] = {
    "settings": {
        "index": {"number_of_shards": 1, "number_of_replicas": 0},
        "analysis": {"analyzer": {"shop_text": {"type": "standard", "stopwords": "_english_"}}},
    },
    "mappings": {
        "dynamic": "strict",
        "_meta": {"owner": "shop-team", "revision": 7},
        "properties": {
            "sku": {"type": "keyword"},
            "name": {"type": "text", "analyzer": "shop_text", "fields": {"raw": {"type": "keyword"}}},
            "body": {"type": "text", "analyzer": "shop_text"},
            "colours": {"type": "keyword"},
            "price_usd": {"type": "scaled_float", "scaling_factor": 100},
            "picture": {"type": "keyword", "index": False},
            "modified": {"type": "date"},
        },
    },
}

# the shop's own BM25 query: what its search page sends today
SHOP_QUERY_FIELDS = ["name^3", "body"]

ATTACH_TOML = """\
index = "{index}"
[fields]
id = "sku"
title = "name"
description = "body"
colour = "colours"
price = "price_usd"
image = "picture"
updated_at = "modified"
[images]
root = "{root}"
[lexical]
fields = ["name^3", "body"]
"""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def shop_document(product: Product, *, modified: str | None = None) -> dict[str, Any]:
    """A Luma product as the shop stores it (its own names; the main photo's path relative to the Luma folder)."""
    return {
        "sku": product.id,
        "name": product.title,
        "body": product.description or "",
        "colours": list(product.colours),
        "price_usd": product.price,
        "picture": product.images[0] if product.images else None,
        "modified": modified or now(),
    }


class ShopWriter:
    """The shop's own writes to its index, over HTTP (``refresh=wait_for``: each write is visible when it returns)."""

    def __init__(self, url: str, index: str) -> None:
        self.url = url.rstrip("/")
        self.index = index
        self.http = httpx.Client(base_url=self.url, timeout=60.0)

    def create(self, mapping: Mapping[str, Any] = SHOP_MAPPING) -> None:
        """Create the index. The local Elasticsearch node has no mapper-extras module (no ``scaled_float``):
        there the price is a ``float``."""
        response = self.http.put(f"/{self.index}", json=dict(mapping))
        if response.status_code == 400 and "[scaled_float]" in response.text:
            mapping = json.loads(json.dumps(mapping))
            mapping["mappings"]["properties"]["price_usd"] = {"type": "float"}
            response = self.http.put(f"/{self.index}", json=mapping)
        self._ok(response)

    def load(self, documents: list[dict[str, Any]]) -> None:
        lines = []
        for doc in documents:
            lines.append(json.dumps({"index": {"_index": self.index, "_id": doc["sku"]}}))
            lines.append(json.dumps(doc))
        response = self.http.post(
            "/_bulk?refresh=true",
            content="\n".join(lines) + "\n",
            headers={"content-type": "application/x-ndjson"},
        )
        self._ok(response)
        assert not response.json()["errors"], response.text[:2000]

    def overwrite(self, sku: str, doc: Mapping[str, Any]) -> None:
        """A full overwrite (index API): every field the shop does not send is gone, ``hs_`` fields too."""
        self._ok(self.http.put(f"/{self.index}/_doc/{sku}?refresh=wait_for", json=dict(doc)))

    def update(self, sku: str, fields: Mapping[str, Any]) -> None:
        """A partial update of some of the shop's fields."""
        body = {"doc": dict(fields)}
        self._ok(self.http.post(f"/{self.index}/_update/{sku}?refresh=wait_for", json=body))

    def delete(self, sku: str) -> None:
        self._ok(self.http.delete(f"/{self.index}/_doc/{sku}?refresh=wait_for"))

    def insert(self, doc: Mapping[str, Any]) -> None:
        self._ok(self.http.put(f"/{self.index}/_create/{doc['sku']}?refresh=wait_for", json=dict(doc)))

    def source(self, sku: str) -> dict[str, Any] | None:
        """The stored ``_source`` as the engine returns it (None: not found)."""
        response = self.http.get(f"/{self.index}/_doc/{sku}")
        if response.status_code == 404:
            return None
        self._ok(response)
        return dict(response.json()["_source"])

    def sources(self) -> dict[str, dict[str, Any]]:
        """Every document's ``_source`` by id."""
        self.http.post(f"/{self.index}/_refresh")
        body = {"size": 10_000, "query": {"match_all": {}}, "sort": [{"sku": "asc"}]}
        response = self.http.post(f"/{self.index}/_search", json=body)
        self._ok(response)
        return {h["_id"]: h["_source"] for h in response.json()["hits"]["hits"]}

    def shop_search(self, text: str, size: int = 10) -> list[str]:
        """The shop's own BM25 query: the ids it ranks, in order."""
        body = {
            "size": size,
            "query": {"multi_match": {"query": text, "fields": SHOP_QUERY_FIELDS, "type": "best_fields"}},
            "_source": False,
        }
        response = self.http.post(f"/{self.index}/_search", json=body)
        self._ok(response)
        return [h["_id"] for h in response.json()["hits"]["hits"]]

    def drop(self) -> None:
        self.http.delete(f"/{self.index}")
        self.http.close()

    @staticmethod
    def _ok(response: httpx.Response) -> None:
        assert response.status_code < 300, (
            f"{response.request.method} {response.request.url}: {response.text[:1000]}"
        )


def write_attach_config(folder: Path, index: str) -> Path:
    """The attachment file of the shop index (the issue's example, photos under the Luma folder)."""
    path = folder / f"{index}.toml"
    path.write_text(ATTACH_TOML.format(index=index, root=luma_folder()), encoding="utf-8")
    return path


@contextmanager
def shop_index(url: str, prefix: str = "shop") -> Iterator[ShopWriter]:
    """A new shop index holding the 199 Luma products under the shop's names; deleted afterwards."""
    shop = ShopWriter(url, f"{prefix}-{uuid.uuid4().hex[:10]}")
    shop.create()
    try:
        shop.load([shop_document(p) for p in luma_products().values()])
        yield shop
    finally:
        shop.drop()


__all__ = [
    "ATTACH_TOML",
    "SHOP_MAPPING",
    "SHOP_QUERY_FIELDS",
    "ShopWriter",
    "now",
    "shop_document",
    "shop_index",
    "write_attach_config",
]
