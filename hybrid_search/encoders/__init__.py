"""Encoders: text and image items to L2-normalised float32 vectors, swappable by name.

    from hybrid_search.encoders import get_encoder
    text = get_encoder("minilm")                  # 384-d
    image = get_encoder("efficientnet-lite0")     # 1280-d, PIL images from hybrid_search.media.images
    vectors = text.embed_documents(["red hoodie", "water bottle"])   # (2, 384)
    query = text.embed_query("hoodie")                               # (384,)

Importing this package imports numpy only: torch, transformers and PIL are imported when a model first
loads (they ship with the ``workers`` extra). See :mod:`hybrid_search.encoders.image` for the allocator
environment variables that CPU workers should be started with.
"""

from hybrid_search.encoders.base import Encoder, ImageEncoder, Modality, TextEncoder, pick_device
from hybrid_search.encoders.fusion_vector import fuse_vectors
from hybrid_search.encoders.registry import (
    DEFAULT_COLOUR_ENCODER,
    DEFAULT_IMAGE_ENCODER,
    DEFAULT_TEXT_ENCODER,
    ENCODER_NAMES,
    get_encoder,
)

__all__ = [
    "DEFAULT_COLOUR_ENCODER",
    "DEFAULT_IMAGE_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "ENCODER_NAMES",
    "Encoder",
    "ImageEncoder",
    "Modality",
    "TextEncoder",
    "fuse_vectors",
    "get_encoder",
    "pick_device",
]
