"""``attach plan``: what attaching the layer to a shop's index would do, read from the index, changing nothing.

    plan = plan_attachment(engine, config, settings)   # reads the index's mapping, settings and _meta
    print(plan.render())                               # the fields to add, the kNN mode, every risk
    plan.refused                                       # () when ``apply_attachment`` may go ahead

The plan holds:

- ``fields``: the ``hs_`` fields the attachment needs (one vector per configured encoder role, sized by its
  encoder, plus the content hash, the model version and the embedding time), each in the engine's mapping;
  ``additions`` are those the index does not have yet. Nothing else is ever added or changed.
- ``records``: the encoder of each vector field, for ``_meta.hybrid_search.vectors``.
- ``knn``: ``approximate`` (HNSW: Elasticsearch, or an OpenSearch index with ``index.knn``) or ``exact``
  (an OpenSearch index without it: each kNN query scores every document that passes its filters).
- ``refused``: what stops the attachment (``_source`` disabled, a role's field missing from the mapping or
  from ``_source``, an ``hs_`` field that exists with another mapping, the layer's own index...);
  ``warnings`` and ``notes``: what works differently from the layer's own index, and why.
- ``config``: the attachment resolved against the index (``knn`` decided, ``keywords`` found for text fields
  that filters and facets read), which ``apply_attachment`` records in the index's ``_meta``.

Only :meth:`SearchEngine.index_state` (and, for a stored lexical template, ``render_template``) is called.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hybrid_search.catalog.attachment import (
    ATTACHED_KEY,
    CONTENT_HASH_FIELD,
    EMBEDDED_AT_FIELD,
    HS_PREFIX,
    MODEL_VERSION_FIELD,
    VECTOR_FIELDS,
    AttachConfig,
)
from hybrid_search.catalog.schema import ROLES
from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine
from hybrid_search.engine.definition import META_KEY, vector_roles
from hybrid_search.errors import EngineError
from hybrid_search.settings import Settings

# the scalar hs_ fields, next to the vectors
SCALAR_FIELDS: dict[str, dict[str, Any]] = {
    CONTENT_HASH_FIELD: {"type": "keyword"},
    MODEL_VERSION_FIELD: {"type": "keyword"},
    EMBEDDED_AT_FIELD: {"type": "date"},
}
# roles whose exact values filters, facets or doc-value reads use (they need a keyword field, not a text one)
KEYWORD_ROLES: tuple[str, ...] = (
    "id",
    "title",
    "brand",
    "category",
    "colour",
    "size",
    "material",
    "currency",
)
# roles that need an image to embed
IMAGE_ENCODER_ROLES: tuple[str, ...] = ("image", "colour", "fused")
TEXT_TYPES = frozenset({"text", "match_only_text", "search_as_you_type", "annotated_text"})
OBJECT_TYPES = frozenset({"object", "nested", "flattened"})
KEYWORD_SUBFIELDS = ("raw", "keyword", "exact", "sort")  # the names looked for first, in this order
KNN_APPROXIMATE = "approximate"
KNN_EXACT = "exact"


# ---- reading a mapping (pure) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedField:
    """A field found in a mapping: its mapping, and whether it is a multi-field (no value of its own in
    ``_source``: ``name.raw`` indexes ``name``'s value)."""

    path: str
    mapping: Mapping[str, Any]
    subfield: bool = False

    @property
    def type(self) -> str:
        default = "object" if "properties" in self.mapping else ""
        return str(self.mapping.get("type", default))


def find_field(properties: Mapping[str, Any], path: str) -> MappedField | None:
    """The mapping of field ``path`` (``a.b``: property ``b`` of object ``a``, or multi-field ``b`` of ``a``)."""
    parts = path.split(".")
    level: Mapping[str, Any] = properties
    for n, part in enumerate(parts):
        found = level.get(part)
        if not isinstance(found, Mapping):
            return None
        rest = parts[n + 1 :]
        if not rest:
            return MappedField(path, found)
        if isinstance(found.get("properties"), Mapping):
            level = found["properties"]
            continue
        subfields = found.get("fields")
        if len(rest) == 1 and isinstance(subfields, Mapping) and isinstance(subfields.get(rest[0]), Mapping):
            return MappedField(path, subfields[rest[0]], subfield=True)
        return None
    return None


def field_paths(properties: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every field path of a mapping, objects' properties and multi-fields included."""
    out: list[str] = []
    for name, mapping in properties.items():
        if not isinstance(mapping, Mapping):
            continue
        path = f"{prefix}{name}"
        out.append(path)
        if isinstance(mapping.get("properties"), Mapping):
            out.extend(field_paths(mapping["properties"], f"{path}."))
        if isinstance(mapping.get("fields"), Mapping):
            out.extend(f"{path}.{sub}" for sub in mapping["fields"])
    return out


def _matches(path: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("*").rstrip(".") + ".")


def kept_in_source(path: str, includes: Sequence[str], excludes: Sequence[str]) -> bool:
    """Whether ``_source`` keeps field ``path`` under the mapping's ``_source.includes`` / ``excludes``."""
    if includes and not any(_matches(path, p) for p in includes):
        return False
    return not any(_matches(path, p) for p in excludes)


def covers(stored: Any, wanted: Any) -> bool:
    """Whether a stored mapping has every setting of ``wanted`` (the engine adds its defaults to what it stores)."""
    if isinstance(wanted, Mapping):
        return isinstance(stored, Mapping) and all(covers(stored.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return stored is wanted or str(stored).lower() == str(wanted).lower()
    if isinstance(wanted, (int, float)) and isinstance(stored, (int, float)):
        return float(stored) == float(wanted)
    return bool(stored == wanted or str(stored) == str(wanted))


def keyword_subfield(mapped: MappedField) -> str | None:
    """The keyword multi-field of a text field (``name.raw``), or None."""
    subfields = mapped.mapping.get("fields")
    if not isinstance(subfields, Mapping):
        return None
    keywords = [n for n, m in subfields.items() if isinstance(m, Mapping) and m.get("type") == "keyword"]
    for name in (*KEYWORD_SUBFIELDS, *sorted(keywords)):
        if name in keywords:
            return f"{mapped.path}.{name}"
    return None


# ---- the plan --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnnPlan:
    """How kNN runs on the index: ``mode`` (approximate / exact), why, and for exact kNN its cost per query
    (``{field: documents x dims}`` multiply-adds)."""

    mode: str
    reason: str
    cost: Mapping[str, int] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        return self.mode == KNN_APPROXIMATE


@dataclass(frozen=True)
class AttachPlan:
    """What ``apply_attachment`` would do to one index, and every risk found (see the module docstring)."""

    config: AttachConfig
    concrete: str
    engine: str
    documents: int
    fields: Mapping[str, Mapping[str, Any]]
    additions: tuple[str, ...]
    records: Mapping[str, Mapping[str, Any]]
    knn: KnnPlan
    keywords_found: Mapping[str, str] = field(default_factory=dict)
    refused: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    attached: bool = False  # the index records an attachment already

    @property
    def ok(self) -> bool:
        return not self.refused

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (``attach plan --json``)."""
        return {
            "index": self.config.index,
            "concrete_index": self.concrete,
            "engine": self.engine,
            "documents": self.documents,
            "ok": self.ok,
            "attached": self.attached,
            "fields": copy.deepcopy({k: dict(v) for k, v in self.fields.items()}),
            "additions": list(self.additions),
            "vectors": copy.deepcopy({k: dict(v) for k, v in self.records.items()}),
            "knn": {"mode": self.knn.mode, "reason": self.knn.reason, "cost": dict(self.knn.cost)},
            "keywords_found": dict(self.keywords_found),
            "refused": list(self.refused),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "config": self.config.to_meta(),
        }

    def render(self) -> str:
        """The plan as text, for ``hybrid-search attach plan``."""
        name = self.config.index
        where = name if name == self.concrete else f"{name} (alias of {self.concrete})"
        lines = [f"attach plan for {where}: {self.engine}, {self.documents:,} documents"]
        if self.attached:
            lines.append("the index is attached already (apply again changes only what differs)")
        lines += [
            "",
            "the layer's hs_ fields (add: apply adds it; present: mapped already). The shop's fields and documents are not changed:",
        ]
        width = max((len(n) for n in self.fields), default=0)
        for fname, mapping in self.fields.items():
            state = "add" if fname in self.additions else "present"
            what = str(mapping.get("type", ""))
            record = self.records.get(fname)
            if record is not None:
                what += f" {record['dim']}d {record['similarity']}, encoder {record['encoder']} ({record['version']})"
            lines.append(f"  {fname:<{width}}  {state:<7}  {what}")
        lines += ["", f"kNN: {self.knn.mode}: {self.knn.reason}"]
        for fname, cost in self.knn.cost.items():
            dim = self.records[fname]["dim"]
            lines.append(
                f"  {fname}: {self.documents:,} documents x {dim} dims = {cost:,} multiply-adds per query"
            )
        if self.keywords_found:
            found = ", ".join(f"{k} -> {v}" for k, v in self.keywords_found.items())
            lines += ["", f"keyword fields for filters and facets: {found}"]
        for title, items in (("REFUSED", self.refused), ("WARNINGS", self.warnings), ("NOTES", self.notes)):
            if items:
                lines += ["", f"{title}:"] + [f"  - {item}" for item in items]
        lines.append("")
        if self.refused:
            lines.append("refused: fix the above, then plan again")
        elif not self.additions and self.attached:
            lines.append("nothing to add: `hybrid-search attach apply` would change nothing")
        else:
            lines.append(
                "ready: `hybrid-search attach apply --config FILE` adds these fields and records the attachment"
            )
        return "\n".join(lines)


def vector_fields(
    settings: Settings, encoders: Mapping[str, Any] | None, *, with_images: bool
) -> dict[str, dict[str, Any]]:
    """``{hs_ vector field: {"encoder", "version", "dim", "similarity"}}`` of the configured encoders (no model
    loads: names, versions and dims only). Without images, only the text vector."""
    similarity = {
        spec.get("source"): spec.get("similarity", "cosine")
        for spec in vector_roles(settings.mappings_dir).values()
    }
    records = {}
    for role, (ref, dim) in encoder_records(settings, encoders).items():
        if role not in VECTOR_FIELDS or (role in IMAGE_ENCODER_ROLES and not with_images):
            continue
        records[VECTOR_FIELDS[role]] = {
            **ref.as_meta(),
            "dim": int(dim),
            "similarity": str(similarity.get(role, "cosine")),
        }
    return records


def plan_attachment(
    engine: SearchEngine, config: AttachConfig, settings: Settings, encoders: Mapping[str, Any] | None = None
) -> AttachPlan:
    """Read ``config.index`` and say what attaching would do (see the module docstring); changes nothing.

    ``encoders``: ``{role: encoder}`` (default: the configured ones, which load no model for this).
    Raises ``IndexNotFoundError`` when the index does not exist.
    """
    state = engine.index_state(config.index)
    properties: Mapping[str, Any] = state.properties or {}
    schema = config.schema
    refused: list[str] = []
    warnings: list[str] = []
    notes: list[str] = []

    if state.name != config.index:
        notes.append(
            f"{config.index} is an alias of {state.name}: fields and _meta are written to {state.name}"
        )

    block = (state.meta or {}).get(META_KEY) or {}
    attached = isinstance(block, Mapping) and isinstance(block.get(ATTACHED_KEY), Mapping)
    if isinstance(block, Mapping) and block.get("vectors") and not attached:
        refused.append(
            f"{state.name} is the layer's own index (its _meta records vectors and no attachment): "
            "search it directly, it needs no attachment"
        )
    if not state.source_enabled:
        refused.append(
            "_source is disabled: the layer reads the shop's fields from _source to embed them, "
            "and partial updates of the hs_ fields need it"
        )

    # ---- the role fields ----
    includes, excludes = tuple(state.source_includes), tuple(state.source_excludes)
    mapped: dict[str, MappedField] = {}
    for role in ROLES:
        name = schema.value_field(role)
        if name is None:
            continue
        found = find_field(properties, name)
        if found is None:
            refused.append(f"fields.{role}: {name!r} is not in the index's mapping")
            continue
        if found.subfield:
            parent = name.rsplit(".", 1)[0]
            refused.append(
                f"fields.{role}: {name!r} is a multi-field of {parent!r} with no value of its own in _source: "
                f"use {role} = {parent!r} (and keywords.{parent} = {name!r} for filters and facets)"
            )
            continue
        if found.type in OBJECT_TYPES:
            refused.append(f"fields.{role}: {name!r} is an {found.type} field, not a value")
            continue
        if not kept_in_source(name, includes, excludes):
            refused.append(f"fields.{role}: {name!r} is left out of _source (_source includes/excludes)")
            continue
        mapped[role] = found
    for extra in schema.extra_facets:
        found = find_field(properties, extra)
        if found is None:
            refused.append(f"fields.extra_facets: {extra!r} is not in the index's mapping")
        elif found.type in TEXT_TYPES and extra not in schema.keywords:
            warnings.append(
                f"fields.extra_facets: {extra!r} is a text field with no keyword: its facet is left out"
            )
    for source, keyword in schema.keywords.items():
        found = find_field(properties, keyword)
        if found is None:
            refused.append(f"keywords.{source}: {keyword!r} is not in the index's mapping")
        elif found.type in TEXT_TYPES:
            refused.append(f"keywords.{source}: {keyword!r} is a text field, not a keyword")

    # ---- keyword fields for the text roles that filters, facets and doc values read ----
    keywords = dict(schema.keywords)
    keywords_found: dict[str, str] = {}
    for role in KEYWORD_ROLES:
        found = mapped.get(role)
        if found is None or found.type not in TEXT_TYPES or found.path in keywords:
            continue
        sub = keyword_subfield(found)
        if sub is not None:
            keywords[found.path] = sub
            keywords_found[found.path] = sub
        else:
            warnings.append(
                f"fields.{role}: {found.path!r} is a text field with no keyword sub-field: "
                f"filters, facets and doc-value reads of {role} are left out"
            )

    # ---- the roles the layer lives without ----
    id_field = mapped.get("id")
    if schema.value_field("id") is None:
        notes.append(
            "no id role: a product is its document _id; backfill pages in index order (_doc/_shard_doc) and a restart starts over"
        )
    elif id_field is not None and id_field.type not in ("keyword", "constant_keyword"):
        notes.append(
            f"fields.id: {id_field.path!r} is a {id_field.type} field, not a keyword: "
            "backfill pages in index order (_doc/_shard_doc) and a restart starts over"
        )
    updated = mapped.get("updated_at")
    if schema.value_field("updated_at") is None:
        warnings.append(
            "no updated_at role: sync cannot ask for the documents changed since its last run, "
            "it compares content hashes over the whole index"
        )
    elif updated is not None and updated.type not in ("date", "date_nanos"):
        warnings.append(
            f"fields.updated_at: {updated.path!r} is a {updated.type} field, not a date: "
            "sync compares content hashes over the whole index"
        )
    with_images = schema.value_field("image") is not None
    if not with_images:
        notes.append(
            "no image role: no photo search (only hs_text_vector is added; no image, colour or fused vectors)"
        )

    # ---- the lexical query: the shop's own ----
    lexical = config.lexical
    if lexical.kind == "fields":
        paths = field_paths(properties)
        missing = [
            f for f in lexical.fields if not any(fnmatch.fnmatchcase(p, f.split("^", 1)[0]) for p in paths)
        ]
        if missing and len(missing) == len(lexical.fields):
            refused.append(f"lexical.fields: none of {list(lexical.fields)} is in the index's mapping")
        elif missing:
            warnings.append(f"lexical.fields: {missing} not in the index's mapping (they match nothing)")
        notes.append(f"BM25 is the shop's own multi_match over {', '.join(lexical.fields)}")
    elif lexical.kind == "query":
        notes.append(
            "BM25 is the shop's own query (lexical.query), sent as given with the shopper's text in it"
        )
    else:
        try:
            engine.render_template(str(lexical.template), {"query": "attach plan"})
        except EngineError as exc:
            refused.append(f"lexical.template {lexical.template!r} cannot be rendered: {exc}")
        else:
            notes.append(f"BM25 is the shop's stored search template {lexical.template!r}")

    # ---- the hs_ fields ----
    approximate = state.engine == "elasticsearch" or bool(state.knn_setting)
    records = vector_fields(settings, encoders, with_images=with_images)
    wanted: dict[str, dict[str, Any]] = {
        name: engine.vector_mapping(name, rec["dim"], rec["similarity"], approximate=approximate)
        for name, rec in records.items()
    }
    wanted.update(copy.deepcopy(SCALAR_FIELDS))
    additions = []
    for name, mapping in wanted.items():
        stored = properties.get(name)
        if stored is None:
            additions.append(name)
        elif not covers(stored, mapping):
            refused.append(
                f"{name} exists with another mapping ({_brief(stored)}; the attachment needs {_brief(mapping)}): "
                "the engine cannot change a field's mapping"
            )
    for name in wanted:
        if not kept_in_source(name, includes, excludes):
            refused.append(
                f"{name} would be left out of _source (_source includes/excludes): updates would drop it"
            )
    unused = sorted(n for n in properties if n.startswith(HS_PREFIX) and n not in wanted)
    if unused:
        notes.append(f"hs_ fields in the mapping that this attachment does not use: {', '.join(unused)}")
    old = dict(block.get("vectors") or {}) if attached else {}
    changed = sorted(
        n
        for n, rec in records.items()
        if n in old and (old[n].get("encoder"), old[n].get("version")) != (rec["encoder"], rec["version"])
    )
    if changed:
        warnings.append(
            f"{', '.join(changed)}: other encoders than the ones recorded; backfill re-embeds every document, "
            "and kNN mixes the two models until it is done"
        )

    # ---- kNN ----
    if approximate:
        why = (
            "Elasticsearch indexes dense_vector fields with HNSW"
            if state.engine == "elasticsearch"
            else "the OpenSearch index has index.knn: the hs_ vectors get HNSW graphs"
        )
        knn = KnnPlan(KNN_APPROXIMATE, why)
    else:
        knn = KnnPlan(
            KNN_EXACT,
            "OpenSearch index without index.knn (a static setting): every kNN query scores every document "
            "that passes its filters; `hybrid-search attach reindex` builds a k-NN copy behind the same name",
            {name: state.documents * rec["dim"] for name, rec in records.items()},
        )
        warnings.append(
            "OpenSearch (2.19 k-NN) on an index without index.knn: once it has a knn_vector field, every later "
            "mapping update (PUT _mapping, a _meta change too) fails the shard once; it recovers from its own "
            "files within a second, and requests meanwhile get 503. `hybrid-search attach reindex` avoids it"
        )

    resolved = replace(config.with_schema(replace(schema, keywords=keywords)), knn=knn.mode)
    return AttachPlan(
        config=resolved,
        concrete=state.name,
        engine=state.engine,
        documents=state.documents,
        fields=wanted,
        additions=tuple(additions),
        records=records,
        knn=knn,
        keywords_found=keywords_found,
        refused=tuple(refused),
        warnings=tuple(warnings),
        notes=tuple(notes),
        attached=attached,
    )


def _brief(mapping: Mapping[str, Any]) -> str:
    kind = mapping.get("type", "?")
    dim = mapping.get("dimension", mapping.get("dims"))
    return f"{kind} {dim}d" if dim is not None else str(kind)


__all__ = [
    "KNN_APPROXIMATE",
    "KNN_EXACT",
    "SCALAR_FIELDS",
    "AttachPlan",
    "KnnPlan",
    "MappedField",
    "covers",
    "field_paths",
    "find_field",
    "kept_in_source",
    "keyword_subfield",
    "plan_attachment",
    "vector_fields",
]
