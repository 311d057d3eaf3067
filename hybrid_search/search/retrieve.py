"""Stage 4, retrieve: one round trip to the engine for a :class:`~hybrid_search.search.plan.Plan`.

Client-side fusion (``linear``, ``rrf``, ``learned``): **one** ``_msearch`` holding each retriever's top
``rank_window`` under the filters (:func:`~hybrid_search.search.bodies.retriever_request`) and, when facets are
asked for, a size-0 request that counts and facets the same filtered candidate set. Every page of a query is cut
from the same candidates, so pages continue each other exactly. ``native``: one request that the engine scores,
ranks and pages itself, with the facets in the same request.

Hits carry their display fields from doc values, never a hit's stored ``_source`` (it holds every vector of the
product); on an attached index (a shop's, whose text fields have no doc values) only their ``_id`` and stored
revision, and :mod:`.present` reads the page's fields (:func:`~hybrid_search.search.bodies.hit_display`). The result is a :class:`Retrieved`: the :class:`~hybrid_search.ranking.rankers.Candidates` the ranker
ranks, per-retriever information for the response, and the raw response that holds the total and the facets.
Only :mod:`hybrid_search.engine` talks to the engine; this stage hands it requests and reads plain dicts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_search.engine import SearchEngine, SearchRequest
from hybrid_search.ranking.fusion import Hit
from hybrid_search.ranking.rankers import NATIVE, Candidates
from hybrid_search.search.bodies import (
    facets_request,
    hit_display,
    native_search_request,
    retriever_request,
)
from hybrid_search.search.encode import QueryVectors
from hybrid_search.search.plan import Plan
from hybrid_search.search.response import elapsed_ms


@dataclass(frozen=True)
class Retrieved:
    """What the engine answered for one plan.

    ``retrievers``: per retriever ``{"field", "weight", "hits", "took_ms"}`` as the response shows it;
    ``counts``: the response holding the candidate set's total and facet aggregations (the facet request's, or
    the ``native`` response), None when lists were fetched without the facet request; ``paged``: the engine
    ranked and cut the page itself (``native``), so the candidates are the page.
    """

    candidates: Candidates
    retrievers: dict[str, dict[str, Any]]
    counts: Mapping[str, Any] | None
    engine_ms: float
    paged: bool


def retrieve(engine: SearchEngine, index: str, plan: Plan, vectors: QueryVectors) -> Retrieved:
    """The plan's one round trip: the engine's own ranking for ``native``, else every retriever's list."""
    if plan.engine_ranks:
        return _engine_ranked(engine, index, plan, vectors)
    return retrieve_lists(engine, index, plan, vectors, facets=plan.query.facets)


def retrieve_lists(
    engine: SearchEngine, index: str, plan: Plan, vectors: QueryVectors, *, facets: bool
) -> Retrieved:
    """One ``_msearch``: each retriever's top ``rank_window`` (and the facet request when ``facets``)."""
    query = plan.query
    requests: list[SearchRequest] = [
        retriever_request(
            r,
            text=query.text,
            vector=vectors.vectors.get(r.name),
            window=query.window,
            filters=query.filters,
            schema=query.schema,
            lexical=query.lexical,
            ids_only=query.attached is not None,
        )
        for r in plan.retrievers
    ]
    if facets:
        requests.append(
            facets_request(
                plan.retrievers,
                text=query.text,
                vectors=vectors.vectors,
                window=query.window,
                filters=query.filters,
                schema=query.schema,
                lexical=query.lexical,
            )
        )
    t = time.perf_counter()
    responses = engine.msearch(index, requests)
    engine_ms = elapsed_ms(t)

    lists: dict[str, list[Hit]] = {}
    fields: dict[str, dict[str, Any]] = {}
    info: dict[str, dict[str, Any]] = {}
    for r, response in zip(plan.retrievers, responses, strict=False):
        hits = response.get("hits", {}).get("hits", [])
        listed: list[Hit] = []
        for h in hits:
            doc_id, shown = hit_display(h, query.schema, query.attached)
            listed.append(Hit(doc_id, float(h["_score"])))
            fields.setdefault(doc_id, shown)
        lists[r.name] = listed
        info[r.name] = {
            "field": r.field,
            "weight": r.weight,
            "hits": len(hits),
            "took_ms": response.get("took"),
        }
    return Retrieved(
        candidates=_candidates(plan, lists, fields),
        retrievers=info,
        counts=responses[-1] if facets else None,
        engine_ms=engine_ms,
        paged=False,
    )


def _engine_ranked(engine: SearchEngine, index: str, plan: Plan, vectors: QueryVectors) -> Retrieved:
    """``native``: one request whose score is the engine's weighted sum, ranked and paged by the engine."""
    query = plan.query
    request = native_search_request(
        plan.retrievers, text=query.text, vectors=vectors.vectors, window=query.window, page=query.page,
        size=query.size, filters=query.filters, facets=query.facets, schema=query.schema, lexical=query.lexical,
        ids_only=query.attached is not None,
    )  # fmt: skip
    t = time.perf_counter()
    response = engine.search(index, request)
    engine_ms = elapsed_ms(t)
    ranked: list[Hit] = []
    fields: dict[str, dict[str, Any]] = {}
    for h in response.get("hits", {}).get("hits", []):
        doc_id, shown = hit_display(h, query.schema, query.attached)
        ranked.append(Hit(doc_id, float(h["_score"])))
        fields.setdefault(doc_id, shown)
    info = {
        r.name: {"field": r.field, "weight": r.weight, "hits": None, "took_ms": response.get("took")}
        for r in plan.retrievers
    }
    return Retrieved(
        candidates=_candidates(plan, {NATIVE: ranked}, fields),
        retrievers=info,
        counts=response,
        engine_ms=engine_ms,
        paged=True,
    )


def _candidates(plan: Plan, lists: dict[str, list[Hit]], fields: dict[str, dict[str, Any]]) -> Candidates:
    query = plan.query
    return Candidates(
        lists=lists,
        weights={r.name: r.weight for r in plan.retrievers},
        fields=fields,
        text=query.text,
        has_image=query.image is not None,
        limit=query.page * query.size,
    )


__all__ = ["Retrieved", "retrieve", "retrieve_lists"]
