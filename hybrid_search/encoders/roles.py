"""Which encoders fill which vector fields.

The roles of ``mappings/vectors.json`` (``text``, ``image``, ``colour``, ``fused``, and ``photo_image`` /
``photo_colour`` for every photo of a product) map to the encoders named in the settings. Encoder identities (name, weights version, dimension) are known without loading any model, so an
index can be created on a machine that never runs one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hybrid_search.engine.definition import EncoderRef
from hybrid_search.settings import Settings


def configured_encoders(settings: Settings) -> dict[str, Any]:
    """``{role: encoder}`` for the text, image and colour roles (models load lazily on first use)."""
    from hybrid_search.encoders import get_encoder

    batch = settings.encode_batch_size  # None: each encoder's default (64 texts, 16 images)
    encoders: dict[str, Any] = {
        "text": get_encoder(settings.text_encoder, device=settings.device, batch_size=batch, modality="text"),
        "image": get_encoder(
            settings.image_encoder, device=settings.device, batch_size=batch, modality="image"
        ),
    }
    if settings.colour_vectors:
        encoders["colour"] = get_encoder(settings.colour_encoder)
    return encoders


PHOTO_ROLES = {"photo_image": "image", "photo_colour": "colour"}  # nested photo role -> encoder role


def fused_ref(text: EncoderRef, image: EncoderRef, text_weight: float) -> EncoderRef:
    """The identity of the fused field: both encoders and the weight (a new weight means new vectors)."""
    return EncoderRef(f"fused:{text.name}+{image.name}@{text_weight:g}", f"{text.version}+{image.version}")


def encoder_records(
    settings: Settings, encoders: Mapping[str, Any] | None = None
) -> dict[str, tuple[EncoderRef, int]]:
    """``{role: (EncoderRef, dim)}`` for :func:`hybrid_search.engine.load_definition`, including ``fused``."""
    encoders = encoders if encoders is not None else configured_encoders(settings)
    records = {role: (EncoderRef(e.name, e.version), int(e.dim)) for role, e in encoders.items()}
    if settings.photo_vectors:  # every photo: the same encoders as the main photo's vectors
        records.update({photo: records[role] for photo, role in PHOTO_ROLES.items() if role in records})
    if "text" in records and "image" in records:
        (text, text_dim), (image, image_dim) = records["text"], records["image"]
        records["fused"] = (fused_ref(text, image, settings.fused_text_weight), text_dim + image_dim)
    return records


__all__ = ["PHOTO_ROLES", "configured_encoders", "encoder_records", "fused_ref"]
