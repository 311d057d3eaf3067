"""The HTTP endpoints: validate, call library code, return plain JSON. No engine types here.

Endpoints are plain ``def`` functions: FastAPI runs them in its thread pool, so model inference and engine
calls never block the event loop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from hybrid_search.api.errors import (
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaError,
)
from hybrid_search.api.ingest import enqueue_products
from hybrid_search.api.schemas import (
    ErrorOut,
    FacetsOut,
    HealthOut,
    ProductsBody,
    SearchBody,
    SearchOut,
    TaskOut,
    VoiceSearchOut,
)
from hybrid_search.api.state import ServicesDep
from hybrid_search.errors import HybridSearchError, ValidationError
from hybrid_search.search import Filters, SearchQuery

STATIC = Path(__file__).resolve().parent / "static"
router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (413, "Too large: the request or upload is over the limit."),
        (415, "Unsupported media type: wrong content type or file format."),
        (422, "Invalid input: the message says which field and why."),
        (503, "A dependency (engine, Redis, a model) is not available."),
    )
}
TASK_ID = re.compile(r"^[0-9a-f]{32}$")


def _read_upload(upload: UploadFile, limit: int, what: str) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"the {what} is larger than {limit // 1024} KiB; send a smaller file", field=what
        )
    if not data:
        raise ValidationError(f"the {what} file is empty", field=what)
    return data


def _json_form(value: str | None, name: str) -> Any:
    if value is None or not value.strip():
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ValidationError(f'{name} must be a JSON object, e.g. {{"colour": "Red"}}', field=name) from None


def _query(*, text: str | None, image: Any = None, filters: Any, weights: Any, **options: Any) -> SearchQuery:
    return SearchQuery(
        text=text,
        image=image,
        filters=Filters.from_dict(filters) if filters is not None else Filters(),
        weights=weights,
        **{k: v for k, v in options.items() if v is not None},
    )


# ---- the page ---------------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


# ---- search -----------------------------------------------------------------------------------------------


@router.post("/search", response_model=SearchOut, responses=ERRORS, tags=["search"])
def search(body: SearchBody, services: ServicesDep) -> dict[str, Any]:
    """Hybrid search by text: BM25 and text kNN fused into one ranking, with filters, facets and paging."""
    limit = services.settings.api_max_rank_window
    if body.rank_window is not None and body.rank_window > limit:
        raise ValidationError(
            f"rank_window {body.rank_window} is above this server's limit of {limit} candidates per retriever",
            field="rank_window",
        )
    query = _query(
        text=body.text,
        filters=body.filters.as_filters() if body.filters else None,
        weights=body.weights,
        fusion=body.fusion, normaliser=body.normaliser, rank_constant=body.rank_constant,
        rank_window=body.rank_window, page=body.page, size=body.size, explain=body.explain, facets=body.facets,
    )  # fmt: skip
    return services.search.search(query).to_dict()


@router.post("/search/image", response_model=SearchOut, responses=ERRORS, tags=["search"])
def search_image(
    services: ServicesDep,
    image: Annotated[UploadFile, File(description="A photo: JPEG, PNG, WebP or GIF.")],
    text: Annotated[
        str | None, Form(max_length=4000, description="Optional words: 'like this, but red'.")
    ] = None,
    filters: Annotated[str | None, Form(description='Filters as a JSON object: {"colour": "Red"}.')] = None,
    weights: Annotated[str | None, Form(description="Retriever weights as a JSON object.")] = None,
    fusion: Annotated[str | None, Form(description="linear, rrf, native or learned.")] = None,
    page: Annotated[int, Form(ge=1, le=10_000)] = 1,
    size: Annotated[int, Form(ge=1, le=100)] = 10,
    explain: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    """Search by photo, or photo and words: photo, colour and (with words) fused and text retrievers."""
    from hybrid_search.media.images import ACCEPTED_FORMATS, load_image, sniff_format

    settings = services.settings
    data = _read_upload(image, settings.api_max_upload_bytes, "image")
    kind = sniff_format(data)
    if kind not in ACCEPTED_FORMATS:
        raise UnsupportedMediaError(
            f"unsupported image: the upload is {kind}, not a JPEG, PNG, WebP or GIF photo", field="image"
        )
    photo = load_image(data, max_bytes=settings.api_max_upload_bytes, max_pixels=settings.image_max_pixels)
    query = _query(
        text=text, image=photo, filters=_json_form(filters, "filters"), weights=_json_form(weights, "weights"),
        fusion=fusion, page=page, size=size, explain=explain,
    )  # fmt: skip
    return services.search.search(query).to_dict()


@router.post("/search/voice", response_model=VoiceSearchOut, responses=ERRORS, tags=["search"])
def search_voice(
    services: ServicesDep,
    audio: Annotated[UploadFile, File(description="Speech: WAV, MP3, Ogg/Opus, WebM, FLAC or M4A.")],
    filters: Annotated[str | None, Form(description='Filters as a JSON object: {"colour": "Red"}.')] = None,
    fusion: Annotated[str | None, Form(description="linear, rrf, native or learned.")] = None,
    page: Annotated[int, Form(ge=1, le=10_000)] = 1,
    size: Annotated[int, Form(ge=1, le=100)] = 10,
    explain: Annotated[bool, Form()] = False,
    biasing: Annotated[bool, Form(description="Bias recognition towards the catalogue's words.")] = True,
) -> dict[str, Any]:
    """Search by voice: speech recognition (n-best, biased towards the catalogue), then a hybrid text search.

    The response carries the transcript searched for and the distinct alternatives the recogniser heard.
    """
    from hybrid_search.voice import AUDIO_FORMATS, VoiceSearch, sniff_audio

    settings = services.settings
    if services.transcriber is None:
        raise UnavailableError("voice search is switched off (HYBRID_SEARCH_VOICE_ENABLED)")
    data = _read_upload(audio, settings.api_max_upload_bytes, "audio")
    if sniff_audio(data) not in AUDIO_FORMATS:
        raise UnsupportedMediaError(
            "unsupported audio: send WAV, MP3, Ogg/Opus, WebM, FLAC or M4A speech", field="audio"
        )
    # checked before the audio is heard; the text is replaced by what was said
    query = _query(
        text="voice", filters=_json_form(filters, "filters"), weights=None, fusion=fusion, page=page, size=size,
        explain=explain,
    )  # fmt: skip
    voice = VoiceSearch(
        services.search,
        services.engine,
        services.transcriber,
        services.vocabulary if settings.voice_biasing else None,
        index=settings.index_alias,
        max_seconds=settings.voice_max_seconds,
    )
    return voice.search(data, query, biasing=biasing).to_dict()


@router.get("/facets", response_model=FacetsOut, responses=ERRORS, tags=["search"])
def facets(services: ServicesDep) -> dict[str, Any]:
    """Category, brand, colour and price facets of the whole catalogue (what the page's filters start from)."""
    from hybrid_search.engine import SearchRequest
    from hybrid_search.search.bodies import facet_aggs
    from hybrid_search.search.response import parse_facets, parse_total

    schema = services.search.schema_of(services.settings.index_alias)  # an attached shop index: its names
    response = services.engine.search(
        services.settings.index_alias, SearchRequest(size=0, aggs=facet_aggs(schema=schema), source=False)
    )
    return {"total": parse_total(response)[0], "facets": parse_facets(response.get("aggregations"), schema)}


@router.get(
    "/products/{product_id}/image",
    responses={404: {"model": ErrorOut, "description": "No such product or photo."}},
    response_class=Response,
    tags=["products"],
)
def product_image(product_id: str, services: ServicesDep) -> Response:
    """A product's main photo (a local catalogue file from an allowed folder, or a redirect to its URL).

    On an attached shop index the product is named by the shop's id and its photo is located by the attachment's
    image source: a path under its ``images.root`` (read with the same checks as the own catalogue's photos), or
    a redirect to the ``url_base`` URL or the absolute URL the shop stores.
    """
    from hybrid_search.catalog.attachment import image_ref
    from hybrid_search.media.images import sniff_format
    from hybrid_search.media.photos import read_photo

    settings = services.settings
    if not product_id or len(product_id) > 512:
        raise NotFoundError("no such product", field="product_id")
    profile = services.search.profile(settings.index_alias)
    doc = services.engine.get_document(settings.index_alias, product_id)
    attachment = profile.attachment
    roots = list(settings.image_roots)
    if attachment is None:
        image = profile.schema.image
        ref = (doc or {}).get(image) if image is not None else None
    else:
        id_field = attachment.schema.keyword_field("id")
        if doc is None and id_field is not None:  # the shop's id is not its _id
            from hybrid_search.engine import SearchRequest

            found = services.engine.search(
                settings.index_alias, SearchRequest(filter=[{"term": {id_field: product_id}}], size=1)
            )
            doc = next((h.get("_source") for h in found.get("hits", {}).get("hits", [])), None)
        ref = image_ref(doc, attachment.schema, attachment.images) if doc is not None else None
        if attachment.images.root is not None:
            roots.insert(0, attachment.images.root)
    if not isinstance(ref, str) or not ref:
        raise NotFoundError(f"product {product_id!r} has no photo" if doc else f"no product {product_id!r}")
    if ref.lower().startswith(("http://", "https://")):
        return RedirectResponse(ref, status_code=307)
    for root in roots:
        try:
            data = read_photo(ref, base_dir=root, settings=settings)
        except ValidationError:
            continue
        kind = sniff_format(data)
        return Response(data, media_type=f"image/{kind}", headers={"Cache-Control": "max-age=3600"})
    raise NotFoundError(
        f"the photo of {product_id!r} is not in an allowed folder (HYBRID_SEARCH_IMAGE_ROOTS)"
    )


# ---- ingestion --------------------------------------------------------------------------------------------


@router.post("/products", status_code=202, response_model=TaskOut, responses=ERRORS, tags=["products"])
def add_products(body: ProductsBody, services: ServicesDep) -> JSONResponse:
    """Validate products and enqueue them for the workers (embed + index); follow the task at ``/tasks/{id}``."""
    settings = services.settings
    if len(body.products) > settings.api_max_products:
        raise PayloadTooLargeError(
            f"{len(body.products)} products in one request (limit {settings.api_max_products}); send several",
            field="products",
        )
    job = enqueue_products(services, body.products)
    state = services.tracker.job(job)
    return JSONResponse(_task(job, state, []), status_code=202)


def _task(job: str, state: dict[str, Any], letters: list[dict[str, Any]]) -> dict[str, Any]:
    batches, done = int(state.get("batches", 0)), int(state.get("batches_done", 0))
    status = "done" if done >= batches else ("running" if done else "queued")
    return {
        "task_id": job,
        "status": status,
        "index": str(state.get("index", "")),
        "products": int(state.get("total", 0)),
        "batches": batches,
        "batches_done": done,
        **{
            k: int(state.get(k, 0))
            for k in ("indexed", "failed", "unchanged", "text_embedded", "images_embedded")
        },
        "dead_letters": letters,
        "status_url": f"/tasks/{job}",
    }


@router.get(
    "/tasks/{task_id}",
    response_model=TaskOut,
    responses={404: {"model": ErrorOut, "description": "No such task."}, **ERRORS},
    tags=["products"],
)
def task(task_id: str, services: ServicesDep) -> dict[str, Any]:
    """Progress of an ingestion task: batches done, products indexed, and the ones refused with reasons."""
    if not TASK_ID.match(task_id):
        raise NotFoundError(f"no task {task_id[:40]!r} (task ids are 32 hex digits)", field="task_id")
    try:
        state = services.tracker.job(task_id)
        letters = []
        if state:
            letters = [
                d
                for d in services.tracker.dead_letters(str(state.get("index")), 1000)
                if d.get("job") == task_id
            ]
    except OSError as exc:
        from hybrid_search.ingest.tracking import QueueUnavailableError

        raise QueueUnavailableError(f"cannot reach Redis: {exc}") from None
    if not state:
        raise NotFoundError(
            f"no task {task_id!r} (unknown, or finished more than a week ago)", field="task_id"
        )
    return _task(task_id, state, letters[:100])


# ---- health -----------------------------------------------------------------------------------------------


def _check(name: str, components: dict[str, dict[str, Any]], probe: Any) -> None:
    try:
        up, detail = probe()
    except (HybridSearchError, OSError) as exc:
        up, detail = False, str(exc)[:300]
    except Exception as exc:
        up, detail = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    components[name] = {"up": bool(up), "detail": detail}


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}}, tags=["health"])
def health(services: ServicesDep) -> JSONResponse:
    """Engine (and the index), Redis, ingestion workers and models; 503 when any of them is down."""
    settings = services.settings
    components: dict[str, dict[str, Any]] = {}

    def engine() -> tuple[bool, str]:
        h = services.engine.health()
        documents = services.engine.count(settings.index_alias)
        detail = f"{h.engine} {h.version} {h.status}, {h.number_of_nodes} node(s); {settings.index_alias}: {documents} products"
        return h.status in ("green", "yellow"), detail

    def redis() -> tuple[bool, str]:
        services.tracker.redis.ping()
        return True, settings.redis_url.rsplit("@", 1)[-1]

    def workers() -> tuple[bool, str]:
        replies = services.celery.control.inspect(timeout=2.0).active_queues() or {}
        names = [
            n for n, queues in replies.items() if any(q.get("name") == settings.ingest_queue for q in queues)
        ]
        if not names:
            return (
                False,
                f"no worker consumes the queue {settings.ingest_queue!r} (start: hybrid-search workers)",
            )
        return True, f"{len(names)} worker(s) on {settings.ingest_queue!r}"

    def models() -> tuple[bool, str]:
        if services.problems:
            return False, "; ".join(f"{k}: {v}" for k, v in services.problems.items())
        names = [f"{role} {getattr(e, 'name', role)}" for role, e in services.search.encoders.items()]
        if services.transcriber is not None:
            loaded = "loaded" if services.transcriber.loaded else "loads on first use"
            names.append(f"speech {services.transcriber.name} ({loaded})")
        return True, ", ".join(names)

    _check("engine", components, engine)
    _check("redis", components, redis)
    _check("workers", components, workers)
    _check("models", components, models)
    ok = all(c["up"] for c in components.values())
    body = {"status": "ok" if ok else "unavailable", "components": components}
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


__all__ = ["router"]
