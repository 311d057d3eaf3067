"""An attachment: a shop's own index, searched by the layer through its field roles and its own lexical query.

    config = load_attach_config(Path("attach.toml"))     # refuses a bad file, naming the key
    config.schema.value_field("title")                    # "name": the shop's field for the role
    config.lexical.body("red coat")                       # the shop's own BM25 query, for this text
    content_hash(source, config.schema, config.images)    # what the vectors were embedded from

The attachment file (TOML; docs/attach.md describes every key)::

    index = "shop-products"
    [fields]            # role = the shop's field (roles: hybrid_search.catalog.schema.ROLES)
    id = "sku"
    title = "name"
    extra_facets = ["season"]
    [keywords]          # a text field's keyword sub-field, for filters, facets and doc values (plan finds them)
    name = "name.raw"
    [images]
    root = "/srv/media"                  # relative paths; or url_base = "https://cdn.example.com/" ...
    [lexical]
    fields = ["name^3", "body"]          # or query = '{...{{query}}...}' or template = "shop-search"

Pure data and functions: nothing here talks to an engine. The layer writes only ``hs_``-prefixed fields
(:data:`HS_PREFIX`) next to the shop's, and records the attachment (this configuration, resolved by ``attach
plan``) in the index's ``_meta`` under ``hybrid_search.attached`` (:meth:`AttachConfig.to_meta`), so every process
that searches or embeds the index reads the same one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hybrid_search.catalog.records import product_text
from hybrid_search.catalog.schema import ROLES, FieldSchema
from hybrid_search.errors import ConfigurationError

HS_PREFIX = "hs_"
ATTACHED_KEY = "attached"  # _meta.hybrid_search.attached
ATTACH_SCHEMA = 1
QUERY_PLACEHOLDER = "{{query}}"

# what the layer writes into a shop's document (every name starts with HS_PREFIX)
VECTOR_FIELDS: dict[str, str] = {  # encoder role -> vector field
    "text": "hs_text_vector",
    "image": "hs_image_vector",
    "colour": "hs_colour_vector",
    "fused": "hs_fused_vector",
}
CONTENT_HASH_FIELD = "hs_content_hash"  # sha256 of what the vectors were embedded from (content_input)
MODEL_VERSION_FIELD = "hs_model_version"  # the encoders that embedded it (model_version)
EMBEDDED_AT_FIELD = "hs_embedded_at"
HS_FIELDS: tuple[str, ...] = (
    *VECTOR_FIELDS.values(),
    CONTENT_HASH_FIELD,
    MODEL_VERSION_FIELD,
    EMBEDDED_AT_FIELD,
)
_TOP_KEYS = ("index", "fields", "keywords", "images", "lexical")
_FIELD_KEYS = (*ROLES, "extra_facets")
_LEXICAL_KEYS = ("fields", "query", "template")


# ---- pieces of the configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSource:
    """Where the shop's ``image`` values point: ``root`` for relative paths, or ``url_base`` that relative values
    are appended to. An absolute http(s) URL is used as it is; either way the photo is read by the safe loader
    (``hybrid_search.media.photos.read_photo``: allowed roots, http(s) only, no internal addresses)."""

    root: Path | None = None
    url_base: str | None = None

    def __post_init__(self) -> None:
        if self.root is not None and self.url_base is not None:
            raise ConfigurationError("images: give root or url_base, not both")
        if self.url_base is not None and not self.url_base.lower().startswith(("http://", "https://")):
            raise ConfigurationError(f"images.url_base must be an http(s) URL, got {self.url_base!r}")

    def locate(self, value: str) -> str:
        """The path or URL the loader reads for the shop's image ``value``."""
        value = value.strip()
        if "://" in value or self.url_base is None:
            return value
        return self.url_base.rstrip("/") + "/" + value.lstrip("/")


@dataclass(frozen=True)
class LexicalSpec:
    """The shop's BM25 query, in one of three forms (exactly one is set):

    - ``fields``: a ``multi_match`` over these fields with their boosts (``"name^3"``), as the layer's own;
    - ``query``: a query template, parsed JSON in which the string value ``"{{query}}"`` stands for the
      shopper's text (substituted as a JSON string value, never spliced into the text of the template);
    - ``template``: the id of a search template stored in the cluster, rendered with the param ``query``.
    """

    fields: tuple[str, ...] = ()
    query: Mapping[str, Any] | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        given = [k for k in _LEXICAL_KEYS if getattr(self, k)]
        if len(given) != 1:
            raise ConfigurationError(
                f"lexical: give exactly one of fields, query, template (got {', '.join(given) or 'none'})"
            )
        if self.query is not None and _placeholders(self.query) == 0:
            raise ConfigurationError(
                f'lexical.query must hold the string value "{QUERY_PLACEHOLDER}" where the shopper\'s text goes'
            )

    @property
    def kind(self) -> str:
        return next(k for k in _LEXICAL_KEYS if getattr(self, k))

    def body(self, text: str) -> dict[str, Any]:
        """The query clause for ``text`` (``fields`` and ``query`` forms; a stored ``template`` is rendered by
        the engine: ``SearchEngine.render_template``)."""
        if self.query is not None:
            return dict(substitute(self.query, text))
        if self.fields:
            return {
                "multi_match": {
                    "query": text,
                    "fields": list(self.fields),
                    "type": "best_fields",
                    "operator": "or",
                }
            }
        raise ConfigurationError(f"lexical.template {self.template!r} is rendered by the engine, not here")

    def as_dict(self) -> dict[str, Any]:
        if self.query is not None:
            return {"query": copy.deepcopy(dict(self.query))}
        if self.fields:
            return {"fields": list(self.fields)}
        return {"template": self.template}


def _placeholders(value: Any) -> int:
    if isinstance(value, str):
        return int(value == QUERY_PLACEHOLDER)
    if isinstance(value, Mapping):
        return sum(_placeholders(v) for v in value.values())
    if isinstance(value, list):
        return sum(_placeholders(v) for v in value)
    return 0


def substitute(template: Any, text: str) -> Any:
    """A copy of the parsed ``template`` with every string value ``"{{query}}"`` replaced by ``text``."""
    if isinstance(template, str):
        return text if template == QUERY_PLACEHOLDER else template
    if isinstance(template, Mapping):
        return {k: substitute(v, text) for k, v in template.items()}
    if isinstance(template, list):
        return [substitute(v, text) for v in template]
    return template


# ---- the attachment ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachConfig:
    """One attached index: its name, its field roles, where its photos are, its lexical query.

    ``knn``: ``approximate`` (HNSW) or ``exact`` (OpenSearch index without ``index.knn``: a ``script_score``
    over the pre-filtered documents), decided by ``attach plan``; ``""`` until then.
    """

    index: str
    schema: FieldSchema
    lexical: LexicalSpec
    images: ImageSource = field(default_factory=ImageSource)
    knn: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.index, str) or not self.index.strip():
            raise ConfigurationError("index must name the shop's index")
        if self.knn not in ("", "approximate", "exact"):
            raise ConfigurationError(f"knn must be approximate or exact, got {self.knn!r}")
        for role in ROLES:
            name = self.schema.value_field(role)
            if name is not None and name.startswith(HS_PREFIX):
                raise ConfigurationError(f"fields.{role}: {name!r} is a layer field ({HS_PREFIX} prefix)")

    def with_schema(self, schema: FieldSchema) -> AttachConfig:
        return replace(self, schema=schema)

    def to_meta(self) -> dict[str, Any]:
        """Plain JSON data for ``_meta.hybrid_search.attached`` (read back with :meth:`from_meta`)."""
        s = self.schema
        return {
            "schema": ATTACH_SCHEMA,
            "index": self.index,
            "fields": {role: s.value_field(role) for role in ROLES if s.value_field(role) is not None},
            "extra_facets": list(s.extra_facets),
            "keywords": dict(s.keywords),
            "match": list(s.match),
            "attributes": s.attributes,
            "images": {
                "root": None if self.images.root is None else str(self.images.root),
                "url_base": self.images.url_base,
            },
            "lexical": self.lexical.as_dict(),
            "knn": self.knn,
        }

    @classmethod
    def from_meta(cls, data: Mapping[str, Any]) -> AttachConfig:
        """The attachment recorded in an index's ``_meta`` (:meth:`to_meta`); ConfigurationError when damaged."""
        try:
            roles = dict(data.get("fields") or {})
            images = dict(data.get("images") or {})
            schema = FieldSchema(
                **{k: v for k, v in roles.items() if k in ROLES},
                extra_facets=tuple(data.get("extra_facets") or ()),
                keywords=dict(data.get("keywords") or {}),
                match=tuple(data.get("match") or ()),
                attributes=data.get("attributes"),
            )
            lexical = dict(data.get("lexical") or {})
            return cls(
                index=str(data["index"]),
                schema=schema,
                lexical=LexicalSpec(
                    fields=tuple(lexical.get("fields") or ()),
                    query=lexical.get("query"),
                    template=lexical.get("template"),
                ),
                images=ImageSource(
                    root=Path(images["root"]) if images.get("root") else None,
                    url_base=images.get("url_base") or None,
                ),
                knn=str(data.get("knn") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"the attachment recorded in the index's _meta is damaged: {exc}"
            ) from None


def attachment_from_meta(meta: Mapping[str, Any] | None) -> AttachConfig | None:
    """The attachment of an index ``_meta`` (its whole ``_meta`` object), or None when it has none."""
    block = (meta or {}).get("hybrid_search") or {}
    data = block.get(ATTACHED_KEY) if isinstance(block, Mapping) else None
    return AttachConfig.from_meta(data) if isinstance(data, Mapping) else None


# ---- the file ------------------------------------------------------------------------------------------


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{key} must be a non-empty string, got {value!r}")
    return value.strip()


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigurationError(f"{key} must be a non-empty list of strings, got {value!r}")
    return tuple(_string(v, f"{key}[{n}]") for n, v in enumerate(value))


def _unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise ConfigurationError(
                f"unknown key {prefix}{key} (allowed{' in [' + where + ']' if where else ''}: {', '.join(allowed)})"
            )


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{key} must be a table ([{key}]), got {type(value).__name__}")
    return value


def parse_attach_config(data: Mapping[str, Any]) -> AttachConfig:
    """The attachment described by parsed TOML ``data``; ConfigurationError naming the first bad key."""
    _unknown(data, _TOP_KEYS, "")
    index = _string(data.get("index"), "index")
    roles = _table(data, "fields")
    _unknown(roles, _FIELD_KEYS, "fields")
    if "title" not in roles:
        raise ConfigurationError("fields.title is required: hits show it and BM25 matches it")
    named = {
        role: _string(value, f"fields.{role}") for role, value in roles.items() if role != "extra_facets"
    }
    extra = _strings(roles["extra_facets"], "fields.extra_facets") if "extra_facets" in roles else ()
    keywords = {
        _string(k, "keywords"): _string(v, f"keywords.{k}") for k, v in _table(data, "keywords").items()
    }
    images_table = _table(data, "images")
    _unknown(images_table, ("root", "url_base"), "images")
    images = ImageSource(
        root=Path(_string(images_table["root"], "images.root")) if "root" in images_table else None,
        url_base=_string(images_table["url_base"], "images.url_base") if "url_base" in images_table else None,
    )
    lexical_table = _table(data, "lexical")
    _unknown(lexical_table, _LEXICAL_KEYS, "lexical")
    query = None
    if "query" in lexical_table:
        raw = _string(lexical_table["query"], "lexical.query")
        try:
            query = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"lexical.query is not JSON: {exc}") from None
        if not isinstance(query, dict):
            raise ConfigurationError("lexical.query must be a JSON object (a query clause)")
    roles_given: dict[str, Any] = dict(named)
    schema = FieldSchema(**roles_given, extra_facets=extra, keywords=keywords)
    lexical = LexicalSpec(
        fields=_strings(lexical_table["fields"], "lexical.fields") if "fields" in lexical_table else (),
        query=query,
        template=_string(lexical_table["template"], "lexical.template") if "template" in lexical_table else None,
    ) if lexical_table else LexicalSpec(fields=schema.match_fields())  # fmt: skip
    return AttachConfig(index=index, schema=schema, lexical=lexical, images=images)


def load_attach_config(path: Path) -> AttachConfig:
    """Read and check an attachment file; ConfigurationError naming the file and the bad key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the attachment file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not UTF-8 text") from None
    try:
        return parse_attach_config(data)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from None


# ---- reading the shop's documents ----------------------------------------------------------------------


def source_value(source: Mapping[str, Any], path: str) -> Any:
    """The value of field ``path`` in a ``_source``: ``a.b`` is read as a key ``a.b`` or as ``{"a": {"b"}}``."""
    if path in source:
        return source[path]
    head, dot, rest = path.partition(".")
    while dot:
        inner = source.get(head)
        if isinstance(inner, Mapping):
            return source_value(inner, rest)
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return None


def _flat(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v).strip() for v in value if v is not None and str(v).strip()) or None
    return value


def role_values(source: Mapping[str, Any], schema: FieldSchema) -> dict[str, Any]:
    """``{field: value}`` of the schema's role fields in a shop document (dotted fields read through objects)."""
    return {
        name: source_value(source, name) for role in ROLES if (name := schema.value_field(role)) is not None
    }


def embed_text(source: Mapping[str, Any], schema: FieldSchema) -> str:
    """The text the ``hs_text_vector`` embeds: the text roles' values (lists joined with commas)."""
    return product_text({k: _flat(v) for k, v in role_values(source, schema).items()}, schema)


def image_ref(source: Mapping[str, Any], schema: FieldSchema, images: ImageSource) -> str | None:
    """The path or URL of the document's photo (the first, for a list), or None."""
    name = schema.value_field("image")
    value = None if name is None else source_value(source, name)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return images.locate(value) if isinstance(value, str) and value.strip() else None


def content_hash(source: Mapping[str, Any], schema: FieldSchema, images: ImageSource) -> str:
    """What a document's vectors are embedded from, hashed: its embedded text and its photo's path or URL.

    A price or stock change leaves it as it is (nothing to embed); a new title, description or photo changes
    it. A photo file replaced under the same path is not seen (the hash reads the reference, not the bytes).
    """
    data = json.dumps([embed_text(source, schema), image_ref(source, schema, images)], ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:32]


def model_version(records: Mapping[str, Mapping[str, Any]]) -> str:
    """The encoders of an attachment's vector fields (``{field: {"encoder", "version"}}``) in one string:
    a document embedded by other models is stale."""
    return ";".join(
        f"{name}={rec.get('encoder')}@{rec.get('version')}" for name, rec in sorted(records.items())
    )


def is_stale(
    source: Mapping[str, Any], config: AttachConfig, version: str, *, content: str | None = None
) -> bool:
    """Whether a shop document needs embedding: no vectors yet (or the shop's overwrite dropped them), other
    content than its vectors were embedded from, or vectors from other models."""
    wanted = content if content is not None else content_hash(source, config.schema, config.images)
    return source.get(CONTENT_HASH_FIELD) != wanted or source.get(MODEL_VERSION_FIELD) != version


__all__ = [
    "ATTACHED_KEY",
    "CONTENT_HASH_FIELD",
    "EMBEDDED_AT_FIELD",
    "HS_FIELDS",
    "HS_PREFIX",
    "MODEL_VERSION_FIELD",
    "QUERY_PLACEHOLDER",
    "VECTOR_FIELDS",
    "AttachConfig",
    "ImageSource",
    "LexicalSpec",
    "attachment_from_meta",
    "content_hash",
    "embed_text",
    "image_ref",
    "is_stale",
    "load_attach_config",
    "model_version",
    "parse_attach_config",
    "role_values",
    "source_value",
    "substitute",
]
