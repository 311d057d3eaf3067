"""Stage 6, present: a :class:`~hybrid_search.ranking.rankers.Ranking` becomes the :class:`SearchResponse`.

- the page: cut from the ranking (``native``: the engine already cut it), ranks counted over the whole result;
- explain: each hit's parts per retriever. Client-side fusion knows them; the engine's ``native`` sum has no
  breakdown, so one more ``_msearch`` (only with ``explain``) asks each retriever again for the page's
  products;
- display fields: retrieval read doc values only. With ``search_display = "source"`` (default) one ``_mget``
  of the page reads the exact stored fields (:func:`~hybrid_search.search.bodies.display_fields` of the
  query's schema), except those :class:`~hybrid_search.search.display.DisplayCache` holds for the same stored
  revision of a product; with ``"docvalues"`` they stay (colour lowercased, ``categories`` instead of
  ``category_path``), and only titles longer than the title's keyword limit are read from ``_source``;
- an attached index (a shop's, whose text fields have no doc values): retrieval read only ``_id`` and revision;
  one ``_mget`` of the page reads the role fields from ``_source`` (as with ``"source"``, through the display
  cache), whatever ``search_display`` says, and each hit is shown under the shop's id (it was ranked by its
  ``_id``) with the own index's keys (:func:`~hybrid_search.search.bodies.attached_display`);
- total and facets: from the facet request (or the ``native`` response); without facets the total is the
  number of candidates, a lower bound;
- the ``fusion`` information: which fusion ranked, with which parameters and weights.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from hybrid_search.catalog.schema import FieldSchema
from hybrid_search.engine import SearchEngine
from hybrid_search.ranking.fusion import FusedHit
from hybrid_search.ranking.rankers import Ranking
from hybrid_search.search.bodies import (
    REVISION_FIELD,
    attached_display,
    display_fields,
    display_from_source,
    hit_display,
    retriever_request,
)
from hybrid_search.search.display import DisplayCache, revision_key
from hybrid_search.search.encode import QueryVectors
from hybrid_search.search.plan import Plan
from hybrid_search.search.response import SearchHit, SearchResponse, elapsed_ms, parse_facets, parse_total
from hybrid_search.search.retrieve import Retrieved


def present(
    engine: SearchEngine,
    index: str,
    plan: Plan,
    vectors: QueryVectors,
    retrieved: Retrieved,
    ranking: Ranking,
    *,
    display: str,
    cache: DisplayCache,
    timings: Mapping[str, Any],
    started: float,
) -> SearchResponse:
    """The response for the requested page of ``ranking``.

    ``display``: the ``search_display`` setting; ``timings``: those of the earlier stages, to which this stage
    adds ``display_ms`` (when it reads stored fields), ``facets_took_ms`` and ``total_ms`` (since ``started``).
    """
    query = plan.query
    start = (query.page - 1) * query.size
    ranked = ranking.hits if retrieved.paged else ranking.hits[start:]
    if not query.explain:
        explains: Mapping[str, dict[str, dict[str, Any]]] = {}
    elif retrieved.paged:
        explains = _native_parts(engine, index, plan, vectors, [f.doc_id for f in ranked]) if ranked else {}
    else:
        explains = {f.doc_id: _contributions(f) for f in ranked}
    fields = retrieved.candidates.fields
    times = dict(timings)
    if query.attached is None:
        hits = [
            SearchHit(
                f.doc_id, start + n + 1, f.score, dict(fields.get(f.doc_id, {})), explains.get(f.doc_id)
            )
            for n, f in enumerate(ranked)
        ]
        _display(engine, index, hits, display, cache, times, query.schema)
    else:
        stored = _stored(engine, index, ranked, fields, cache, times, display_fields(query.attached.schema))
        hits = []
        for n, f in enumerate(ranked):  # ranked by _id, shown under the shop's id
            shown = attached_display(f.doc_id, stored.get(f.doc_id, {}), query.attached)
            hits.append(SearchHit(shown["id"], start + n + 1, f.score, shown, explains.get(f.doc_id)))

    counts = retrieved.counts
    facets = None
    if counts is not None and query.facets:
        facets = parse_facets(counts.get("aggregations"), query.schema)
    if retrieved.paged:
        assert counts is not None  # the native response
        total, relation = parse_total(counts)
        available = min(total, query.window) if relation == "eq" else query.window
    else:
        available = ranking.candidates
        if counts is not None:
            total, relation = parse_total(counts)
            total = max(total, available)
            times["facets_took_ms"] = counts.get("took")
        else:
            total, relation = available, "gte"
    times["total_ms"] = elapsed_ms(started)
    return SearchResponse(
        hits=hits,
        total=total,
        total_relation=relation,
        page=query.page,
        size=query.size,
        available=available,
        fusion=fusion_info(ranking, query.window),
        retrievers=retrieved.retrievers,
        facets=facets,
        timings=times,
    )


def fusion_info(ranking: Ranking, window: int) -> dict[str, Any]:
    """The response's ``fusion``: method, normaliser, rank constant, window and weights, and what else ranked.

    Weights the adaptive model predicted are rounded to 6 decimals.
    """
    weights = dict(ranking.weights)
    if ranking.adaptive:
        weights = {name: round(weight, 6) for name, weight in weights.items()}
    info: dict[str, Any] = {
        "method": ranking.method,
        "normaliser": ranking.normaliser,
        "rank_constant": ranking.rank_constant,
        "rank_window": window,
        "weights": weights,
    }
    if ranking.learned is not None:
        info["learned"] = ranking.learned
    if ranking.adaptive:
        info["adaptive"] = True
    if ranking.photo_kind is not None:
        term = ranking.photo_kind
        info["photo_kind"] = {"weight": term.weight, "neighbours": term.neighbours, "epsilon": term.epsilon}
    return info


def _contributions(fused: FusedHit) -> dict[str, dict[str, Any]]:
    return {name: c._asdict() for name, c in fused.contributions.items()}


def _native_parts(
    engine: SearchEngine, index: str, plan: Plan, vectors: QueryVectors, ids: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Explain of ``native``: each retriever's raw score of the page's hits, and weight * raw score.

    One ``_msearch`` asks each retriever again: a kNN retriever's top ``window`` under the same filters (what the
    native request summed: a product outside it got no kNN score), and BM25 restricted to the page's ids. The
    weighted parts add up to the engine's score, to float32 rounding.
    """
    query = plan.query
    requests = []
    for r in plan.retrievers:
        if r.field is None:
            only_page = [*query.filters, {"ids": {"values": ids}}]
            requests.append(
                retriever_request(
                    r,
                    text=query.text,
                    vector=None,
                    window=len(ids),
                    filters=only_page,
                    schema=query.schema,
                    lexical=query.lexical,
                    ids_only=query.attached is not None,
                )
            )
        else:
            requests.append(
                retriever_request(
                    r,
                    text=None,
                    vector=vectors.vectors.get(r.name),
                    window=query.window,
                    filters=query.filters,
                    schema=query.schema,
                    ids_only=query.attached is not None,
                )
            )
    responses = engine.msearch(index, requests)
    out: dict[str, dict[str, dict[str, Any]]] = {doc_id: {} for doc_id in ids}
    for r, resp in zip(plan.retrievers, responses, strict=True):
        found = {
            hit_display(h, query.schema, query.attached)[0]: (n + 1, float(h["_score"]))
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


def _display(
    engine: SearchEngine,
    index: str,
    hits: Sequence[SearchHit],
    display: str,
    cache: DisplayCache,
    timings: dict[str, Any],
    schema: FieldSchema,
) -> None:
    """Fill in the page's display fields (module docstring), from the cache or one ``_mget`` of ``schema``'s
    fields (cached as stored, so under the index's own field names)."""
    keys = {h.id: revision_key(h.id, h.fields.pop(REVISION_FIELD, None)) for h in hits}
    found: dict[str, dict[str, Any]] = {}
    if display == "source":
        cached = cache.get_many(k for k in keys.values() if k is not None)
        found = {h.id: cached[k] for h in hits if (k := keys[h.id]) is not None and k in cached}
        wanted = [h.id for h in hits if h.id not in found]
    else:
        wanted = [h.id for h in hits if h.fields.get("title") is None]
    if wanted:
        t = time.perf_counter()
        fetched = engine.get_fields(index, wanted, display_fields(schema))
        timings["display_ms"] = elapsed_ms(t)
        found.update(fetched)
        if display == "source":
            for doc_id, stored in fetched.items():
                if (key := keys.get(doc_id)) is not None:
                    cache.put(key, stored)
    for hit in hits:
        source = found.get(hit.id)
        if source is None:
            continue
        if display == "source":
            hit.fields.clear()
            hit.fields.update(display_from_source(hit.id, source, schema))
        elif source.get(schema.title) is not None:
            hit.fields["title"] = source[schema.title]


def _stored(
    engine: SearchEngine,
    index: str,
    ranked: Sequence[FusedHit],
    fields: Mapping[str, Mapping[str, Any]],
    cache: DisplayCache,
    timings: dict[str, Any],
    names: list[str],
) -> dict[str, dict[str, Any]]:
    """``{_id: stored fields}`` of the page of an attached index: from the cache for a revision read before,
    else one ``_mget`` of ``names`` (cached by revision)."""
    keys = {f.doc_id: revision_key(f.doc_id, fields.get(f.doc_id, {}).get(REVISION_FIELD)) for f in ranked}
    cached = cache.get_many(k for k in keys.values() if k is not None)
    found = {doc: cached[k] for doc, k in keys.items() if k is not None and k in cached}
    wanted = [doc for doc in keys if doc not in found]
    if wanted:
        t = time.perf_counter()
        fetched = engine.get_fields(index, wanted, names)
        timings["display_ms"] = elapsed_ms(t)
        for doc, values in fetched.items():
            if (key := keys.get(doc)) is not None:
                cache.put(key, values)
        found.update(fetched)
    return found


__all__ = ["fusion_info", "present"]
