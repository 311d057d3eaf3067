"""The products index, engine-neutral: what the mapping files say plus the encoders that fill each vector.

Pure data and functions: nothing here talks to an engine. Each engine dialect renders an
:class:`IndexDefinition` into its own create-index body (see ``opensearch.py`` / ``elasticsearch.py``).

The index ``_meta`` records, per vector field, which encoder produced its vectors::

    {"hybrid_search": {"schema": 1, "vectors": {"text_vector": {"encoder": "minilm", "version": "...",
                                                                "dim": 384, "similarity": "cosine"}}}}

and writes are refused when the caller's encoder differs (:func:`check_vector_sources`).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast

from hybrid_search.errors import ConfigurationError, EncoderMismatchError

META_KEY = "hybrid_search"
META_SCHEMA = 1
Similarity = Literal["cosine", "dot_product", "l2"]
SIMILARITIES: tuple[str, ...] = ("cosine", "dot_product", "l2")
_VERSIONED = re.compile(r"^(?P<alias>.+)-v(?P<n>[0-9]+)$")


def nested_path(field: str) -> str | None:
    """Vector fields named ``<object>.<field>`` live in a ``nested`` object (several vectors per document).

    ``photos.image_vector`` -> ``photos``: one nested object per product photo; a document's score on such a
    field is the best score of its objects. Top-level names -> None.
    """
    return field.rsplit(".", 1)[0] if "." in field else None


def vector_values(document: Mapping[str, Any], field: str) -> list[Any]:
    """The vectors of ``field`` that ``document`` carries: one for a top-level field, one per nested object."""
    path = nested_path(field)
    if path is None:
        value = document.get(field)
        return [] if value is None else [value]
    leaf = field[len(path) + 1 :]
    objects = document.get(path)
    if not isinstance(objects, list):
        return []
    return [o[leaf] for o in objects if isinstance(o, Mapping) and o.get(leaf) is not None]


@dataclass(frozen=True)
class EncoderRef:
    """Identity of the model that produced a vector field: its name and a version of its weights."""

    name: str
    version: str

    def as_meta(self) -> dict[str, str]:
        return {"encoder": self.name, "version": self.version}


@dataclass(frozen=True)
class VectorField:
    """A dense vector field of the index."""

    name: str
    dim: int
    similarity: Similarity
    encoder: EncoderRef
    source: str = ""

    @property
    def path(self) -> str | None:
        """The nested object that holds this field (``photos`` for ``photos.image_vector``), else None."""
        return nested_path(self.name)

    def __post_init__(self) -> None:
        if self.dim < 1 or self.dim > 4096:
            raise ConfigurationError(f"vector field {self.name!r}: dimension {self.dim} is outside 1..4096")
        if self.similarity not in SIMILARITIES:
            raise ConfigurationError(
                f"vector field {self.name!r}: similarity {self.similarity!r} is not one of {', '.join(SIMILARITIES)}"
            )


@dataclass(frozen=True)
class HnswParams:
    m: int = 16
    ef_construction: int = 100


@dataclass(frozen=True)
class IndexDefinition:
    """Everything needed to create one versioned products index on any engine."""

    analysis: Mapping[str, Any]
    properties: Mapping[str, Any]
    vectors: tuple[VectorField, ...]
    shards: int = 1
    replicas: int = 0
    hnsw: HnswParams = field(default_factory=HnswParams)
    dynamic: str = "strict"

    def meta(self) -> dict[str, Any]:
        """The ``_meta`` block recorded in the index mapping."""
        return {
            META_KEY: {
                "schema": META_SCHEMA,
                "vectors": {
                    v.name: {**v.encoder.as_meta(), "dim": v.dim, "similarity": v.similarity}
                    for v in self.vectors
                },
            }
        }


def _strip_comments(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_comments(v) for k, v in value.items() if not k.startswith("_comment")}
    if isinstance(value, list):
        return [_strip_comments(v) for v in value]
    return value


def _read_json(folder: Path | None, name: str) -> dict[str, Any]:
    try:
        if folder is not None:
            text = (folder / name).read_text(encoding="utf-8")
        else:
            text = resources.files("hybrid_search").joinpath("mappings", name).read_text(encoding="utf-8")
    except OSError as exc:
        where = folder if folder is not None else "the bundled mappings"
        raise ConfigurationError(
            f"cannot read mapping file {name!r} from {where}: {exc.strerror or exc}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"mapping file {name!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"mapping file {name!r} must hold a JSON object")
    return _strip_comments(data)  # type: ignore[no-any-return]


def vector_roles(mappings_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """``{field: {"source": role, "similarity": ...}}`` from ``vectors.json``."""
    return {k: dict(v) for k, v in _read_json(mappings_dir, "vectors.json").items()}


def load_definition(
    encoders: Mapping[str, tuple[EncoderRef, int]],
    *,
    mappings_dir: Path | None = None,
    shards: int = 1,
    replicas: int = 0,
    hnsw: HnswParams | None = None,
) -> IndexDefinition:
    """Build the index definition from the mapping files.

    ``encoders`` maps an encoder role of ``vectors.json`` (``text``, ``image``, ``colour``, ``fused``) to the
    encoder's identity and output dimension. A vector field whose role has no encoder is left out of the index.
    """
    products = _read_json(mappings_dir, "products.json")
    try:
        analysis = products.get("settings", {}).get("analysis", {})
        mappings = products["mappings"]
        properties = mappings["properties"]
    except (KeyError, AttributeError):
        raise ConfigurationError("products.json must have mappings.properties") from None
    unknown_roles = set(encoders) - {spec.get("source") for spec in vector_roles(mappings_dir).values()}
    if unknown_roles:
        raise ConfigurationError(
            f"no vector field in vectors.json takes encoder role(s) {sorted(unknown_roles)}"
        )
    vectors = []
    for name, spec in vector_roles(mappings_dir).items():
        role = spec.get("source", "")
        if role not in encoders:
            continue
        ref, dim = encoders[role]
        if name in properties or (nested_path(name) or name) in properties:
            raise ConfigurationError(f"field {name!r} is declared both in products.json and vectors.json")
        similarity = cast(Similarity, spec.get("similarity", "cosine"))  # VectorField validates it
        vectors.append(VectorField(name=name, dim=dim, similarity=similarity, encoder=ref, source=role))
    return IndexDefinition(
        analysis=copy.deepcopy(analysis),
        properties=copy.deepcopy(properties),
        vectors=tuple(vectors),
        shards=shards,
        replicas=replicas,
        hnsw=hnsw or HnswParams(),
        dynamic=str(mappings.get("dynamic", "strict")),
    )


def versioned_name(alias: str, version: int) -> str:
    return f"{alias}-v{version}"


def parse_version(alias: str, index: str) -> int | None:
    """``products-v3`` -> 3 for alias ``products``; None for a name that is not one of the alias's versions."""
    match = _VERSIONED.match(index)
    if match is None or match.group("alias") != alias:
        return None
    return int(match.group("n"))


def vectors_from_meta(meta: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The per-field encoder records of an index ``_meta`` (empty when the index has none)."""
    if not meta:
        return {}
    block = meta.get(META_KEY) or {}
    vectors = block.get("vectors") or {}
    return {str(k): dict(v) for k, v in vectors.items()}


def check_vector_sources(
    index: str,
    recorded: Mapping[str, Mapping[str, Any]],
    sources: Mapping[str, EncoderRef],
    present: set[str],
) -> None:
    """Refuse vectors whose encoder is not the one the index records for that field.

    ``present`` is the set of vector fields that the documents being written carry; each needs a source, and the
    source must equal the index's record (name and version).
    """
    for name in sorted(present):
        if name not in recorded:
            raise EncoderMismatchError(f"index {index!r} has no vector field {name!r} recorded in its _meta")
        source = sources.get(name)
        if source is None:
            raise EncoderMismatchError(
                f"vectors for {name!r} were given without naming the encoder that produced them; index {index!r} "
                f"expects {recorded[name].get('encoder')!r} version {recorded[name].get('version')!r}"
            )
        want = recorded[name]
        if source.name != want.get("encoder") or source.version != want.get("version"):
            raise EncoderMismatchError(
                f"index {index!r} field {name!r} holds vectors of encoder {want.get('encoder')!r} "
                f"version {want.get('version')!r}; refusing vectors of {source.name!r} version {source.version!r}. "
                "Re-embed into a new index (hybrid-search reindex) to change encoders."
            )


__all__ = [
    "META_KEY",
    "EncoderRef",
    "HnswParams",
    "IndexDefinition",
    "VectorField",
    "check_vector_sources",
    "load_definition",
    "nested_path",
    "parse_version",
    "vector_roles",
    "vector_values",
    "vectors_from_meta",
    "versioned_name",
]
