"""The HTTP API's request and response bodies (pydantic models: validation and the OpenAPI schema at /docs).

Request models only check shape and types; the meaning (a query needs text or a photo, known retrievers,
filter values, a page inside the rank window) is checked by :class:`hybrid_search.search.SearchQuery`, so the
CLI, the Python API and HTTP refuse the same things with the same messages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FilterValue = str | list[str]


class FiltersBody(BaseModel):
    """Restrictions every retriever applies (a list matches any of its values; prices are inclusive)."""

    model_config = ConfigDict(extra="forbid")

    category: FilterValue | None = Field(None, examples=["Jackets"])
    brand: FilterValue | None = None
    colour: FilterValue | None = Field(None, examples=[["Red", "Black"]])
    material: FilterValue | None = None
    size: FilterValue | None = None
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_max: float | None = Field(None, ge=0, allow_inf_nan=False, examples=[80])
    attributes: dict[str, FilterValue] | None = Field(None, examples=[{"climate": "Cool"}])

    def as_filters(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SearchBody(BaseModel):
    """A text search (``POST /search``); give ``text`` (photos go to ``POST /search/image``)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=4000, examples=["waterproof jacket for hiking"])
    filters: FiltersBody | None = None
    weights: dict[str, float] | None = Field(
        None,
        description="Retriever weights (bm25, text_knn, ...); 0 turns one off.",
        examples=[{"bm25": 0.7}],
    )
    fusion: Literal["linear", "rrf", "native", "learned"] | None = None
    normaliser: Literal["minmax", "zscore", "l2", "dbsf"] | None = None
    rank_constant: float | None = Field(None, gt=0, allow_inf_nan=False)
    rank_window: int | None = Field(None, ge=1, le=10_000)
    page: int = Field(1, ge=1, le=10_000)
    size: int = Field(10, ge=1, le=100)
    explain: bool = Field(False, description="Each hit's score broken down by retriever.")
    facets: bool = Field(True, description="Count category, brand, colour and price facets.")


class HitOut(BaseModel):
    id: str
    rank: int
    score: float
    fields: dict[str, Any]
    explain: dict[str, dict[str, Any]] | None = None


class SearchOut(BaseModel):
    """A page of hits; ``explain`` per hit when asked for; ``facets`` count the filtered candidates."""

    hits: list[HitOut]
    total: int
    total_relation: str
    page: int
    size: int
    available: int
    fusion: dict[str, Any]
    retrievers: dict[str, dict[str, Any]]
    facets: dict[str, list[dict[str, Any]]] | None = None
    timings: dict[str, Any]


class AlternativeOut(BaseModel):
    text: str = Field(description="The hypothesis as product titles write it: '3/4 in. plywood'.")
    score: float = Field(description="Average log-probability per token (higher is likelier).")
    catalogue_score: float | None = Field(None, description="Top BM25 score of this text on the index.")
    spoken: str = Field(
        description="The hypothesis as the recogniser wrote it: 'three quarter inch plywood'."
    )
    model: str | None = Field(None, description="The speech model that heard it (the likeliest, if several).")


class TranscriptOut(BaseModel):
    text: str = Field(description="What was searched for: the hypothesis the catalogue supports best.")
    alternatives: list[AlternativeOut] = Field(description="Distinct n-best hypotheses, likeliest first.")
    seconds: float
    no_speech_prob: float
    biased: bool = Field(description="Whether recognition was biased towards the catalogue's words.")
    timings: dict[str, float]


class VoiceSearchOut(SearchOut):
    transcript: TranscriptOut


class ProductsBody(BaseModel):
    """Products to ingest, in the catalogue format (``id`` and ``title`` required; see the README)."""

    products: list[dict[str, Any]] = Field(
        min_length=1,
        examples=[[{"id": "MH01", "title": "Chaz Kangeroo Hoodie", "price": 52, "colour": ["Black"],
                    "category_path": "Men/Tops/Hoodies & Sweatshirts", "images": ["https://example.com/mh01.jpg"]}]],
    )  # fmt: skip


class TaskOut(BaseModel):
    task_id: str
    status: Literal["queued", "running", "done"]
    index: str
    products: int
    batches: int
    batches_done: int
    indexed: int
    failed: int
    unchanged: int
    text_embedded: int
    images_embedded: int
    dead_letters: list[dict[str, Any]] = Field(default_factory=list)
    status_url: str


class ComponentOut(BaseModel):
    up: bool
    detail: str


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    components: dict[str, ComponentOut]


class FacetsOut(BaseModel):
    total: int
    facets: dict[str, list[dict[str, Any]]]


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    error: ErrorDetail


__all__ = [
    "AlternativeOut",
    "ComponentOut",
    "ErrorOut",
    "FacetsOut",
    "FiltersBody",
    "HealthOut",
    "HitOut",
    "ProductsBody",
    "SearchBody",
    "SearchOut",
    "TaskOut",
    "TranscriptOut",
    "VoiceSearchOut",
]
