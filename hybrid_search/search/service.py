"""The one search entry point: :class:`SearchService` turns a :class:`SearchQuery` into a :class:`SearchResponse`.

    service = SearchService(settings, engine, search_encoders(settings))
    response = service.search(SearchQuery(text="red long coat", filters=Filters(colour="red")))

Steps of :meth:`SearchService.search`:

1. resolve the fusion method, normaliser, rank constant and rank window (query, else settings) and refuse a page
   beyond the window;
2. choose the retrievers (:mod:`.plan`) from the query's inputs, the configured encoders, the vector fields
   the index has and the weights;
3. encode the query once per encoder (text, photo, colour histogram, CLIP towers); the query image is loaded
   with the same size and pixel limits as catalogue photos; each encoder must be the one the index records
   for the field it searches (else :class:`EncoderMismatchError`);
4. ``linear`` / ``rrf``: **one** ``_msearch``: each retriever's top ``rank_window`` under the filters, plus a
   size-0 request that counts and facets the candidate set; then client-side fusion
   (:mod:`hybrid_search.ranking.fusion`; for a photo without words, ``linear`` is the kind-aware photo fusion of
   :mod:`.photo_fusion`) and the requested page is cut from the fused list, so every page of a
   query comes from the same fused ranking;
   ``native``: one request whose score is the engine's sum of the weighted BM25 and kNN scores, paged by the
   engine, facets in the same request.
5. the page's display fields: retrieval reads doc values only (never a hit's stored ``_source``, which holds
   its vectors); with ``search_display = "source"`` (default) one ``_mget`` of the page's ids then reads the
   exact stored fields.

The index's vector records (``_meta``) are read once per index and kept for ``VECTOR_RECORDS_TTL_S``.
Only :mod:`hybrid_search.engine` talks to the engine; this module sees plain dicts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_search.encoders.roles import PHOTO_ROLES, fused_ref
from hybrid_search.engine import EncoderRef, SearchEngine, SearchRequest
from hybrid_search.engine.definition import vector_roles
from hybrid_search.errors import ConfigurationError, EncoderMismatchError, ValidationError
from hybrid_search.ranking.adaptive import AdaptiveFusion, query_features
from hybrid_search.ranking.fusion import FusedHit, Hit, fuse
from hybrid_search.ranking.learned import DENSE as LEARNED_DENSE
from hybrid_search.ranking.learned import LEXICAL as LEARNED_LEXICAL
from hybrid_search.ranking.learned import LearnedFusion
from hybrid_search.ranking.photo_fusion import DEFAULT_EPSILON, KIND, photo_fusion
from hybrid_search.search.bodies import DISPLAY_FIELDS, REVISION_FIELD, display_from_docvalues
from hybrid_search.search.display import DisplayCache, revision_key
from hybrid_search.search.plan import (
    SPECS,
    Retriever,
    choose_retrievers,
    facets_request,
    native_search_request,
    retriever_request,
)
from hybrid_search.search.query import SearchQuery, check_page
from hybrid_search.search.response import SearchHit, SearchResponse, parse_facets, parse_total
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
    catalogue batches. A query embeds one short item: intra-op parallelism gains ~1 ms on an idle machine, while
    on a busy or oversubscribed CPU (concurrent requests, other processes) the threads of every matrix multiply
    wait for each other: MiniLM query encoding measured p50 17 ms with 1 thread vs 180 ms with 2 on a loaded
    2-core host. Concurrency comes from serving requests in parallel instead. No-op without torch.
    """
    if settings.search_torch_threads < 1:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch ships with the workers extra
        return
    if torch.get_num_threads() != settings.search_torch_threads:
        torch.set_num_threads(settings.search_torch_threads)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class SearchService:
    """Hybrid product search over one engine; safe to share between threads.

    ``use_tuned=False``: ignore the index's tuned configuration, so what a query leaves unset always comes
    from the settings (the evaluation runner compares fixed methods this way).
    """

    def __init__(
        self,
        settings: Settings,
        engine: SearchEngine,
        encoders: Mapping[str, Any],
        *,
        use_tuned: bool = True,
    ) -> None:
        self.settings = settings
        self.use_tuned = use_tuned
        self.engine = engine
        self.encoders = dict(encoders)
        self._role_fields = {
            str(spec.get("source")): name for name, spec in vector_roles(settings.mappings_dir).items()
        }
        self._records: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self.display_cache = DisplayCache(settings.search_display_cache)

    # ---- configuration --------------------------------------------------------------------------------

    def default_weights(self) -> dict[str, float]:
        s = self.settings
        return {
            "bm25": s.fusion_bm25_weight,
            "text_knn": s.fusion_text_knn_weight,
            "image_knn": s.fusion_image_knn_weight,
            "colour_knn": s.fusion_colour_knn_weight,
            "fused_knn": s.fusion_fused_knn_weight,
            "text_to_image": s.fusion_cross_modal_weight,
            "image_to_text": s.fusion_cross_modal_weight,
        }

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

    def _index_fields(self, index: str) -> dict[str, str]:
        """Vector role -> field name, for the vector fields the index has.

        An index with every photo of a product (``photos.image_vector``, ``photos.colour_vector``) answers the
        image and colour retrievers from those: a product then scores its best photo.
        """
        records = self.vector_records(index)
        fields = {role: name for role, name in self._role_fields.items() if name in records}
        for photo_role, role in PHOTO_ROLES.items():
            if photo_role in fields:
                fields[role] = fields[photo_role]
        return fields

    # ---- search ---------------------------------------------------------------------------------------

    def search(self, query: SearchQuery, *, index: str | None = None) -> SearchResponse:
        """Run ``query`` on ``index`` (default: the settings' alias). Module docstring: the steps."""
        started = time.perf_counter()
        index = index or self.settings.index_alias
        method, normaliser, rank_constant, window, retrievers = self._configure(query, index)
        timings: dict[str, Any] = {}
        vectors = self._encode(query, retrievers, index, timings)
        filters = query.filters.clauses()
        fusion_info: dict[str, Any] = {
            "method": method,
            "normaliser": normaliser if method == "linear" else None,
            "rank_constant": rank_constant if method == "rrf" else None,
            "rank_window": window,
            "weights": {r.name: r.weight for r in retrievers},
        }
        if method == "native":
            response = self._native(query, retrievers, vectors, window, filters, index, timings)
        else:
            response = self._client_side(
                query, retrievers, vectors, window, filters, index, timings,
                method=method, normaliser=normaliser, rank_constant=rank_constant,
            )  # fmt: skip
        if method == "learned":
            if response.get("learned_fallback"):  # this query cannot be ranked by the model: linear fusion
                fusion_info.update(
                    method="linear", normaliser=normaliser, learned=response["learned_fallback"]
                )
            else:
                fusion_info["learned"] = True  # weights do not apply: the model ranks
        if response.get("adaptive_weights"):  # query-adaptive fusion chose this query's weights
            fusion_info["weights"] = {k: round(v, 6) for k, v in response["adaptive_weights"].items()}
            fusion_info["adaptive"] = True
        if response.get("photo_kind") is not None:  # kind-aware photo fusion ran: its term and parameters
            fusion_info["weights"][KIND] = response["photo_kind"]["weight"]
            fusion_info["photo_kind"] = response["photo_kind"]
        timings["total_ms"] = _ms(started)
        return SearchResponse(
            hits=response["hits"],
            total=response["total"],
            total_relation=response["total_relation"],
            page=query.page,
            size=query.size,
            available=response["available"],
            fusion=fusion_info,
            retrievers=response["retrievers"],
            facets=response["facets"],
            timings=timings,
        )

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

    def _learned_model(
        self, query: SearchQuery, index: str, lists: Mapping[str, Sequence[Hit]]
    ) -> tuple[LearnedFusion | None, str | None]:
        """The model for a ``learned`` query, or None and why it falls back to ``linear``.

        It ranks text queries (no photo) answered by BM25 and text kNN; other retrievers' lists are not used.
        """
        if query.text is None or query.image is not None:
            return None, "learned fusion ranks text queries without a photo"
        if not lists.get(LEARNED_LEXICAL) and not lists.get(LEARNED_DENSE):
            return None, f"learned fusion needs the {LEARNED_LEXICAL} or {LEARNED_DENSE} retriever"
        model = self.learned(index)
        if model is None:
            raise ValidationError(
                f"{index} has no learned fusion model: train one with hybrid-search tune --learned, or use "
                "another fusion",
                field="fusion",
            )
        return model, None

    def _titles(
        self, index: str, lists: Mapping[str, Sequence[Hit]], sources: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, str | None]:
        """Titles of the BM25 and text kNN candidates: doc values, and ``_source`` for titles too long for them."""
        ids = {h.doc_id for name in (LEARNED_LEXICAL, LEARNED_DENSE) for h in lists.get(name, ())}
        titles = {doc: sources.get(doc, {}).get("title") for doc in ids}
        missing = [doc for doc, title in titles.items() if title is None]
        if missing:
            found = self.engine.get_fields(index, missing, ["title"])
            titles.update({doc: found.get(doc, {}).get("title") for doc in missing})
        return titles

    def _adaptive_weights(
        self,
        query: SearchQuery,
        index: str,
        method: str,
        normaliser: str,
        lists: Mapping[str, Sequence[Hit]],
        weights: Mapping[str, float],
    ) -> dict[str, float] | None:
        """Weights with BM25's and text kNN's shares predicted for this query, when the index has a model for
        this fusion and the query set no weights of its own; their sum is kept, other retrievers untouched."""
        if query.weights is not None or query.text is None or method != "linear" or normaliser != "minmax":
            return None
        if not {"bm25", "text_knn"} <= set(weights):
            return None
        model = self.adaptive(index)
        if model is None:
            return None
        share = model.predict(query_features(query.text, lists.get("bm25", []), lists.get("text_knn", [])))
        total = weights["bm25"] + weights["text_knn"]
        return {**weights, "bm25": total * (1.0 - share), "text_knn": total * share}

    def _configure(self, query: SearchQuery, index: str) -> tuple[str, str, float, int, list[Retriever]]:
        """Fusion method, normaliser, rank constant, window and retrievers of ``query`` on ``index``.

        Each parameter the query leaves unset comes from the index's tuned configuration when it has one
        (:meth:`tuned`), else from the settings; tuned weights replace the settings' default weights of the
        retrievers they name.
        """
        tuned = self.tuned(index)
        settings = self.settings
        method = query.fusion or tuned.get("fusion") or settings.fusion_method
        normaliser = query.normaliser or tuned.get("normaliser") or settings.fusion_normaliser
        if query.rank_constant is not None:
            rank_constant = query.rank_constant
        else:
            rank_constant = tuned.get("rank_constant", settings.fusion_rank_constant)
        window = query.rank_window or tuned.get("rank_window") or settings.fusion_rank_window
        check_page(query.page, query.size, window)
        retrievers = choose_retrievers(
            has_text=query.text is not None,
            has_image=query.image is not None,
            defaults={**self.default_weights(), **tuned.get("weights", {})},
            weights=query.weights,
            encoders=list(self.encoders),
            fields=self._index_fields(index),
        )
        return method, normaliser, rank_constant, window, retrievers

    def retrieve(self, query: SearchQuery, *, index: str | None = None) -> dict[str, list[Hit]]:
        """Each retriever's own top ``rank_window`` for ``query``, unfused: ``{retriever: [Hit(id, raw score)]}``.

        Exactly the lists ``linear`` and ``rrf`` fuse for this query (same retrievers with a weight > 0, query
        vectors, filters and window, in the engine's order), fetched in one ``_msearch`` without facets.
        Fusing them with :func:`hybrid_search.ranking.fusion.fuse` and the query's weights gives the ranking
        :meth:`search` returns, so offline tuning can try many fusion settings on one fetch per query.
        """
        index = index or self.settings.index_alias
        _, _, _, window, retrievers = self._configure(query, index)
        timings: dict[str, Any] = {}
        vectors = self._encode(query, retrievers, index, timings)
        _, lists, _, _ = self._fetch_lists(
            query, retrievers, vectors, window, query.filters.clauses(), index, timings, facets=False
        )
        return lists

    # ---- encoding -------------------------------------------------------------------------------------

    def _query_image(self, query: SearchQuery) -> Any:
        from hybrid_search.media.images import load_image

        image = query.image
        if isinstance(image, (bytes, bytearray, memoryview)):
            return load_image(
                image, max_bytes=self.settings.image_max_bytes, max_pixels=self.settings.image_max_pixels
            )
        assert image is not None
        width, height = image.size
        if width < 1 or height < 1:
            raise ValidationError(f"corrupt image: size {width}x{height}", field="image")
        if width * height > self.settings.image_max_pixels:
            raise ValidationError(
                f"too many pixels: {width}x{height} = {width * height} > {self.settings.image_max_pixels}",
                field="image",
            )
        return image if image.mode == "RGB" else image.convert("RGB")

    def _encode(
        self, query: SearchQuery, retrievers: Sequence[Retriever], index: str, timings: dict[str, Any]
    ) -> dict[str, list[float]]:
        """Query vector per kNN retriever; each encoder runs once. Checks encoders against the index."""
        started = time.perf_counter()
        roles = {role for r in retrievers for role in SPECS[r.name].encoders}
        per_role: dict[str, float] = {}
        image = None
        if query.image is not None and roles & {"image", "colour", "text_image"}:
            t = time.perf_counter()
            image = self._query_image(query)
            per_role["image_decode"] = _ms(t)
        embedded: dict[str, Any] = {}
        for role in sorted(roles):
            encoder = self.encoders[role]
            item = image if encoder.modality == "image" else query.text
            t = time.perf_counter()
            embedded[role] = encoder.embed_query(item)
            per_role[role] = _ms(t)
        records = self.vector_records(index) if roles else {}
        vectors: dict[str, list[float]] = {}
        for r in retrievers:
            spec = SPECS[r.name]
            if r.field is None:
                continue
            if r.name == "fused_knn":
                from hybrid_search.encoders import fuse_vectors

                text_enc, image_enc = self.encoders["text"], self.encoders["image"]
                ref = fused_ref(
                    EncoderRef(text_enc.name, text_enc.version),
                    EncoderRef(image_enc.name, image_enc.version),
                    self.settings.fused_text_weight,
                )
                vector = fuse_vectors(embedded["text"], embedded["image"], self.settings.fused_text_weight)
            else:
                encoder = self.encoders[spec.encoders[0]]
                ref = EncoderRef(encoder.name, encoder.version)
                vector = embedded[spec.encoders[0]]
            record = records.get(r.field, {})
            if (record.get("encoder"), record.get("version")) != (ref.name, ref.version):
                raise EncoderMismatchError(
                    f"{r.field} of {index} holds vectors of {record.get('encoder')} "
                    f"(version {record.get('version')}), but {r.name} would query it with {ref.name} "
                    f"(version {ref.version}); configure the same encoder or re-embed the index"
                )
            vectors[r.name] = [float(x) for x in vector]
        timings["encode"] = per_role
        timings["encode_ms"] = _ms(started)
        return vectors

    # ---- client-side fusion ---------------------------------------------------------------------------

    def _client_side(
        self,
        query: SearchQuery,
        retrievers: Sequence[Retriever],
        vectors: Mapping[str, Sequence[float]],
        window: int,
        filters: list[dict[str, Any]],
        index: str,
        timings: dict[str, Any],
        *,
        method: str,
        normaliser: str,
        rank_constant: float,
    ) -> dict[str, Any]:
        responses, lists, sources, info = self._fetch_lists(
            query, retrievers, vectors, window, filters, index, timings, facets=query.facets
        )
        t = time.perf_counter()
        adaptive: dict[str, float] | None = None
        model: LearnedFusion | None = None
        learned_fallback: str | None = None
        if method == "learned":
            model, learned_fallback = self._learned_model(query, index, lists)
            if model is None:
                method = "linear"  # with the tuned (or the settings') normaliser and weights
        if self._photo_fusion_applies(query, method, lists):
            kind_weight = self.settings.photo_kind_weight
            fused = photo_fusion(
                lists,
                {r.name: r.weight for r in retrievers},
                {doc: fields.get("categories") or [] for doc, fields in sources.items()},
                kind_weight=kind_weight,
                neighbours=self.settings.photo_kind_neighbours,
                limit=query.page * query.size,
            )
            kind: dict[str, Any] | None = {
                "weight": kind_weight,
                "neighbours": self.settings.photo_kind_neighbours,
                "epsilon": DEFAULT_EPSILON,
            }
        else:
            kind = None
            weights = {r.name: r.weight for r in retrievers}
            adaptive = self._adaptive_weights(query, index, method, normaliser, lists, weights)
            if adaptive is not None:
                # a retriever the model turned off for this query has run, but does not count
                lists = {name: hits for name, hits in lists.items() if adaptive.get(name, 0.0) > 0}
            if model is not None:
                assert query.text is not None
                lists = {
                    name: hits for name, hits in lists.items() if name in (LEARNED_LEXICAL, LEARNED_DENSE)
                }
                titles = self._titles(index, lists, sources)
                fused = model.fuse(query.text, lists, titles, limit=query.page * query.size)
            else:
                fused = fuse(
                    method,
                    lists,
                    {n: w for n, w in adaptive.items() if n in lists} if adaptive is not None else weights,
                    normaliser=normaliser,
                    rank_constant=rank_constant,
                    limit=query.page * query.size,
                )
        timings["fusion_ms"] = _ms(t)
        start = (query.page - 1) * query.size
        page = [
            _hit(f, start + n + 1, sources.get(f.doc_id, {}), query.explain)
            for n, f in enumerate(fused[start:])
        ]
        self._display(index, page, timings)
        available = len({doc for hits in lists.values() for doc in (h.doc_id for h in hits)})
        if query.facets:
            candidates = responses[-1]
            total, relation = parse_total(candidates)
            facets: dict[str, list[dict[str, Any]]] | None = parse_facets(candidates.get("aggregations"))
            timings["facets_took_ms"] = candidates.get("took")
        else:
            total, relation, facets = available, "gte", None
        return {
            "hits": page,
            "total": max(total, available),
            "total_relation": relation,
            "available": available,
            "retrievers": info,
            "facets": facets,
            "photo_kind": kind,
            "adaptive_weights": adaptive,
            "learned_fallback": learned_fallback,
        }

    def _photo_fusion_applies(
        self, query: SearchQuery, method: str, lists: Mapping[str, Sequence[Hit]]
    ) -> bool:
        """Kind-aware photo fusion (:mod:`.photo_fusion`) replaces ``linear`` for a photo without words.

        It needs the image kNN hits (their categories vote for the photo's kind), only photo retrievers, and
        ``photo_kind_weight > 0``; RRF, ``native`` and queries with text keep their fusion.
        """
        return (
            method == "linear"
            and query.text is None
            and self.settings.photo_kind_weight > 0
            and bool(lists.get("image_knn"))
            and set(lists) <= {"image_knn", "colour_knn"}
        )

    def _fetch_lists(
        self,
        query: SearchQuery,
        retrievers: Sequence[Retriever],
        vectors: Mapping[str, Sequence[float]],
        window: int,
        filters: list[dict[str, Any]],
        index: str,
        timings: dict[str, Any],
        *,
        facets: bool,
    ) -> tuple[
        list[dict[str, Any]], dict[str, list[Hit]], dict[str, dict[str, Any]], dict[str, dict[str, Any]]
    ]:
        """One ``_msearch``: each retriever's top ``window`` (and the facet request when ``facets``).

        Returns the raw responses, each retriever's hit list, the hits' doc-value fields and per-retriever info.
        """
        requests: list[SearchRequest] = [
            retriever_request(r, text=query.text, vector=vectors.get(r.name), window=window, filters=filters)
            for r in retrievers
        ]
        if facets:
            requests.append(
                facets_request(retrievers, text=query.text, vectors=vectors, window=window, filters=filters)
            )
        t = time.perf_counter()
        responses = self.engine.msearch(index, requests)
        timings["engine_ms"] = _ms(t)

        lists: dict[str, list[Hit]] = {}
        sources: dict[str, dict[str, Any]] = {}
        info: dict[str, dict[str, Any]] = {}
        for r, response in zip(retrievers, responses, strict=False):
            hits = response.get("hits", {}).get("hits", [])
            listed: list[Hit] = []
            for h in hits:
                doc_id, fields = display_from_docvalues(h)
                listed.append(Hit(doc_id, float(h["_score"])))
                sources.setdefault(doc_id, fields)
            lists[r.name] = listed
            info[r.name] = {
                "field": r.field,
                "weight": r.weight,
                "hits": len(hits),
                "took_ms": response.get("took"),
            }
        return responses, lists, sources, info

    def _display(self, index: str, hits: Sequence[SearchHit], timings: dict[str, Any]) -> None:
        """Fill in the page's display fields.

        Retrieval reads doc values only (a hit's stored ``_source`` holds every vector: fetching it for a whole
        rank window is the slowest part of a search). ``search_display = "source"``: one ``_mget`` of the page
        replaces them with the exact ``_source`` values (:data:`DISPLAY_FIELDS`). ``"docvalues"``: they stay
        (colour lowercased, ``categories`` instead of ``category_path``); only titles longer than the
        ``title.raw`` limit are fetched from ``_source``. ``source`` fields already read for the same stored
        revision of a product come from :attr:`display_cache` (:mod:`.display`) instead of the ``_mget``.
        """
        keys = {h.id: revision_key(h.id, h.fields.pop(REVISION_FIELD, None)) for h in hits}
        found: dict[str, dict[str, Any]] = {}
        if self.settings.search_display == "source":
            cached = self.display_cache.get_many(k for k in keys.values() if k is not None)
            found = {h.id: cached[k] for h in hits if (k := keys[h.id]) is not None and k in cached}
            wanted = [h.id for h in hits if h.id not in found]
        else:
            wanted = [h.id for h in hits if h.fields.get("title") is None]
        if wanted:
            t = time.perf_counter()
            fetched = self.engine.get_fields(index, wanted, list(DISPLAY_FIELDS))
            timings["display_ms"] = _ms(t)
            found.update(fetched)
            if self.settings.search_display == "source":
                for doc_id, stored in fetched.items():
                    if (key := keys.get(doc_id)) is not None:
                        self.display_cache.put(key, stored)
        for hit in hits:
            source = found.get(hit.id)
            if source is None:
                continue
            if self.settings.search_display == "source":
                hit.fields.clear()
                hit.fields.update({name: source.get(name) for name in DISPLAY_FIELDS})
                hit.fields["id"] = hit.id
            elif source.get("title") is not None:
                hit.fields["title"] = source["title"]

    # ---- native ---------------------------------------------------------------------------------------

    def _native(
        self,
        query: SearchQuery,
        retrievers: Sequence[Retriever],
        vectors: Mapping[str, Sequence[float]],
        window: int,
        filters: list[dict[str, Any]],
        index: str,
        timings: dict[str, Any],
    ) -> dict[str, Any]:
        request = native_search_request(
            retrievers, text=query.text, vectors=vectors, window=window, page=query.page,
            size=query.size, filters=filters, facets=query.facets,
        )  # fmt: skip
        t = time.perf_counter()
        response = self.engine.search(index, request)
        timings["engine_ms"] = _ms(t)
        timings["fusion_ms"] = 0.0
        start = (query.page - 1) * query.size
        raw_hits = response.get("hits", {}).get("hits", [])
        parts = (
            self._native_parts(
                query,
                retrievers,
                vectors,
                window,
                filters,
                index,
                [display_from_docvalues(h)[0] for h in raw_hits],
            )
            if query.explain and raw_hits
            else {}
        )
        hits = []
        for n, h in enumerate(raw_hits):
            score = float(h["_score"])
            doc_id, fields = display_from_docvalues(h)
            explain = parts.get(doc_id) if query.explain else None
            hits.append(SearchHit(doc_id, start + n + 1, score, fields, explain))
        self._display(index, hits, timings)
        total, relation = parse_total(response)
        info = {
            r.name: {"field": r.field, "weight": r.weight, "hits": None, "took_ms": response.get("took")}
            for r in retrievers
        }
        return {
            "hits": hits,
            "total": total,
            "total_relation": relation,
            "available": min(total, window) if relation == "eq" else window,
            "retrievers": info,
            "facets": parse_facets(response.get("aggregations")) if query.facets else None,
        }

    def _native_parts(
        self,
        query: SearchQuery,
        retrievers: Sequence[Retriever],
        vectors: Mapping[str, Sequence[float]],
        window: int,
        filters: list[dict[str, Any]],
        index: str,
        ids: list[str],
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Explain of ``native``: each retriever's raw score of the page's hits, and weight * raw score.

        The engine's sum has no breakdown, so one more ``_msearch`` (only with ``explain``) asks each retriever
        again: a kNN retriever's top ``window`` under the same filters (what the native request summed: a
        product outside it got no kNN score), and BM25 restricted to the page's ids. The weighted parts add
        up to the engine's score, to float32 rounding.
        """
        requests = []
        for r in retrievers:
            if r.field is None:
                only_page = [*filters, {"ids": {"values": ids}}]
                requests.append(
                    retriever_request(r, text=query.text, vector=None, window=len(ids), filters=only_page)
                )
            else:
                requests.append(
                    retriever_request(
                        r, text=None, vector=vectors.get(r.name), window=window, filters=filters
                    )
                )
        responses = self.engine.msearch(index, requests)
        out: dict[str, dict[str, dict[str, Any]]] = {doc_id: {} for doc_id in ids}
        for r, resp in zip(retrievers, responses, strict=True):
            found = {
                display_from_docvalues(h)[0]: (n + 1, float(h["_score"]))
                for n, h in enumerate(resp["hits"]["hits"])
            }
            for doc_id in ids:
                rank, raw = found.get(doc_id, (None, None))
                out[doc_id][r.name] = {
                    "raw_score": raw,
                    "rank": rank if r.field is not None else None,
                    "normalised": None,
                    "weighted": 0.0 if raw is None else r.weight * raw,
                }
        return out


def _hit(fused: FusedHit, rank: int, source: Mapping[str, Any], explain: bool) -> SearchHit:
    return SearchHit(
        id=fused.doc_id,
        rank=rank,
        score=fused.score,
        fields=dict(source),
        explain={name: c._asdict() for name, c in fused.contributions.items()} if explain else None,
    )


__all__ = ["TUNED_KEYS", "VECTOR_RECORDS_TTL_S", "SearchService", "apply_search_threads", "search_encoders"]
