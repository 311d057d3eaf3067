"""Photo search evaluation protocols: Luma "same item from another view" and Myntra "same kind of product".

Two photo sets, each a tuple of :class:`Photo` plus the photos that serve as queries:

``luma_photos(folder)``  (``protocol = "item"``)
    Every photo of every product in ``products_flat.csv`` (its ``images`` column, all colour variants and
    views). Queries: the photos whose file name ends in ``_alt1.jpg`` or ``_back.jpg`` (a close-up or the
    back of one colour variant). The relevant document is the query's product. The query photo itself is
    **left out** of the searched set; its product stays findable through its other photos, and a product's
    score is the best score of its photos (:func:`product_ranking`).
``myntra_photos(folder)``  (``protocol = "kind"``)
    One photo per product (``styles.csv`` + ``images/<id>.jpg``); each photo queries all the others, and the
    relevant documents are the other photos of the same ``articleType``.

Metrics (from :mod:`hybrid_search.evaluation.metrics`): Luma Recall@1 and Recall@10 (one relevant product per
query, so recall is the hit rate), Myntra Precision@10. :func:`evaluate_rankings` averages them over queries.

Nothing here loads an image or a model: photos are paths and labels; rankings come from whoever searches
(numpy exact search in ``benchmarks/photos.py``, or the engine). :func:`catalogue_records` gives each set as
catalogue records (the ingestion format) for indexing, optionally without some photos (leave-one-out through the
engine); :func:`record_categories` gives each product's ``categories`` keyword values exactly as indexed.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from hybrid_search.catalog import Product, open_catalogue, validate_product
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.evaluation.metrics import precision_at_k, recall_at_k
from hybrid_search.search.query import Filters

Protocol = Literal["item", "kind"]
LUMA_QUERY_VIEWS: tuple[str, ...] = ("alt1", "back")
_VIEW = re.compile(r"_(?P<view>[a-z0-9]+)\.[a-z]+$", re.IGNORECASE)


@dataclass(frozen=True)
class Photo:
    """One photo of one product: ``key`` is its path relative to the set's folder (a photo that several products
    list appears once per product); ``doc_id`` is the product; ``label`` is what makes another product relevant
    (Luma: the product id; Myntra: article type)."""

    key: str
    path: Path
    doc_id: str
    label: str
    view: str


@dataclass(frozen=True)
class PhotoSet:
    """Photos, which of them are queries (indices into ``photos``), and how relevance is judged."""

    name: str
    protocol: Protocol
    photos: tuple[Photo, ...]
    queries: tuple[int, ...]

    @property
    def doc_ids(self) -> list[str]:
        """The distinct products, in order of first appearance."""
        return list(dict.fromkeys(p.doc_id for p in self.photos))

    def relevant(self, query: int) -> set[str]:
        """The products relevant to query photo ``query``: its own product (item), or others of its label (kind)."""
        photo = self.photos[query]
        if self.protocol == "item":
            return {photo.doc_id}
        return {p.doc_id for p in self.photos if p.label == photo.label and p.doc_id != photo.doc_id}


def photo_view(name: str) -> str:
    """The view of a catalogue photo from its file name: ``mh01-gray_back.jpg`` -> ``back`` ('' if none)."""
    match = _VIEW.search(name)
    return match.group("view").lower() if match else ""


def _require(path: Path, what: str) -> None:
    if not path.exists():
        raise ConfigurationError(f"{what} not found: {path} (the datasets live in ../shared/datasets)")


def luma_photos(folder: Path) -> PhotoSet:
    """The Luma photo set (module docstring): every product photo; alt1 and back views are the queries."""
    csv_path = Path(folder) / "products_flat.csv"
    _require(csv_path, "Luma catalogue")
    photos: list[Photo] = []
    with csv_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            sku = (row.get("sku") or "").strip()
            for ref in dict.fromkeys(r.strip() for r in (row.get("images") or "").split("|")):
                if not sku or not ref:
                    continue
                photos.append(Photo(ref, Path(folder) / ref, sku, sku, photo_view(ref)))
    queries = tuple(n for n, p in enumerate(photos) if p.view in LUMA_QUERY_VIEWS)
    return PhotoSet("luma", "item", tuple(photos), queries)


def myntra_photos(folder: Path) -> PhotoSet:
    """The Myntra photo set (module docstring): every photo is a query; relevant = same article type."""
    csv_path = Path(folder) / "styles.csv"
    _require(csv_path, "Myntra styles")
    photos: list[Photo] = []
    with csv_path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            style = (row.get("id") or "").strip()
            kind = (row.get("articleType") or "").strip()
            if not style or not kind:
                continue
            key = f"images/{style}.jpg"
            photos.append(Photo(key, Path(folder) / key, style, kind, "main"))
    return PhotoSet("myntra", "kind", tuple(photos), tuple(range(len(photos))))


def catalogue_records(
    photo_set: PhotoSet, folder: Path, *, without: Collection[str] = ()
) -> list[dict[str, object]]:
    """The set's products as catalogue records (absolute photo paths), photos whose key is in ``without`` left out.

    Luma: the store's own records (``open_catalogue``); Myntra: ``id``, ``title`` (display name),
    ``category_path`` (master category / sub-category / article type), ``colour`` and the one photo. A product
    left with no photo keeps its record without ``images``.
    """
    folder = Path(folder)
    dropped = {str(Path(folder) / key) for key in without}
    records: list[dict[str, object]] = []
    if photo_set.name == "luma":
        for product in open_catalogue(folder).records():
            if isinstance(product, Product):
                records.append(product.to_input(folder))
    else:
        with (folder / "styles.csv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                path = [(row.get(k) or "").strip() for k in ("masterCategory", "subCategory", "articleType")]
                records.append(
                    {
                        "id": row["id"].strip(),
                        "title": (row.get("productDisplayName") or "").strip() or row["id"].strip(),
                        "category_path": "/".join(level for level in path if level),
                        "colour": (row.get("baseColour") or "").strip() or None,
                        "images": [str(folder / "images" / f"{row['id'].strip()}.jpg")],
                    }
                )
    for record in records:
        listed = record.get("images")
        images = [str(i) for i in listed] if isinstance(listed, list) else []
        kept = [i for i in images if i not in dropped]
        if kept:
            record["images"] = kept
        else:
            record.pop("images", None)
    return [{k: v for k, v in r.items() if v is not None} for r in records]


def record_categories(records: Sequence[Mapping[str, object]]) -> dict[str, list[str]]:
    """Each record's ``categories`` as the index stores them (every level of every category path)."""
    out: dict[str, list[str]] = {}
    for record in records:
        product = validate_product(record)
        out[product.id] = product.categories
    return out


class MemoEncoder:
    """An encoder with a memory: vectors of images (or texts) it has seen come back without running the model.

    Same ``name``, ``version``, ``dim`` and ``modality`` as the wrapped encoder, so an index records the real
    encoder. Images are keyed by their decoded pixels (mode, size, bytes): the ingestion pipeline and the query
    layer decode photo files with :func:`hybrid_search.media.images.load_image`, so :meth:`remember` can pre-fill it
    with vectors computed elsewhere (``benchmarks/photos.py``'s cache) and an evaluation through the engine then
    embeds nothing twice.
    """

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.name, self.version, self.dim, self.modality = (
            encoder.name,
            encoder.version,
            encoder.dim,
            encoder.modality,
        )
        self._memory: dict[str, NDArray[np.float32]] = {}
        self.computed = 0

    @staticmethod
    def key(item: Any) -> str:
        if isinstance(item, str):
            return "text:" + hashlib.sha256(item.encode("utf-8")).hexdigest()
        head = f"{item.mode}:{item.size[0]}x{item.size[1]}:".encode()
        return "image:" + hashlib.sha256(head + item.tobytes()).hexdigest()

    def remember(self, item: Any, vector: NDArray[np.floating]) -> None:
        self._memory[self.key(item)] = np.asarray(vector, dtype=np.float32)

    def embed_documents(self, items: Sequence[Any]) -> NDArray[np.float32]:
        keys = [self.key(item) for item in items]
        todo = list(
            {key: n for n, key in reversed(list(enumerate(keys))) if key not in self._memory}.values()
        )
        if todo:
            vectors = self.encoder.embed_documents([items[n] for n in todo])
            self.computed += len(todo)
            for n, vector in zip(todo, vectors, strict=True):
                self._memory[keys[n]] = np.asarray(vector, dtype=np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[key] for key in keys])

    def embed_query(self, item: Any) -> NDArray[np.float32]:
        vector: NDArray[np.float32] = self.embed_documents([item])[0]
        return vector


@dataclass(frozen=True)
class _WithoutProduct(Filters):
    """The query's filters plus "not this product": the kind protocol searches every product but the query's own.

    A pre-filter like any other (every retriever's kNN skips it), so the query's own product neither fills a
    slot of the top 10 nor votes for the photo's kind in the kind-aware fusion.
    """

    exclude: str = ""

    def clauses(self, schema: FieldSchema = DEFAULT_SCHEMA) -> list[dict[str, Any]]:
        return [*super().clauses(schema), {"bool": {"must_not": [{"ids": {"values": [self.exclude]}}]}}]


def leave_out_groups(photo_set: PhotoSet, groups: int = 8) -> list[list[int]]:
    """The query photos split into ``groups`` (round-robin in catalogue order), for leave-out through an engine.

    An index cannot leave out a different photo for every query, so the engine evaluation builds one index per
    group without that group's photos and searches each group's queries in it. Round-robin keeps a product's
    query photos (alt1 and back lie next to each other) in different groups, so a query's product keeps its
    other views; other products miss only ~1/``groups`` of their alt1/back photos.
    """
    if groups < 1:
        raise ValidationError(f"groups must be >= 1, got {groups}", "groups")
    out: list[list[int]] = [[] for _ in range(min(groups, max(1, len(photo_set.queries))))]
    for n, query in enumerate(photo_set.queries):
        out[n % len(out)].append(query)
    return out


def engine_rankings(
    photo_set: PhotoSet,
    folder: Path,
    *,
    settings: Any,
    engine: Any,
    encoders: Mapping[str, Any],
    alias: str,
    groups: int = 8,
    batch_size: int = 64,
) -> dict[int, list[str]]:
    """Index the set through the product and search each query photo through the engine; rankings per query.

    Each index (``<alias>-g<n>``, created and deleted here) holds the set's catalogue records, embedded by the
    ingestion pipeline (:class:`hybrid_search.ingest.pipeline.Ingestor`, every photo a nested vector when the
    settings ask for it) with ``encoders``. Luma (item protocol): one index per :func:`leave_out_groups` group,
    without that group's query photos, so no query photo is ever searched; each query asks for 10 products.
    Myntra (kind protocol): one index of every photo; each query filters out its own product (a pre-filter, so
    it neither takes a slot nor votes for the photo's kind).
    Queries go through :class:`hybrid_search.search.SearchService` with the settings' defaults (a photo without
    words: kind-aware photo fusion).
    """
    from hybrid_search.encoders.roles import encoder_records
    from hybrid_search.engine import definition_from_settings
    from hybrid_search.ingest.pipeline import Ingestor
    from hybrid_search.search import SearchQuery, SearchService

    folder = Path(folder)
    parts = leave_out_groups(photo_set, groups) if photo_set.protocol == "item" else [list(photo_set.queries)]
    definition = definition_from_settings(settings, encoder_records(settings, encoders))
    ingestor = Ingestor(settings, engine, encoders)
    service = SearchService(settings, engine, encoders)
    rankings: dict[int, list[str]] = {}
    for n, part in enumerate(parts):
        without = [photo_set.photos[q].key for q in part] if photo_set.protocol == "item" else []
        records = catalogue_records(photo_set, folder, without=without)
        index = f"{alias}-g{n}"
        engine.create_index(index, definition)
        try:
            for start in range(0, len(records), batch_size):
                report = ingestor.ingest(records[start : start + batch_size], index=index, base_dir=folder)
                if report.failed:
                    raise ValidationError(f"{len(report.failed)} products not indexed: {report.failed[:3]}")
            engine.refresh(index)
            for query in part:
                photo = photo_set.photos[query]
                filters = _WithoutProduct(exclude=photo.doc_id) if photo_set.protocol == "kind" else Filters()
                response = service.search(
                    SearchQuery(image=photo.path.read_bytes(), filters=filters, size=10, facets=False),
                    index=index,
                )
                rankings[query] = [h.id for h in response.hits]
        finally:
            for name in engine.versions(index).values():
                engine.delete_index(name)
    return rankings


def product_ranking(
    scores: NDArray[np.floating] | Sequence[float],
    doc_ids: Sequence[str],
    *,
    exclude: int | None = None,
    k: int | None = None,
) -> list[str]:
    """Products by their best photo's score (descending; ties: first photo wins), ``exclude``-th photo left out.

    ``scores[i]`` is the query's score of photo ``i`` of product ``doc_ids[i]``. Returns at most ``k`` ids.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) != len(doc_ids):
        raise ValidationError(
            f"scores ({values.shape}) and doc_ids ({len(doc_ids)}) must be one score per photo", "scores"
        )
    order = np.argsort(-values, kind="stable")
    ranking: list[str] = []
    seen: set[str] = set()
    for i in order:
        if exclude is not None and i == exclude:
            continue
        doc = doc_ids[i]
        if doc in seen:
            continue
        seen.add(doc)
        ranking.append(doc)
        if k is not None and len(ranking) >= k:
            break
    return ranking


@dataclass(frozen=True)
class PhotoScores:
    """What one method scored on one photo set: the protocol's metrics averaged over its queries."""

    name: str
    queries: int
    metrics: Mapping[str, float]


def evaluate_rankings(photo_set: PhotoSet, rankings: Mapping[int, Sequence[str]]) -> PhotoScores:
    """Average the protocol's metrics over ``rankings`` (query photo index -> product ids, best first).

    item: ``recall@1`` and ``recall@10``; kind: ``precision@10``. Every query of the set must be ranked, and a
    ranking must not hold the query's own document for the kind protocol (it was left out of the search).
    """
    missing = [q for q in photo_set.queries if q not in rankings]
    if missing:
        raise ValidationError(f"{len(missing)} queries of {photo_set.name} have no ranking", "rankings")
    sums: dict[str, float] = {}
    for query in photo_set.queries:
        ranking = list(rankings[query])
        relevant = photo_set.relevant(query)
        if photo_set.protocol == "item":
            values = {
                "recall@1": recall_at_k(ranking, relevant, 1),
                "recall@10": recall_at_k(ranking, relevant, 10),
            }
        else:
            if photo_set.photos[query].doc_id in ranking:
                raise ValidationError(f"query {query} ranks its own photo: leave it out", "rankings")
            values = {"precision@10": precision_at_k(ranking, relevant, 10)}
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
    n = len(photo_set.queries)
    return PhotoScores(photo_set.name, n, {name: total / n for name, total in sums.items()})


__all__ = [
    "LUMA_QUERY_VIEWS",
    "MemoEncoder",
    "Photo",
    "PhotoScores",
    "PhotoSet",
    "catalogue_records",
    "engine_rankings",
    "evaluate_rankings",
    "leave_out_groups",
    "luma_photos",
    "myntra_photos",
    "photo_view",
    "product_ranking",
    "record_categories",
]
