"""Stage 3, encode: the query vector of each kNN retriever of a :class:`~hybrid_search.search.plan.Plan`.

Each encoder role the plan names runs once, whatever the number of retrievers that use its vector (the text
vector feeds text kNN and the fused vector). The query photo is decoded once, with the same size and pixel
limits as catalogue photos (:func:`hybrid_search.media.images.load_image`). A vector is only comparable with
vectors of the same model: each retriever's encoder (for ``fused_knn``, the fused pair and its weight) must be
the one the index records for the field it searches, else :class:`~hybrid_search.errors.EncoderMismatchError`
names both, before anything is sent to the engine.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hybrid_search.encoders.roles import fused_ref
from hybrid_search.engine import EncoderRef
from hybrid_search.errors import EncoderMismatchError, ValidationError
from hybrid_search.search.plan import SPECS, Plan
from hybrid_search.search.query import ImageInput
from hybrid_search.search.response import elapsed_ms
from hybrid_search.settings import Settings

IMAGE_ROLES = frozenset({"image", "colour", "text_image"})  # roles that embed the query photo


@dataclass(frozen=True)
class QueryVectors:
    """Each kNN retriever's query vector, and how long encoding took.

    ``per_role``: milliseconds per encoder role (and ``image_decode``); ``ms``: the whole stage.
    """

    vectors: Mapping[str, list[float]]
    per_role: Mapping[str, float]
    ms: float


def query_image(image: ImageInput, settings: Settings) -> Any:
    """The query photo as an RGB PIL image, refused beyond the catalogue's byte and pixel limits."""
    from hybrid_search.media.images import load_image

    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image(image, max_bytes=settings.image_max_bytes, max_pixels=settings.image_max_pixels)
    width, height = image.size
    if width < 1 or height < 1:
        raise ValidationError(f"corrupt image: size {width}x{height}", field="image")
    if width * height > settings.image_max_pixels:
        raise ValidationError(
            f"too many pixels: {width}x{height} = {width * height} > {settings.image_max_pixels}",
            field="image",
        )
    return image if image.mode == "RGB" else image.convert("RGB")


def encode(
    plan: Plan,
    encoders: Mapping[str, Any],
    records: Mapping[str, Mapping[str, Any]],
    settings: Settings,
    *,
    index: str,
) -> QueryVectors:
    """Run each encoder role of ``plan`` once and check each vector against the index's ``records``."""
    started = time.perf_counter()
    query = plan.query
    per_role: dict[str, float] = {}
    image = None
    if query.image is not None and IMAGE_ROLES.intersection(plan.roles):
        t = time.perf_counter()
        image = query_image(query.image, settings)
        per_role["image_decode"] = elapsed_ms(t)
    embedded: dict[str, Any] = {}
    for role in plan.roles:
        encoder = encoders[role]
        item = image if encoder.modality == "image" else query.text
        t = time.perf_counter()
        embedded[role] = encoder.embed_query(item)
        per_role[role] = elapsed_ms(t)
    vectors: dict[str, list[float]] = {}
    for r in plan.retrievers:
        if r.field is None:
            continue
        if r.name == "fused_knn":
            from hybrid_search.encoders import fuse_vectors

            text_enc, image_enc = encoders["text"], encoders["image"]
            ref = fused_ref(
                EncoderRef(text_enc.name, text_enc.version),
                EncoderRef(image_enc.name, image_enc.version),
                settings.fused_text_weight,
            )
            vector = fuse_vectors(embedded["text"], embedded["image"], settings.fused_text_weight)
        else:
            role = SPECS[r.name].encoders[0]
            ref = EncoderRef(encoders[role].name, encoders[role].version)
            vector = embedded[role]
        record = records.get(r.field, {})
        if (record.get("encoder"), record.get("version")) != (ref.name, ref.version):
            raise EncoderMismatchError(
                f"{r.field} of {index} holds vectors of {record.get('encoder')} "
                f"(version {record.get('version')}), but {r.name} would query it with {ref.name} "
                f"(version {ref.version}); configure the same encoder or re-embed the index"
            )
        vectors[r.name] = [float(x) for x in vector]
    return QueryVectors(vectors, per_role, elapsed_ms(started))


__all__ = ["IMAGE_ROLES", "QueryVectors", "encode", "query_image"]
