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
    HnswParams,
    IndexDefinition,
    check_vector_sources,
    parse_version,
    vector_values,
    vectors_from_meta,
    versioned_name,
)
from hybrid_search.engine.request import SearchRequest
from hybrid_search.errors import (
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    IndexNotFoundError,
    ValidationError,
)

log = logging.getLogger(__name__)

TUNED_KEY = "tuned"  # _meta.hybrid_search.tuned: the search configuration `hybrid-search tune` saved
ATTACHED_KEY = (
    "attached"  # _meta.hybrid_search.attached: the attachment of a shop's index (catalog.attachment)
)


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


@dataclass(frozen=True)
class IndexState:
    """What the layer needs to know about an existing index (a shop's own) before it touches it.

    ``name`` is the concrete index (behind ``aliases`` when the caller named an alias); ``properties`` and
    ``meta`` are its mapping's, whole; ``dynamic`` the mapping's ``dynamic`` as the engine spells it
    (``"strict"``, ``"true"``, ``"false"``, ``"runtime"``; None when unset); ``knn_setting`` OpenSearch's
    ``index.knn`` (approximate kNN fields need it; Elasticsearch: always True); ``documents`` the number of
    top-level documents.
    """

    name: str
    aliases: tuple[str, ...]
    properties: dict[str, Any]
    meta: dict[str, Any]
    dynamic: str | None
    source_enabled: bool
    source_includes: tuple[str, ...]
    source_excludes: tuple[str, ...]
    knn_setting: bool
    documents: int
    engine: str


@dataclass(frozen=True)
class VersionedDoc:
    """A document as read, with the sequence number and primary term that a conditional write names."""

    id: str
    source: dict[str, Any]
    seq_no: int
    primary_term: int


@dataclass(frozen=True)
class ConditionalUpdate:
    """A partial update (``doc``) that applies only while the document is still at ``seq_no``/``primary_term``."""

    id: str
    seq_no: int
    primary_term: int
    doc: Mapping[str, Any]


@dataclass
class ConditionalResult:
    """Outcome of :meth:`SearchEngine.update_if_unchanged`.

    ``written``: updated (or already equal); ``conflicts``: changed since it was read (HTTP 409: read it again);
    ``missing``: deleted since (HTTP 404, never re-created); ``errors``: the rest, each ``{"id", "status",
    "kind", "reason"}`` with ``kind`` ``mapping``, ``transient`` (429/502/503/504: retry later) or ``other``.
    """

    written: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


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
        roots = error.get("root_cause")
        first = roots[0] if isinstance(roots, list) and roots else None
        # "all shards failed" says nothing by itself: the first shard's own error does
        if (
            not isinstance(cause, Mapping)
            and isinstance(first, Mapping)
            and (first.get("type"), first.get("reason")) != (error.get("type"), error.get("reason"))
        ):
            cause = first
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
    def _put_mapping(self, index: str, body: dict[str, Any]) -> None:
        """``PUT <index>/_mapping`` with ``body`` (``properties`` and/or ``_meta``)."""

    def _put_meta(self, index: str, meta: dict[str, Any]) -> None:
        """Replace the ``_meta`` of one concrete index's mapping with ``meta`` (both engines replace it whole)."""
        self._put_mapping(index, {"_meta": meta})

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
    def _mget(self, index: str, ids: Sequence[str], fields: Sequence[str] | None) -> list[dict[str, Any]]:
        """The ``docs`` of an ``_mget`` limited to ``fields`` of ``_source`` (None: the whole source); each
        found doc carries ``_seq_no`` and ``_primary_term`` (both engines, measured on OpenSearch 2.19 and
        Elasticsearch 8.19)."""

    @abc.abstractmethod
    def _open_pit(self, index: str, keep_alive: str) -> str: ...

    @abc.abstractmethod
    def _close_pit(self, pit_id: str) -> None:
        """Close a point in time; one that expired or was closed already is no error."""

    @abc.abstractmethod
    def _search_pit(self, pit_id: str, body: dict[str, Any], keep_alive: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _update_by_query(self, index: str, body: dict[str, Any], refresh: bool) -> dict[str, Any]:
        """``POST <index>/_update_by_query?conflicts=proceed&wait_for_completion=true``: the response."""

    @abc.abstractmethod
    def _reindex(self, body: dict[str, Any], wait: bool) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _render_template(self, template_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``POST _render/template {"id", "params"}``: the response (``template_output``)."""

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

    def _cached_meta(self, index_or_alias: str) -> dict[str, Any]:
        """The index's whole ``_meta``, from the cache when fresh (the same entry as the vector records)."""
        now = time.monotonic()
        with self._meta_lock:
            hit = self._meta_cache.get(index_or_alias)
        return hit[3] if hit is not None and hit[2] > now else self._resolve_fresh(index_or_alias, now)[2]

    def _block_entry(self, index_or_alias: str, key: str) -> dict[str, Any] | None:
        entry = (self._cached_meta(index_or_alias).get(META_KEY) or {}).get(key)
        return copy.deepcopy(dict(entry)) if isinstance(entry, Mapping) else None

    def tuned_config(self, index_or_alias: str) -> dict[str, Any] | None:
        """The search configuration saved in the index's ``_meta`` by :meth:`set_tuned_config` (None: none).

        Read with the index's encoder records and cached with them (``RESOLVE_TTL_S``), so a search that
        consults it sends no extra request.
        """
        return self._block_entry(index_or_alias, TUNED_KEY)

    def attachment_meta(self, index_or_alias: str) -> dict[str, Any] | None:
        """``_meta.hybrid_search.attached`` of the index (a copy; None when the index is not attached).

        Cached with the index's encoder records like :meth:`tuned_config` (``RESOLVE_TTL_S``): a search of an
        attached index reads it without an extra request.
        """
        return self._block_entry(index_or_alias, ATTACHED_KEY)

    def update_meta_block(self, index_or_alias: str, entries: Mapping[str, Any | None]) -> str:
        """Set keys of the index's ``_meta.hybrid_search`` block (a None value removes that key).

        Every other key of the block (the encoder records, the tuned configuration...) and every other ``_meta``
        key (a shop's own) is kept: both engines replace ``_meta`` whole on ``PUT _mapping``, so this reads the
        current ``_meta`` fresh, merges and writes it back (last writer wins between two concurrent callers).
        Values must be plain JSON data (ValidationError otherwise, nothing written). Forgets this process's
        meta cache; returns the concrete index's name.

        OpenSearch 2.19 hazard (k-NN bug opensearch-project/k-NN#2540, fixed after 2.19): on an index without
        ``index.knn`` that holds a ``knn_vector`` field, EVERY later ``PUT _mapping`` (this one included) fails
        the shard ("[index.version.created] is not present"): it recovers within a second or so, but reads and
        writes get HTTP 503 meanwhile. Write the block together with the vector field: ``add_fields(...,
        meta=...)``.
        """
        return self._put_fields_and_meta(index_or_alias, None, entries)

    def _put_fields_and_meta(
        self,
        index_or_alias: str,
        properties: Mapping[str, Any] | None,
        entries: Mapping[str, Any | None] | None,
    ) -> str:
        plain: dict[str, Any] = {}
        if entries:
            try:
                plain = {
                    str(k): None if v is None else json.loads(json.dumps(v, allow_nan=False))
                    for k, v in entries.items()
                }
            except (TypeError, ValueError) as exc:
                keys = ", ".join(sorted(str(k) for k in entries))
                raise ValidationError(
                    f"_meta.{META_KEY} entries ({keys}) are not plain JSON data: {exc}"
                ) from None
        concrete, _, meta = self._resolve_fresh(index_or_alias, time.monotonic())
        body: dict[str, Any] = {}
        if properties:
            body["properties"] = copy.deepcopy(dict(properties))
        if entries:
            meta = copy.deepcopy(meta)
            block = dict(meta.get(META_KEY) or {})
            for key, value in plain.items():
                if value is None:
                    block.pop(key, None)
                else:
                    block[key] = value
            meta[META_KEY] = block
            body["_meta"] = meta
        if body:
            self._put_mapping(concrete, body)
            self._forget()
        return concrete

    def set_tuned_config(self, index_or_alias: str, config: Mapping[str, Any] | None) -> str:
        """Save ``config`` (plain JSON data) as the index's tuned search configuration; None removes it.

        Writes ``_meta.hybrid_search.tuned`` of the concrete index behind ``index_or_alias`` and keeps every
        other ``_meta`` entry (the encoder records) as it is. Returns the concrete index's name.
        """
        try:
            value = None if config is None else json.loads(json.dumps(dict(config), allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"the tuned configuration is not plain JSON data: {exc}") from None
        concrete = self.update_meta_block(index_or_alias, {TUNED_KEY: value})
        log.info("tuned configuration of %s %s", concrete, "removed" if config is None else "saved")
        return concrete

    # ---- an existing index (a shop's own): attach ------------------------------------------------------

    def index_state(self, index_or_alias: str) -> IndexState:
        """The mapping, settings, aliases and size of an existing index (IndexNotFoundError when absent)."""
        found = self._indices(index_or_alias)
        if not found:
            raise IndexNotFoundError(f"index or alias {index_or_alias!r} does not exist")
        if index_or_alias in found:
            name = index_or_alias
        elif len(found) > 1:
            raise EngineError(
                f"alias {index_or_alias!r} points to several indices {sorted(found)}; name one of them"
            )
        else:
            name = next(iter(found))
        data = found[name]
        mappings = dict(data.get("mappings") or {})
        source = dict(mappings.get("_source") or {})
        dynamic = mappings.get("dynamic")
        settings = dict(data.get("settings") or {})
        index_settings = settings.get("index", settings)
        return IndexState(
            name=name,
            aliases=tuple(data.get("aliases") or ()),
            properties=copy.deepcopy(dict(mappings.get("properties") or {})),
            meta=copy.deepcopy(dict(mappings.get("_meta") or {})),
            dynamic=None if dynamic is None else str(dynamic).lower(),
            source_enabled=str(source.get("enabled", True)).lower() != "false",
            source_includes=tuple(source.get("includes") or ()),
            source_excludes=tuple(source.get("excludes") or ()),
            knn_setting=self._knn_setting(index_settings),
            documents=self.count(name),
            engine=self.kind,
        )

    def _knn_setting(self, index_settings: Mapping[str, Any]) -> bool:
        """Whether the index allows approximate kNN fields (OpenSearch: ``index.knn``; Elasticsearch: always)."""
        return True

    def add_fields(
        self,
        index_or_alias: str,
        properties: Mapping[str, Any],
        *,
        meta: Mapping[str, Any | None] | None = None,
    ) -> None:
        """Add fields to an existing index's mapping: ``PUT <index>/_mapping {"properties": ...}``.

        The rest of the mapping (``dynamic``, the shop's fields) is not sent, so it stays as it is; the engine
        refuses (EngineRequestError) a field that exists with another type or a mapping it cannot take (an
        OpenSearch ``method`` on an index without ``index.knn``). ``meta``: entries of ``_meta.hybrid_search``
        written in the same request, merged as :meth:`update_meta_block` does (the one safe way to record the
        vectors of an OpenSearch 2.19 index without ``index.knn``: see there).
        """
        if not properties and not meta:
            return
        concrete = self._put_fields_and_meta(index_or_alias, properties, meta)
        log.info("added fields %s to %s", ", ".join(sorted(properties)), concrete)

    @abc.abstractmethod
    def vector_mapping(
        self, name: str, dim: int, similarity: str, *, approximate: bool, hnsw: HnswParams | None = None
    ) -> dict[str, Any]:
        """The mapping of one vector field ``name`` in this engine's dialect (pure): the value to put under
        ``properties[name]`` (see the engine classes for what each engine gets)."""

    def open_pit(self, index: str, keep_alive: str = "5m") -> str:
        """Open a point in time on ``index`` (a consistent view for paging it with ``search_after``)."""
        return self._open_pit(index, keep_alive)

    def close_pit(self, pit_id: str) -> None:
        """Close a point in time (one that expired or was closed already: no error)."""
        self._close_pit(pit_id)

    def search_pit(self, pit_id: str, body: Mapping[str, Any], *, keep_alive: str = "5m") -> dict[str, Any]:
        """One search of a point in time: ``body`` (sort, search_after, size, _source, query) plus the ``pit``;
        the raw response. Its ``pit_id`` may differ from ``pit_id``: use it for the next page.

        Measured on the local nodes (docstrings of each engine's ``_search_pit``): sorting by a keyword field
        with unique values (a shop's id field) pages correctly on both; pass the last hit's ``sort`` array as
        ``search_after`` as it is (Elasticsearch appends its implicit ``_shard_doc`` tiebreaker to it,
        OpenSearch 2.19 adds none). ``_shard_doc`` sorts work on Elasticsearch only; ``_id`` sorts on
        OpenSearch only (Elasticsearch refuses ``_id`` fielddata). A point in time that expired or was closed
        raises EngineError.
        """
        sent = copy.deepcopy(dict(body))
        sent.pop("pit", None)
        return self._search_pit(pit_id, sent, keep_alive)

    def get_versioned(
        self, index: str, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, VersionedDoc]:
        """``{id: VersionedDoc}`` of the documents that exist (one ``_mget``), with only ``fields`` of their
        source (None: all of it) and the ``_seq_no``/``_primary_term`` that :meth:`update_if_unchanged` names."""
        if not ids:
            return {}
        out: dict[str, VersionedDoc] = {}
        for doc in self._mget(index, list(ids), None if fields is None else list(fields)):
            if "error" in doc:  # a shard that cannot answer now: never taken for a deleted document
                _, reason = engine_reason(doc["error"])
                raise EngineUnavailableError(
                    f"{self.kind} could not read {doc.get('_id')!r} from {index}: {reason}"
                )
            if not doc.get("found"):
                continue
            if "_seq_no" not in doc or "_primary_term" not in doc:
                raise EngineError(f"{self.kind} returned no _seq_no/_primary_term for {doc.get('_id')!r}")
            out[str(doc["_id"])] = VersionedDoc(
                id=str(doc["_id"]),
                source=dict(doc.get("_source") or {}),
                seq_no=int(doc["_seq_no"]),
                primary_term=int(doc["_primary_term"]),
            )
        return out

    def update_if_unchanged(
        self,
        index: str,
        updates: Sequence[ConditionalUpdate],
        *,
        vector_sources: Mapping[str, EncoderRef] | None = None,
        refresh: bool = False,
    ) -> ConditionalResult:
        """Partial updates that apply only to documents unchanged since they were read.

        One bulk ``update`` action per document with ``if_seq_no``/``if_primary_term`` and ``doc`` only: never
        ``doc_as_upsert``, never the index API, so a document the shop deleted stays deleted (``missing``) and a
        document the shop changed meanwhile is left alone (``conflicts``: read it again). Vector fields in a
        ``doc`` are checked against the index's ``_meta`` records as in :meth:`bulk_write` (EncoderMismatchError,
        nothing sent); a vector of the wrong length is a per-document ``mapping`` error. Errors with a transient
        status (429/502/503/504) have ``kind`` ``transient``: retry them.
        """
        result = ConditionalResult()
        if not updates:
            return result
        concrete, recorded = self._resolve(index)
        sources = dict(vector_sources or {})
        present = {name for u in updates for name in recorded if vector_values(u.doc, name)}
        present |= {name for u in updates for name in sources if vector_values(u.doc, name)}
        check_vector_sources(concrete, recorded, sources, present)
        actions = []
        for update in updates:
            bad = [
                f"{name} has {len(vector)} dimensions, index expects {recorded[name]['dim']}"
                for name in present
                for vector in vector_values(update.doc, name)
                if len(vector) != recorded[name]["dim"]
            ]
            if bad:
                result.errors.append(
                    {"id": update.id, "status": None, "kind": "mapping", "reason": "; ".join(bad)}
                )
                continue
            actions.append(
                {
                    "_op_type": "update",
                    "_index": concrete,
                    "_id": update.id,
                    "if_seq_no": update.seq_no,
                    "if_primary_term": update.primary_term,
                    "doc": copy.deepcopy(dict(update.doc)),
                }
            )
        if not actions:
            return result
        for ok, item in self._bulk(actions, refresh):
            info = next(iter(item.values())) if item else {}
            doc_id = str(info.get("_id"))
            if ok:
                result.written.append(doc_id)
                continue
            status = int(info.get("status", 0))
            error = info.get("error")
            kind = str(error.get("type", "")) if isinstance(error, Mapping) else str(error or "")
            if status == 409:
                result.conflicts.append(doc_id)
            elif status == 404 and "document_missing" in kind:
                result.missing.append(doc_id)
            else:
                result.errors.append(
                    {
                        "id": doc_id,
                        "status": status,
                        "kind": "transient"
                        if status in TRANSIENT_STATUSES
                        else classify_bulk_error(status, error),
                        "reason": _error_reason(error),
                    }
                )
        return result

    def remove_fields(self, index: str, fields: Sequence[str], query: Mapping[str, Any] | None = None) -> int:
        """Remove top-level ``fields`` from every document (matching ``query``) that has one of them; returns
        how many documents were updated.

        ``_update_by_query`` with a painless script, repeated while documents changed under it (up to 5
        passes: a document the shop rewrote meanwhile is taken again on the next pass). A cluster without
        ``_update_by_query`` or painless (the local Elasticsearch node: no reindex or painless module) raises
        EngineError saying so, and nothing was changed: the caller falls back to rewriting documents.
        """
        names = [str(f) for f in fields]
        if not names:
            return 0
        if any("." in f or not f.strip() for f in names):
            raise ValidationError(f"remove_fields takes top-level field names, got {names}", field="fields")
        body: dict[str, Any] = {
            "query": {
                "bool": {
                    "filter": [copy.deepcopy(dict(query))] if query else [],
                    "should": [{"exists": {"field": f}} for f in names],
                    "minimum_should_match": 1,
                }
            },
            "script": {
                "lang": "painless",
                "source": "for (String f : params.fields) { ctx._source.remove(f); }",
                "params": {"fields": names},
            },
        }
        updated = 0
        for _ in range(5):
            try:
                response = self._update_by_query(index, body, True)
            except IndexNotFoundError:
                raise
            except EngineError as exc:
                text = str(exc)
                if any(
                    m in text
                    for m in ("no handler found", "Incorrect HTTP method", "painless", "script_lang")
                ):
                    raise EngineError(
                        f"{self.kind} at {self.url} cannot remove fields in place (no _update_by_query with "
                        f"painless on this cluster): {text}"
                    ) from None
                raise
            failures = response.get("failures") or []
            if failures:
                raise EngineError(f"removing {names} from {index} failed: {engine_reason(failures[0])[1]}")
            updated += int(response.get("updated", 0))
            if not int(response.get("version_conflicts", 0)):
                return updated
        raise EngineError(
            f"removing {names} from {index}: documents kept changing during 5 passes; run it again"
        )

    def render_template(self, template_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The body a stored search template renders to with ``params`` (``template_output``)."""
        try:
            response = self._render_template(template_id, copy.deepcopy(dict(params)))
        except IndexNotFoundError:
            raise EngineError(f"search template {template_id!r} does not exist on the cluster") from None
        output = response.get("template_output")
        if not isinstance(output, Mapping):
            raise EngineError(f"search template {template_id!r} rendered no body: {str(response)[:200]}")
        return dict(output)

    def reindex(self, source: str, dest: str, *, wait: bool = True) -> int:
        """Copy every document of ``source`` into ``dest`` (``_reindex``); returns how many were written
        (created + updated; 0 when ``wait`` is False: the task runs on in the cluster)."""
        body = {"source": {"index": source}, "dest": {"index": dest}}
        try:
            response = self._reindex(body, wait)
        except IndexNotFoundError:
            raise
        except EngineError as exc:
            if any(m in str(exc) for m in ("no handler found", "Incorrect HTTP method")):
                raise EngineError(
                    f"{self.kind} at {self.url} has no _reindex (reindex module): {exc}"
                ) from None
            raise
        if not wait:
            log.info("reindex %s -> %s started: task %s", source, dest, response.get("task"))
            return 0
        failures = response.get("failures") or []
        if failures:
            raise EngineError(f"reindex {source} -> {dest} failed: {engine_reason(failures[0])[1]}")
        return int(response.get("created", 0)) + int(response.get("updated", 0))

    def create_raw_index(self, name: str, body: Mapping[str, Any]) -> None:
        """Create index ``name`` with ``body`` as it is (``settings``, ``mappings``, ``aliases``)."""
        self._create_index(name, copy.deepcopy(dict(body)))
        log.info("created index %s", name)

    def move_name_to_alias(self, old_index: str, new_index: str) -> None:
        """Delete the concrete index ``old_index`` and make its name an alias (the write index) of ``new_index``.

        One atomic ``_aliases`` call (``remove_index`` + ``add``): there is no moment at which the name is free,
        so a shop write cannot auto-create a fresh index under it. Refused (ValidationError) when ``old_index``
        is an alias rather than an index; IndexNotFoundError when either index does not exist.
        """
        found = self._indices(old_index)
        if not found:
            raise IndexNotFoundError(f"index {old_index!r} does not exist")
        if old_index not in found:
            raise ValidationError(
                f"{old_index!r} is an alias (of {sorted(found)}), not an index: nothing to move",
                field="index",
            )
        if new_index == old_index or new_index not in self._indices(new_index):
            raise IndexNotFoundError(f"index {new_index!r} does not exist")
        self._update_aliases(
            {
                "actions": [
                    {"add": {"index": new_index, "alias": old_index, "is_write_index": True}},
                    {"remove_index": {"index": old_index}},
                ]
            }
        )
        self._forget()
        log.info("index %s deleted; %s is now an alias of %s", old_index, old_index, new_index)

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


__all__ = [
    "BulkResult",
    "ClusterHealth",
    "ConditionalResult",
    "ConditionalUpdate",
    "IndexState",
    "SearchEngine",
    "VersionedDoc",
    "classify_bulk_error",
    "engine_reason",
]
