"""The engine adapter: the one interface the rest of hybrid-search uses to talk to a search engine.

:class:`SearchEngine` holds the logic both engines share (versioned indices behind an alias, the encoder check on
writes, bulk-error classification); :mod:`.opensearch` and :mod:`.elasticsearch` implement the few raw calls with
their own client. Nothing outside ``hybrid_search.engine`` imports an engine client.
"""

from __future__ import annotations

import abc
import copy
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid_search.engine.definition import (
    META_KEY,
    EncoderRef,
    IndexDefinition,
    check_vector_sources,
    parse_version,
    vector_values,
    vectors_from_meta,
    versioned_name,
)
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import EngineError, EngineRequestError, IndexNotFoundError, ValidationError

log = logging.getLogger(__name__)

TUNED_KEY = "tuned"  # _meta.hybrid_search.tuned: the search configuration `hybrid-search tune` saved


@dataclass(frozen=True)
class ClusterHealth:
    status: str
    number_of_nodes: int
    cluster_name: str
    engine: str
    version: str


@dataclass
class BulkResult:
    """Outcome of a bulk write: how many documents landed, and a typed record of each one that did not."""

    written: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.errors)


MAX_REASON = 500  # characters of an engine's error reason kept in a message

# HTTP statuses of a cluster that is overloaded or recovering (429 rejected, 502/504 gateway, 503 no shard copy
# yet, cluster state not recovered): the same request may succeed later, so they are retried, not reported as bad
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def classify_bulk_error(status: int, error: Mapping[str, Any] | str | None) -> str:
    """``conflict`` (409), ``mapping`` (the document does not fit the mapping) or ``other``."""
    if status == 409:
        return "conflict"
    kind = error.get("type", "") if isinstance(error, Mapping) else str(error or "")
    if any(
        word in kind for word in ("mapper_parsing", "document_parsing", "strict_dynamic", "illegal_argument")
    ):
        return "mapping"
    return "other"


def short_reason(exc: BaseException) -> str:
    """One short line for a client exception: the well-known network causes by name, else its text (capped)."""
    text = str(getattr(exc, "info", None) or exc)
    for marker in (
        "Connection refused",
        "Name or service not known",
        "timed out",
        "certificate verify failed",
    ):
        if marker in text:
            return marker.lower()
    return text if len(text) < 300 else text[:300] + "..."


def _error_reason(error: Mapping[str, Any] | str | None) -> str:
    if isinstance(error, Mapping):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping):
            reason += f" (caused by {cause.get('type', '')}: {cause.get('reason', '')})"
        return reason
    return str(error)


def engine_reason(body: Any) -> tuple[str, str]:
    """``(type, "type: reason (caused by type: reason)")`` of an engine's error body, or of its ``error`` object.

    Only the engine's type and reason texts are kept (not the rest of the body, which can quote the request), on
    one line of at most :data:`MAX_REASON` characters. A body that is not the engines' JSON shape (a proxy's
    page) gives no type and its text, capped.
    """
    error = body.get("error") if isinstance(body, Mapping) and "error" in body else body
    kind = str(error.get("type") or "") if isinstance(error, Mapping) else ""
    reason = " ".join(_error_reason(error if isinstance(error, Mapping) else str(error or "")).split())
    return kind, reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 3] + "..."


class SearchEngine(abc.ABC):
    """A search engine cluster, seen through the operations hybrid-search needs."""

    kind: str = ""
    RESOLVE_TTL_S = 30.0

    def __init__(self, url: str) -> None:
        self.url = url
        # name -> (concrete index, vector records, expiry, the index's whole ``_meta``)
        self._meta_cache: dict[str, tuple[str, dict[str, dict[str, Any]], float, dict[str, Any]]] = {}
        self._meta_lock = threading.Lock()

    # ---- raw calls, one client each -------------------------------------------------------------------

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """The root endpoint: cluster name and version."""

    @abc.abstractmethod
    def _health(self, wait_for_status: str | None, timeout_s: float) -> dict[str, Any]: ...

    @abc.abstractmethod
    def index_body(self, definition: IndexDefinition) -> dict[str, Any]:
        """The create-index body in this engine's dialect (pure)."""

    @abc.abstractmethod
    def search_body(self, request: SearchRequest) -> dict[str, Any]:
        """The search body in this engine's dialect (pure)."""

    @abc.abstractmethod
    def _create_index(self, name: str, body: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def _indices(self, pattern: str) -> dict[str, dict[str, Any]]:
        """``{index: {"aliases": [...], "meta": {...}}}`` for indices matching ``pattern`` (none: empty)."""

    @abc.abstractmethod
    def _update_aliases(self, body: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        """Replace the ``_meta`` of one concrete index's mapping with ``meta`` (both engines replace it whole)."""

    @abc.abstractmethod
    def _bulk(
        self, actions: Iterable[dict[str, Any]], refresh: bool
    ) -> Iterator[tuple[bool, dict[str, Any]]]:
        """Stream actions; yield ``(ok, item)`` per document in order."""

    @abc.abstractmethod
    def _search(self, index: str, body: dict[str, Any]) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _msearch(self, index: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        """Number of documents (matching ``query``) in an index or alias."""

    @abc.abstractmethod
    def refresh(self, index: str) -> None:
        """Make recent writes searchable."""

    @abc.abstractmethod
    def delete_index(self, index: str) -> None:
        """Delete one concrete index (missing: no error)."""

    @abc.abstractmethod
    def _delete_docs(self, index: str, ids: Sequence[str], refresh: bool) -> int: ...

    @abc.abstractmethod
    def _mget(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """The ``docs`` of an ``_mget`` limited to ``fields`` of ``_source``."""

    @abc.abstractmethod
    def get_document(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """A document's source, or None when absent."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the client's connections."""

    # ---- shared logic ---------------------------------------------------------------------------------

    def health(self, wait_for_status: str | None = None, timeout_s: float = 30.0) -> ClusterHealth:
        """Cluster health; with ``wait_for_status`` ('yellow'/'green') waits up to ``timeout_s``."""
        info = self.info()
        raw = self._health(wait_for_status, timeout_s)
        return ClusterHealth(
            status=str(raw.get("status", "unknown")),
            number_of_nodes=int(raw.get("number_of_nodes", 0)),
            cluster_name=str(raw.get("cluster_name", info.get("cluster_name", ""))),
            engine=self.kind,
            version=str(info.get("version", {}).get("number", "")),
        )

    def versions(self, alias: str) -> dict[int, str]:
        """The alias's versioned indices that exist: ``{N: "alias-vN"}``."""
        found = self._indices(f"{alias}-v*")
        out = {}
        for name in found:
            n = parse_version(alias, name)
            if n is not None:
                out[n] = name
        return dict(sorted(out.items()))

    def resolve_alias(self, alias: str) -> list[str]:
        """Concrete indices the alias points to (empty when the alias does not exist)."""
        return sorted(name for name, data in self._indices(f"{alias}-v*").items() if alias in data["aliases"])

    def create_index(self, alias: str, definition: IndexDefinition, *, activate: bool | None = None) -> str:
        """Create the next ``<alias>-v<N>`` from ``definition``.

        ``activate``: swap the alias to it now. The default (None) swaps only when the alias does not exist yet,
        so the first index is live at once and later ones wait for an explicit :meth:`swap_alias` (reindexing).
        """
        existing = self.versions(alias)
        name = versioned_name(alias, max(existing, default=0) + 1)
        self._create_index(name, self.index_body(definition))
        log.info("created index %s (%d vector fields)", name, len(definition.vectors))
        if activate or (activate is None and not self.resolve_alias(alias)):
            self.swap_alias(alias, name)
        return name

    def swap_alias(self, alias: str, index: str) -> None:
        """Point ``alias`` at ``index`` alone, atomically (readers never see zero or two indices)."""
        if parse_version(alias, index) is None:
            raise ValidationError(
                f"index {index!r} is not a version of alias {alias!r} (expected {alias}-v<N>)"
            )
        if index not in self._indices(index):
            raise IndexNotFoundError(f"index {index!r} does not exist")
        from hybrid_search.engine.dialects import swap_alias_actions

        self._update_aliases(swap_alias_actions(alias, self.resolve_alias(alias), index))
        self._forget()
        log.info("alias %s -> %s", alias, index)

    def vector_records(self, index_or_alias: str) -> dict[str, dict[str, Any]]:
        """The encoder records of the index's ``_meta`` (the one the alias writes to)."""
        return self._resolve(index_or_alias)[1]

    def _write_index(self, index_or_alias: str) -> str:
        return self._resolve(index_or_alias)[0]

    def _resolve(self, index_or_alias: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """The concrete index behind a name, and its vector records: one request, then cached for
        ``RESOLVE_TTL_S`` (this process forgets at once when it swaps an alias or deletes an index; other
        processes see a swap within the TTL)."""
        now = time.monotonic()
        with self._meta_lock:
            hit = self._meta_cache.get(index_or_alias)
        if hit is not None and hit[2] > now:
            return hit[0], hit[1]
        concrete, records, _ = self._resolve_fresh(index_or_alias, now)
        return concrete, records

    def _resolve_fresh(
        self, index_or_alias: str, now: float
    ) -> tuple[str, dict[str, dict[str, Any]], dict[str, Any]]:
        found = self._indices(index_or_alias)
        if not found:
            raise IndexNotFoundError(
                f"index or alias {index_or_alias!r} does not exist (create it: hybrid-search index create)"
            )
        if index_or_alias in found:
            concrete = index_or_alias
        else:
            names = sorted(found)
            if len(names) > 1:
                raise EngineError(
                    f"alias {index_or_alias!r} points to several indices {names}; swap it to one"
                )
            concrete = names[0]
        meta = dict(found[concrete]["meta"] or {})
        records = vectors_from_meta(meta)
        with self._meta_lock:
            self._meta_cache[index_or_alias] = (concrete, records, now + self.RESOLVE_TTL_S, meta)
        return concrete, records, meta

    def tuned_config(self, index_or_alias: str) -> dict[str, Any] | None:
        """The search configuration saved in the index's ``_meta`` by :meth:`set_tuned_config` (None: none).

        Read with the index's encoder records and cached with them (``RESOLVE_TTL_S``), so a search that
        consults it sends no extra request.
        """
        now = time.monotonic()
        with self._meta_lock:
            hit = self._meta_cache.get(index_or_alias)
        meta = hit[3] if hit is not None and hit[2] > now else self._resolve_fresh(index_or_alias, now)[2]
        tuned = (meta.get(META_KEY) or {}).get(TUNED_KEY)
        return copy.deepcopy(dict(tuned)) if isinstance(tuned, Mapping) else None

    def set_tuned_config(self, index_or_alias: str, config: Mapping[str, Any] | None) -> str:
        """Save ``config`` (plain JSON data) as the index's tuned search configuration; None removes it.

        Writes ``_meta.hybrid_search.tuned`` of the concrete index behind ``index_or_alias`` and keeps every
        other ``_meta`` entry (the encoder records) as it is. Returns the concrete index's name.
        """
        concrete, _, meta = self._resolve_fresh(index_or_alias, time.monotonic())
        meta = copy.deepcopy(meta)
        block = dict(meta.get(META_KEY) or {})
        if config is None:
            block.pop(TUNED_KEY, None)
        else:
            try:
                block[TUNED_KEY] = json.loads(json.dumps(dict(config), allow_nan=False))
            except (TypeError, ValueError) as exc:
                raise ValidationError(f"the tuned configuration is not plain JSON data: {exc}") from None
        meta[META_KEY] = block
        self._put_meta(concrete, meta)
        self._forget()
        log.info("tuned configuration of %s %s", concrete, "removed" if config is None else "saved")
        return concrete

    def _forget(self) -> None:
        with self._meta_lock:
            self._meta_cache.clear()

    def bulk_write(
        self,
        index: str,
        documents: Iterable[Mapping[str, Any]],
        *,
        vector_sources: Mapping[str, EncoderRef] | None = None,
        refresh: bool = False,
        partial: bool = False,
    ) -> BulkResult:
        """Index (upsert) documents by their ``id``; vectors must come from the encoders the index records.

        Each document needs a non-empty string ``id`` (the document id: re-writing is idempotent). Vector fields
        are checked before anything is sent: a field from another encoder raises ``EncoderMismatchError`` and
        writes nothing; a vector of the wrong length becomes a per-document ``mapping`` error. Per-document
        failures are returned in :class:`BulkResult`, never raised, so one bad record does not lose its batch.

        ``partial``: upsert only the given fields (``update`` with ``doc_as_upsert``): fields left out, such as
        vectors that did not need re-embedding, keep their stored values.
        """
        concrete, recorded = self._resolve(index)
        sources = dict(vector_sources or {})
        docs = list(documents)
        present = {name for doc in docs for name in recorded if vector_values(doc, name)}
        present |= {name for doc in docs for name in sources if vector_values(doc, name)}
        check_vector_sources(concrete, recorded, sources, present)
        result = BulkResult()
        actions = []
        for doc in docs:
            doc_id = doc.get("id")
            if not isinstance(doc_id, str) or not doc_id.strip():
                result.errors.append({"id": doc_id, "kind": "mapping", "reason": "document has no string id"})
                continue
            bad = [
                f"{name} has {len(vector)} dimensions, index expects {recorded[name]['dim']}"
                for name in present
                for vector in vector_values(doc, name)
                if len(vector) != recorded[name]["dim"]
            ]
            if bad:
                result.errors.append({"id": doc_id, "kind": "mapping", "reason": "; ".join(bad)})
                continue
            if partial:
                actions.append(
                    {
                        "_op_type": "update",
                        "_index": index,
                        "_id": doc_id,
                        "doc": dict(doc),
                        "doc_as_upsert": True,
                    }
                )
            else:
                actions.append({"_op_type": "index", "_index": index, "_id": doc_id, "_source": dict(doc)})
        if not actions:
            return result
        for ok, item in self._bulk(actions, refresh):
            info = next(iter(item.values())) if item else {}
            if ok:
                result.written += 1
            else:
                error = info.get("error")
                result.errors.append(
                    {
                        "id": info.get("_id"),
                        "kind": classify_bulk_error(int(info.get("status", 0)), error),
                        "status": info.get("status"),
                        "reason": _error_reason(error),
                    }
                )
        return result

    def search(self, index: str, request: SearchRequest) -> dict[str, Any]:
        """Run one search; the raw engine response."""
        return self._search(index, self.search_body(request))

    def msearch(self, index: str, requests: Sequence[SearchRequest]) -> list[dict[str, Any]]:
        """Run several searches in one ``_msearch`` round trip; responses in request order.

        A sub-request that failed on the engine raises :class:`EngineError` naming it
        (:class:`EngineRequestError` when the engine refused it, HTTP 400, as for a single request).
        """
        if not requests:
            return []
        responses = self._msearch(index, [self.search_body(r) for r in requests])
        for i, response in enumerate(responses):
            if "error" in response:
                error = response["error"]
                if isinstance(error, Mapping) and error.get("type") == "index_not_found_exception":
                    raise IndexNotFoundError(f"index or alias {index!r} does not exist")
                kind, reason = engine_reason(error)
                message = f"search {i + 1} of {len(responses)} failed: {reason}"
                if response.get("status") == 400:
                    raise EngineRequestError(message, kind, reason)
                raise EngineError(message)
        return responses

    def get_fields(self, index: str, ids: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{id: {field: value}}`` for the documents that exist, with only ``fields`` of their source."""
        if not ids:
            return {}
        found = {}
        for doc in self._mget(index, ids, fields):
            if doc.get("found"):
                found[str(doc["_id"])] = dict(doc.get("_source") or {})
        return found

    def delete_documents(self, index: str, ids: Sequence[str], *, refresh: bool = False) -> int:
        """Delete documents by id; returns how many existed."""
        if not ids:
            return 0
        return self._delete_docs(self._write_index(index), ids, refresh)

    def __enter__(self) -> SearchEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BulkResult", "ClusterHealth", "SearchEngine", "classify_bulk_error", "engine_reason"]
