"""Attaching, detaching and k-NN-reindexing a shop's index: the writes ``attach plan`` prepared.

    result = apply_attachment(engine, plan)       # adds the missing hs_ fields, records the attachment
    detach(engine, config, strip=True)            # forgets it (and removes the hs_ values)
    reindex_attached(engine, plan, confirm)       # OpenSearch without index.knn: a k-NN copy behind the name

What is written is only ever: ``hs_`` fields added to the mapping (``PUT _mapping`` with those properties
alone), the ``hybrid_search`` block of ``_meta`` (every other ``_meta`` key, the shop's, is kept), and, for
``detach --strip``, the ``hs_`` values of the documents. The shop's fields and values are never sent.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hybrid_search.attach.plan import KNN_APPROXIMATE, AttachPlan, covers
from hybrid_search.catalog.attachment import ATTACHED_KEY, HS_FIELDS, HS_PREFIX, AttachConfig
from hybrid_search.engine import SearchEngine, SearchRequest
from hybrid_search.engine.base import ConditionalUpdate
from hybrid_search.engine.definition import META_KEY
from hybrid_search.errors import EngineError, EngineUnavailableError, ValidationError

log = logging.getLogger(__name__)

VECTORS_KEY = "vectors"  # _meta.hybrid_search.vectors
STRIP_PAGE = 500
STRIP_ROUNDS = 1_000  # pages of the fallback strip, at most (500 documents each)
# index settings a k-NN copy takes from the shop's index (the rest are the engine's own: uuid, creation date...)
COPIED_SETTINGS = (
    "number_of_shards",
    "number_of_replicas",
    "analysis",
    "similarity",
    "refresh_interval",
    "max_result_window",
    "max_inner_result_window",
    "max_ngram_diff",
    "max_shingle_diff",
    "mapping",
    "sort",
    "codec",
    "default_pipeline",
    "final_pipeline",
    "query",
)


def _settle(engine: SearchEngine, index: str, timeout_s: float = 30.0) -> None:
    """Wait until the index answers again after a mapping update.

    Measured on OpenSearch 2.19.1 + k-NN: on an index without ``index.knn`` that has a ``knn_vector`` field,
    every later ``PUT _mapping`` (a ``_meta`` change too) fails the shard while merging the mapping ("index.
    version.created is not present"); it recovers from its own files within about 100 ms, requests meanwhile get
    503. Nothing is lost, but the next call must not meet the gap.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            engine.count(index)
            return
        except EngineUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _block(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    block = (meta or {}).get(META_KEY) or {}
    return dict(block) if isinstance(block, Mapping) else {}


def _recorded(block: Mapping[str, Any]) -> tuple[Any, Any]:
    attached = dict(block.get(ATTACHED_KEY) or {})
    attached.pop("attached_at", None)
    return _plain(block.get(VECTORS_KEY) or {}), _plain(attached)


# ---- apply ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply_attachment`` did: the fields it added, those present already, whether it wrote ``_meta``."""

    index: str
    concrete: str
    added: tuple[str, ...]
    present: tuple[str, ...]
    meta_written: bool

    @property
    def changed(self) -> bool:
        return bool(self.added) or self.meta_written

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "concrete_index": self.concrete,
            "added": list(self.added),
            "present": list(self.present),
            "meta_written": self.meta_written,
            "changed": self.changed,
        }

    def render(self) -> str:
        if not self.changed:
            return f"{self.index} is attached already: nothing changed"
        lines = [f"attached {self.index}" + ("" if self.index == self.concrete else f" ({self.concrete})")]
        if self.added:
            lines.append(f"  added fields: {', '.join(self.added)}")
        if self.present:
            lines.append(f"  fields present already: {', '.join(self.present)}")
        if self.meta_written:
            lines.append("  recorded the attachment in _meta.hybrid_search (the shop's _meta keys kept)")
        lines.append("next: `hybrid-search backfill` embeds the documents")
        return "\n".join(lines)


def _attached_entries(plan: AttachPlan, config: AttachConfig) -> dict[str, Any]:
    return {
        VECTORS_KEY: _plain({k: dict(v) for k, v in plan.records.items()}),
        ATTACHED_KEY: {**config.to_meta(), "attached_at": _now()},
    }


def apply_attachment(engine: SearchEngine, plan: AttachPlan) -> ApplyResult:
    """Add the plan's missing ``hs_`` fields and record the attachment in ``_meta``; idempotent.

    Refused (ValidationError, nothing written) when the plan refuses, when a field to send is not an ``hs_``
    one, or when the index changed since the plan so that an ``hs_`` field exists with another mapping. A
    second apply finds everything in place and writes nothing (:attr:`ApplyResult.changed` False).
    """
    if plan.refused:
        raise ValidationError(
            f"attach plan for {plan.config.index} refuses: " + "; ".join(plan.refused), field="index"
        )
    foreign = sorted(name for name in plan.fields if not name.startswith(HS_PREFIX))
    if foreign:
        raise ValidationError(
            f"refusing to change the shop's fields {foreign}: the layer adds hs_ fields only"
        )
    index = plan.config.index
    state = engine.index_state(index)
    add: dict[str, Any] = {}
    present = []
    for name, mapping in plan.fields.items():
        stored = state.properties.get(name)
        if stored is None:
            add[name] = dict(mapping)
        elif covers(stored, mapping):
            present.append(name)
        else:
            raise ValidationError(
                f"{name} exists in {state.name} with another mapping than the plan's: plan again", field=name
            )
    block = _block(state.meta)
    wanted = (_plain({k: dict(v) for k, v in plan.records.items()}), _plain(plan.config.to_meta()))
    meta_written = _recorded(block) != wanted
    # _meta first, the fields after: on an OpenSearch index without index.knn, every mapping update made after a
    # knn_vector field exists fails the shard once (it recovers at once: _settle), so this order makes none
    if meta_written:
        engine.update_meta_block(index, _attached_entries(plan, plan.config))
    if add:
        engine.add_fields(index, add)
    if add or meta_written:
        _settle(engine, index)
    log.info("attach %s: added %s, meta %s", index, sorted(add), "written" if meta_written else "unchanged")
    return ApplyResult(
        index=index, concrete=state.name, added=tuple(add), present=tuple(present), meta_written=meta_written
    )


# ---- detach -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetachResult:
    """What ``detach`` did. ``stripped``: documents whose hs_ values were removed (``method`` ``removed``:
    the keys are gone) or set to null (``method`` ``nulled``: the keys remain, with null values)."""

    index: str
    concrete: str
    meta_removed: bool
    stripped: int | None = None
    method: str | None = None
    left: int = 0  # documents that still have hs_ values (changed by the shop while stripping)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "concrete_index": self.concrete,
            "meta_removed": self.meta_removed,
            "stripped": self.stripped,
            "method": self.method,
            "left": self.left,
            "notes": list(self.notes),
        }

    def render(self) -> str:
        lines = [
            f"detached {self.index}: the attachment and vector records were removed from _meta"
            if self.meta_removed
            else f"{self.index} records no attachment: _meta unchanged"
        ]
        if self.method == "removed":
            lines.append(f"  removed the hs_ values of {self.stripped} documents")
        elif self.method == "nulled":
            lines.append(
                f"  set the hs_ values of {self.stripped} documents to null: this cluster cannot remove keys in "
                "place (no painless), so the hs_ keys remain in _source with null values"
            )
        if self.left:
            lines.append(f"  {self.left} documents still have hs_ values: run detach --strip again")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


def detach(engine: SearchEngine, config: AttachConfig, strip: bool = False) -> DetachResult:
    """Forget the attachment: remove ``attached`` and ``vectors`` from ``_meta.hybrid_search`` (the shop's
    ``_meta`` keys and any other key of the block are kept).

    ``strip``: also remove the ``hs_`` values from the documents: ``remove_fields`` where the cluster can (an
    ``_update_by_query`` script: the keys are gone); where it cannot (EngineError: no painless, as on the local
    Elasticsearch node), every document with hs_ values is updated, conditionally on its sequence number, with
    those fields set to null (the keys remain). The mapping keeps the ``hs_`` fields either way: neither engine
    removes a mapped field. Refused on the layer's own index (vectors recorded, no attachment).
    """
    index = config.index
    state = engine.index_state(index)
    block = _block(state.meta)
    attached = isinstance(block.get(ATTACHED_KEY), Mapping)
    if block.get(VECTORS_KEY) and not attached:
        raise ValidationError(
            f"{state.name} is the layer's own index, not an attached one: refusing to detach it",
            field="index",
        )
    if attached or VECTORS_KEY in block:
        engine.update_meta_block(index, {ATTACHED_KEY: None, VECTORS_KEY: None})
        _settle(engine, index)
    notes = []
    mapped = [name for name in HS_FIELDS if name in state.properties]
    if mapped:
        notes.append(
            f"the mapping keeps {', '.join(mapped)} (a mapped field cannot be removed; a reindex without them would)"
        )
    if not strip:
        return DetachResult(index, state.name, attached, notes=tuple(notes))
    if not mapped:
        return DetachResult(index, state.name, attached, stripped=0, method="removed", notes=tuple(notes))
    try:
        count = engine.remove_fields(index, mapped)
        engine.refresh(index)
        return DetachResult(index, state.name, attached, stripped=count, method="removed", notes=tuple(notes))
    except EngineError as exc:
        if "cannot remove fields in place" not in str(exc):
            raise
        log.info("%s: %s; setting the hs_ values to null instead", index, exc)
    stripped, left = _null_hs_values(engine, index, mapped)
    return DetachResult(
        index, state.name, attached, stripped=stripped, method="nulled", left=left, notes=tuple(notes)
    )


def _null_hs_values(engine: SearchEngine, index: str, fields: list[str]) -> tuple[int, int]:
    """Set ``fields`` to null in every document that has one of them, a page at a time, each update conditional
    on the document's sequence number (the shop's writes meanwhile win; the next page takes them again).
    Returns ``(documents updated, documents still holding values)``."""
    has_values = {"bool": {"should": [{"exists": {"field": f}} for f in fields], "minimum_should_match": 1}}
    request = SearchRequest(
        query=has_values,
        size=STRIP_PAGE,
        source=False,
        track_total_hits=True,
        extra={"seq_no_primary_term": True},
    )
    nulls = dict.fromkeys(fields)
    done = 0
    for _ in range(STRIP_ROUNDS):
        engine.refresh(index)
        hits = engine.search(index, request)["hits"]["hits"]
        if not hits:
            return done, 0
        updates = [
            ConditionalUpdate(str(h["_id"]), int(h["_seq_no"]), int(h["_primary_term"]), nulls) for h in hits
        ]
        result = engine.update_if_unchanged(index, updates, refresh=True)
        done += len(result.written)
        if not result.written and not result.conflicts:
            break  # nothing moves (errors): stop rather than loop
    engine.refresh(index)
    return done, engine.count(index, has_values)


# ---- reindex (OpenSearch without index.knn) ---------------------------------------------------------------


@dataclass(frozen=True)
class ReindexResult:
    """The k-NN copy of an attached index: its name, the documents copied, whether the name moved to it."""

    index: str
    source: str
    copy: str
    documents: int
    moved: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "source": self.source,
            "copy": self.copy,
            "documents": self.documents,
            "moved": self.moved,
        }

    def render(self) -> str:
        if not self.moved:
            return f"cancelled: the copy {self.copy} was deleted; {self.source} is unchanged"
        return (
            f"{self.index} is now an alias of {self.copy} (index.knn: approximate kNN), {self.documents} documents; "
            f"{self.source} was deleted.\n"
            "The shop's writes by id through the name keep working; index-level calls (PUT <name>/_mapping, "
            f"settings) go to {self.copy}; repeat any write made during the copy."
        )


def copy_body(
    engine: SearchEngine, plan: AttachPlan, settings: Mapping[str, Any], mappings: Mapping[str, Any]
) -> dict[str, Any]:
    """The create-index body of the k-NN copy (pure): the shop's index settings that describe the data
    (:data:`COPIED_SETTINGS`) plus ``index.knn: true``, and its mappings with the hs_ vectors approximate."""
    index_settings = dict(settings.get("index", settings))
    copied = {k: _plain(index_settings[k]) for k in COPIED_SETTINGS if k in index_settings}
    copied["knn"] = True
    body_mappings = _plain(dict(mappings))
    properties = body_mappings.setdefault("properties", {})
    for name, rec in plan.records.items():
        properties[name] = engine.vector_mapping(
            name, int(rec["dim"]), str(rec["similarity"]), approximate=True
        )
    for name, mapping in plan.fields.items():
        properties.setdefault(name, _plain(dict(mapping)))
    return {"settings": {"index": copied}, "mappings": body_mappings}


def reindex_attached(engine: SearchEngine, plan: AttachPlan, confirm: Callable[[str], bool]) -> ReindexResult:
    """Give an attached OpenSearch index without ``index.knn`` approximate (HNSW) kNN: a copy with it.

    Creates ``<index>-hs-knn-<n>`` with the shop's analysis and shard settings, ``index.knn: true``, the shop's
    mappings and the hs_ fields (approximate), copies every document into it (``_reindex``: the hs_ vectors
    embedded so far come along), and, once ``confirm(message)`` says yes, deletes the shop's index and makes its
    name an alias of the copy in one atomic step, then records the attachment (``knn: approximate``) on the copy.
    ``confirm`` saying no deletes the copy and changes nothing.

    What the shop must know (and change):

    - its writes go through the alias name: index, update and delete by id keep working unchanged;
    - index-level calls (``PUT <name>/_mapping``, ``_settings``, ``_close``...) go to the concrete index, the
      copy, by its name (an alias answers some and refuses others);
    - writes made during the copy are not in it (``_reindex`` reads a snapshot): pause them until the name moves,
      or repeat them afterwards.

    Refused (ValidationError) on Elasticsearch, on an index that has ``index.knn`` already, on a plan that
    refuses, and when the attachment names an alias (point it at a copy yourself).
    """
    if plan.refused:
        raise ValidationError("attach plan refuses: " + "; ".join(plan.refused), field="index")
    index = plan.config.index
    state = engine.index_state(index)
    if state.engine != "opensearch":
        raise ValidationError(f"{state.engine} runs approximate kNN on {index} already: nothing to reindex")
    if state.knn_setting:
        raise ValidationError(f"{state.name} has index.knn already: kNN is approximate, nothing to reindex")
    if state.name != index:
        raise ValidationError(
            f"{index} is an alias of {state.name}: reindex moves an index's name to its copy; "
            "copy it yourself and point the alias at the copy",
            field="index",
        )
    raw = engine._indices(state.name)[state.name]  # IndexState carries no settings: read them here
    taken = engine._indices(f"{index}-hs-knn-*")
    n = 1
    while f"{index}-hs-knn-{n}" in taken:
        n += 1
    target = f"{index}-hs-knn-{n}"
    engine.create_raw_index(
        target, copy_body(engine, plan, raw.get("settings") or {}, raw.get("mappings") or {})
    )
    try:
        engine.reindex(state.name, target)
        engine.refresh(target)
        copied, expected = engine.count(target), engine.count(state.name)
        if copied != expected:
            raise EngineError(
                f"the copy {target} holds {copied} documents, {state.name} {expected}: not moving"
            )
        message = (
            f"{target} holds all {copied} documents of {index}. Delete {index} and make its name an alias of "
            f"{target}? (pause the shop's writes first: writes since the copy started are not in it)"
        )
        if not confirm(message):
            engine.delete_index(target)
            return ReindexResult(index, state.name, target, copied, moved=False)
    except BaseException:
        engine.delete_index(target)  # the name has not moved: the shop's index is as it was
        raise
    engine.move_name_to_alias(state.name, target)
    resolved = replace(plan.config, knn=KNN_APPROXIMATE)
    engine.update_meta_block(index, _attached_entries(plan, resolved))
    _settle(engine, index)
    log.info(
        "reindexed %s into %s (%d documents); the name is an alias of the copy", state.name, target, copied
    )
    return ReindexResult(index, state.name, target, copied, moved=True)


__all__ = [
    "ApplyResult",
    "DetachResult",
    "ReindexResult",
    "apply_attachment",
    "copy_body",
    "detach",
    "reindex_attached",
]
