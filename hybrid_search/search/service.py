"""The one search entry point: :class:`SearchService` runs the stages of a search, top to bottom.

    service = SearchService.from_settings(settings)
    response = service.search(SearchQuery(text="red long coat", filters=Filters(colour="red")))

:meth:`SearchService.search` is the whole pipeline (:mod:`hybrid_search.search` draws it); each stage is a
module with one job that takes the previous stage's value and returns its own, and a query passes through each
once. The service holds what outlives a query: the settings, the engine adapter, the encoders, the index's
vector records (read once per index and kept for ``VECTOR_RECORDS_TTL_S``), its tuned configuration and models
(read with the index's ``_meta``, which the engine adapter caches), the field schema of the indices it searches
(:class:`~hybrid_search.catalog.schema.FieldSchema`: which engine field serves each product role), and the
display cache.

Each query first resolves the profile of its index (:mod:`hybrid_search.search.profile`): the layer's own index,
or a shop's index whose attachment its ``_meta`` records (read with the ``_meta`` the engine adapter caches, and
parsed again only when it changes). The profile's schema, vector fields, lexical query and kNN mode are then what
every stage reads.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_search.catalog.attachment import AttachConfig
from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine import SearchEngine, create_engine
from hybrid_search.engine.definition import vector_roles
from hybrid_search.errors import ConfigurationError, ValidationError
from hybrid_search.ranking.adaptive import AdaptiveFusion
from hybrid_search.ranking.fusion import Hit
from hybrid_search.ranking.learned import LearnedFusion
from hybrid_search.ranking.rankers import RankingSources, rank
from hybrid_search.search.display import DisplayCache
from hybrid_search.search.encode import encode
from hybrid_search.search.plan import plan
from hybrid_search.search.present import present
from hybrid_search.search.profile import IndexProfile, attached_profile, lexical_clause, own_profile
from hybrid_search.search.query import SearchQuery
from hybrid_search.search.response import SearchResponse, elapsed_ms
from hybrid_search.search.retrieve import retrieve, retrieve_lists
from hybrid_search.search.understand import StructuredQuery, default_weights, understand
from hybrid_search.settings import Settings

VECTOR_RECORDS_TTL_S = 60.0
TUNED_KEYS: tuple[str, ...] = ("fusion", "normaliser", "rank_constant", "rank_window", "weights")


def search_encoders(settings: Settings) -> dict[str, Any]:
    """The configured encoders by role, plus the CLIP towers that make cross-modal retrieval possible.

    ``image_text``: the text tower of a ``clip:`` image encoder (query text into the photo vectors' space);
    ``text_image``: the image tower of a ``clip:`` text encoder. Models load on first use.
    """
    from hybrid_search.encoders import get_encoder
    from hybrid_search.encoders.roles import configured_encoders

    encoders = configured_encoders(settings)
    if settings.image_encoder.strip().lower().startswith("clip:"):
        encoders["image_text"] = get_encoder(settings.image_encoder, device=settings.device, modality="text")
    if settings.text_encoder.strip().lower().startswith("clip:"):
        encoders["text_image"] = get_encoder(settings.text_encoder, device=settings.device, modality="image")
    return encoders


def apply_search_threads(settings: Settings) -> None:
    """Set torch's intra-op threads for a process that serves searches (``search_torch_threads``; 0: leave).

    Call it once at start-up (the CLI ``search`` command, an API lifespan), not in a process that also embeds
    catalogue batches. A query embeds one short item, so intra-op parallelism gains little on an idle machine,
    while on a busy or oversubscribed CPU (concurrent requests, other processes) the threads of every matrix
    multiply wait for each other and query encoding gets many times slower. Concurrency comes from serving
    requests in parallel instead (docs/search.md has the measurement). No-op without torch.
    """
    if settings.search_torch_threads < 1:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the workers extra
        return
    if torch.get_num_threads() != settings.search_torch_threads:
        torch.set_num_threads(settings.search_torch_threads)


class SearchService:
    """Hybrid product search over one engine; safe to share between threads.

    ``use_tuned=False``: ignore the index's tuned configuration, so what a query leaves unset always comes
    from the settings (the evaluation runner compares fixed methods this way). ``schema``: the field names of
    the indices it searches (default: the layer's own index); an attached index brings its own
    (:meth:`profile`).
    """

    def __init__(
        self,
        settings: Settings,
        engine: SearchEngine,
        encoders: Mapping[str, Any],
        *,
        use_tuned: bool = True,
        schema: FieldSchema = DEFAULT_SCHEMA,
    ) -> None:
        self.settings = settings
        self.use_tuned = use_tuned
        self.schema = schema
        self.engine = engine
        self.encoders = dict(encoders)
        self._role_fields = {
            str(spec.get("source")): name for name, spec in vector_roles(settings.mappings_dir).items()
        }
        self._records: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._own = own_profile(schema, self._role_fields)
        self._profiles: dict[str, tuple[dict[str, Any], IndexProfile]] = {}
        self._lock = threading.Lock()
        self.display_cache = DisplayCache(settings.search_display_cache)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, engine: SearchEngine | None = None, use_tuned: bool = True
    ) -> SearchService:
        """The service of ``settings``: their engine (``engine`` when given) and :func:`search_encoders`."""
        return cls(
            settings,
            engine if engine is not None else create_engine(settings),
            search_encoders(settings),
            use_tuned=use_tuned,
        )

    # ---- the pipeline ---------------------------------------------------------------------------------

    def search(self, query: SearchQuery, *, index: str | None = None) -> SearchResponse:
        """Run ``query`` on ``index`` (default: the settings' alias), one stage after the other."""
        started = time.perf_counter()
        index = index or self.settings.index_alias
        profile = self.profile(index)
        structured = self._understand(query, index, profile)
        records = self.vector_records(index)
        planned = plan(structured, encoders=self.encoders, records=records, role_fields=profile.role_fields,
                       exact=profile.exact_knn)  # fmt: skip
        vectors = encode(planned, self.encoders, records, self.settings, index=index)
        retrieved = retrieve(self.engine, index, planned, vectors)
        sources = self._sources(index, profile.schema)
        t = time.perf_counter()
        ranking = rank(planned.ranking, retrieved.candidates, sources)
        timings = {
            "encode": dict(vectors.per_role),
            "encode_ms": vectors.ms,
            "engine_ms": retrieved.engine_ms,
            "fusion_ms": 0.0 if retrieved.paged else elapsed_ms(t),  # native: the engine fused
        }
        return present(
            self.engine, index, planned, vectors, retrieved, ranking,
            display=self.settings.search_display, cache=self.display_cache, timings=timings, started=started,
        )  # fmt: skip

    def retrieve(self, query: SearchQuery, *, index: str | None = None) -> dict[str, list[Hit]]:
        """Each retriever's own top ``rank_window`` for ``query``, unfused: ``{retriever: [Hit(id, raw score)]}``.

        Exactly the lists ``linear`` and ``rrf`` fuse for this query (same retrievers with a weight > 0, query
        vectors, filters and window, in the engine's order), fetched in one ``_msearch`` without facets.
        Fusing them with :func:`hybrid_search.ranking.fusion.fuse` and the query's weights gives the ranking
        :meth:`search` returns, so offline tuning can try many fusion settings on one fetch per query.
        """
        index = index or self.settings.index_alias
        profile = self.profile(index)
        structured = self._understand(query, index, profile)
        records = self.vector_records(index)
        planned = plan(structured, encoders=self.encoders, records=records, role_fields=profile.role_fields,
                       exact=profile.exact_knn)  # fmt: skip
        vectors = encode(planned, self.encoders, records, self.settings, index=index)
        retrieved = retrieve_lists(self.engine, index, planned, vectors, facets=False)
        return {name: list(hits) for name, hits in retrieved.candidates.lists.items()}

    def _understand(self, query: SearchQuery, index: str, profile: IndexProfile) -> StructuredQuery:
        """Stage 1 over the index's profile; an attached index's stored lexical template is rendered first
        (one more round trip)."""
        return understand(
            query, self.settings, tuned=self.tuned(index), schema=profile.schema,
            lexical=lexical_clause(self.engine, profile, query.text), attached=profile.attachment,
        )  # fmt: skip

    def _sources(self, index: str, schema: FieldSchema) -> RankingSources:
        """What a ranker may read from ``index``: its models (read only when used) and stored fields."""
        return RankingSources(
            adaptive_model=functools.partial(self.adaptive, index),
            learned_model=functools.partial(self._learned_model, index),
            fetch_titles=functools.partial(self._titles, index, schema.title),
        )

    def _titles(self, index: str, title: str, ids: Sequence[str]) -> dict[str, str | None]:
        """The stored titles (field ``title``) of ``ids`` in ``index`` (those it has)."""
        return {doc: fields.get(title) for doc, fields in self.engine.get_fields(index, ids, [title]).items()}

    # ---- the index ------------------------------------------------------------------------------------

    def profile(self, index: str | None = None) -> IndexProfile:
        """How ``index`` (default: the settings' alias) is searched: the attachment its ``_meta`` records
        (a shop's index), else the layer's own index with this service's schema.

        Read with the index's ``_meta``, which the engine adapter caches; the attachment is parsed again only
        when it changed. A damaged attachment is a ``ConfigurationError``.
        """
        index = index or self.settings.index_alias
        data = self.engine.attachment_meta(index)
        if not data:
            return self._own
        with self._lock:
            cached = self._profiles.get(index)
        if cached is not None and cached[0] == data:
            return cached[1]
        profile = attached_profile(AttachConfig.from_meta(data))
        with self._lock:
            self._profiles[index] = (dict(data), profile)
        return profile

    def schema_of(self, index: str | None = None) -> FieldSchema:
        """The field roles of ``index`` (:meth:`profile`)."""
        return self.profile(index).schema

    # ---- configuration --------------------------------------------------------------------------------

    def default_weights(self) -> dict[str, float]:
        """The settings' weight of each retriever."""
        return default_weights(self.settings)

    def vector_records(self, index: str) -> dict[str, dict[str, Any]]:
        """The index's vector fields ``{field: {"encoder", "version", "dim", ...}}``, cached for a minute."""
        now = time.monotonic()
        with self._lock:
            cached = self._records.get(index)
        if cached is not None and now - cached[0] < VECTOR_RECORDS_TTL_S:
            return cached[1]
        records = self.engine.vector_records(index)
        with self._lock:
            self._records[index] = (now, records)
        return records

    def tuned(self, index: str) -> dict[str, Any]:
        """The index's tuned configuration (``hybrid-search tune``), checked; ``{}`` when it has none.

        Keys used: ``fusion``, ``normaliser``, ``rank_constant``, ``rank_window``, ``weights`` (others, such as
        how it was tuned, are ignored here). Read with the index's ``_meta`` (cached by the engine adapter).
        """
        config = self.engine.tuned_config(index) if self.use_tuned else None
        if not config:
            return {}
        used = {k: config[k] for k in TUNED_KEYS if config.get(k) is not None}
        try:
            SearchQuery(text="check", size=1, **used)
        except ValidationError as exc:
            raise ConfigurationError(
                f"the tuned configuration saved in {index}'s _meta is invalid ({exc}); run hybrid-search tune "
                "again or remove it (hybrid-search untune)"
            ) from None
        return used

    def adaptive(self, index: str) -> AdaptiveFusion | None:
        """The index's query-adaptive fusion model (``hybrid-search tune --adaptive``), or None."""
        config = self.engine.tuned_config(index) if self.use_tuned else None
        data = (config or {}).get("adaptive")
        if not data:
            return None
        try:
            return AdaptiveFusion.from_dict(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"the adaptive fusion model saved in {index}'s _meta is invalid ({exc}); run hybrid-search tune "
                "--adaptive again or remove it (hybrid-search untune)"
            ) from None

    def learned(self, index: str) -> LearnedFusion | None:
        """The index's learned fusion model (``hybrid-search tune --learned``), or None.

        Read whatever ``use_tuned`` says: a query that asks for ``fusion="learned"`` asks for this model.
        """
        data = (self.engine.tuned_config(index) or {}).get("learned")
        if not data:
            return None
        try:
            return LearnedFusion.from_dict(data)
        except ValidationError as exc:
            raise ConfigurationError(
                f"the learned fusion model saved in {index}'s _meta is invalid ({exc}); run hybrid-search tune "
                "--learned again or remove it (hybrid-search untune)"
            ) from None

    def _learned_model(self, index: str) -> LearnedFusion:
        """The model a ``learned`` query is ranked by; refused when the index has none."""
        model = self.learned(index)
        if model is None:
            raise ValidationError(
                f"{index} has no learned fusion model: train one with hybrid-search tune --learned, or use "
                "another fusion",
                field="fusion",
            )
        return model


__all__ = ["TUNED_KEYS", "VECTOR_RECORDS_TTL_S", "SearchService", "apply_search_threads", "search_encoders"]
