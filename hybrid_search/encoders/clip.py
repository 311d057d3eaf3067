"""CLIP-style dual encoders: text and images in one vector space, from one shared model object.

``clip:<name or folder>`` loads a Hugging Face CLIP (``CLIPModel``) or Chinese-CLIP (``ChineseCLIPModel``)
through ``AutoModel`` with its tokenizer and image processor, from a local folder or the local Hugging Face
cache only (nothing is downloaded). :func:`clip_encoders` returns the text and the image encoder of one
model; :func:`shared_clip_model` keeps one lazily loaded model per (folder, device) in the process, so
``get_encoder("clip:/m", modality="text")`` and ``get_encoder("clip:/m", modality="image")`` share weights.

Vectors are the projected ``text_embeds`` / ``image_embeds`` (``projection_dim``), L2-normalised, so the
inner product of a text and an image vector is CLIP's cosine similarity.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hybrid_search.encoders.base import (
    DEFAULT_IMAGE_BATCH_SIZE,
    DEFAULT_TEXT_BATCH_SIZE,
    BatchedEncoder,
    LazyModel,
    fingerprint_folder,
    import_torch,
    pick_device,
)
from hybrid_search.encoders.text import read_json, resolve_hf_folder
from hybrid_search.errors import EncoderError, ValidationError

if TYPE_CHECKING:
    from PIL import Image

_SUPPORTED_MODEL_TYPES = ("clip", "chinese_clip")


@dataclass
class _LoadedClip:
    model: Any
    tokenizer: Any
    image_processor: Any
    device: str
    max_length: int


def _features(output: Any) -> Any:
    """Projected features: ``get_*_features`` returns a tensor (transformers 4) or an output (5)."""
    torch = import_torch()
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise EncoderError("CLIP model returned no projected features")
    return pooled


class ClipModel:
    """One CLIP model, loaded on first use (thread-safe), shared by a text and an image encoder."""

    def __init__(self, source: str | Path, *, device: str | None = None) -> None:
        self.source = source
        self.name = str(source)
        self._device_preference = device
        self._folder: Path | None = None
        self._config: dict[str, Any] | None = None
        self._version: str | None = None
        self._loaded = LazyModel(self._load, f"CLIP model {self.name!r}")
        self.tokenizer_lock = threading.Lock()

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = resolve_hf_folder(self.source)
        return self._folder

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            config = read_json(self.folder / "config.json")
            if config.get("model_type") not in _SUPPORTED_MODEL_TYPES:
                kind = config.get("model_type")
                raise EncoderError(f"{self.name} is a {kind!r} model, not one of {_SUPPORTED_MODEL_TYPES}")
            self._config = config
        return self._config

    @property
    def dim(self) -> int:
        value = self.config.get("projection_dim", 512)
        if not isinstance(value, int) or value < 1:
            raise EncoderError(f"{self.name}: bad projection_dim {value!r}")
        return value

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = fingerprint_folder(self.folder)
        return self._version

    @property
    def loaded(self) -> bool:
        return self._loaded.loaded

    def get(self) -> _LoadedClip:
        return self._loaded.get()

    def _load(self) -> _LoadedClip:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.config  # noqa: B018 - validates the model type before loading weights
        device = pick_device(self._device_preference)
        folder = str(self.folder)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        processor_class: Any = AutoImageProcessor  # its from_pretrained is untyped
        image_processor = processor_class.from_pretrained(folder, local_files_only=True)
        model.eval()
        model.to(device)
        positions = getattr(model.config.text_config, "max_position_embeddings", 77)
        tokenizer_limit = getattr(tokenizer, "model_max_length", positions)
        max_length = min(int(positions), int(tokenizer_limit)) if tokenizer_limit else int(positions)
        return _LoadedClip(model, tokenizer, image_processor, device, max_length)


class ClipTextEncoder(BatchedEncoder[str]):
    """The text tower of a :class:`ClipModel`."""

    modality = "text"

    def __init__(self, clip: ClipModel, *, batch_size: int = DEFAULT_TEXT_BATCH_SIZE) -> None:
        super().__init__(batch_size=batch_size)
        self.clip = clip

    @property
    def name(self) -> str:
        return self.clip.name

    @property
    def version(self) -> str:
        return self.clip.version

    @property
    def dim(self) -> int:
        return self.clip.dim

    def _check_item(self, item: object, index: int) -> str:
        if not isinstance(item, str):
            raise ValidationError(f"text item {index} is a {type(item).__name__}, not a str", "items")
        return item

    def _item_length(self, item: str) -> int:
        return len(item)

    def _embed_batch(self, items: list[str]) -> NDArray[Any]:
        torch = import_torch()
        loaded = self.clip.get()
        with self.clip.tokenizer_lock:  # fast tokenizers have raised "Already borrowed" when shared
            tokens = loaded.tokenizer(
                items, padding=True, truncation=True, max_length=loaded.max_length, return_tensors="pt"
            )
        tokens = {key: value.to(loaded.device) for key, value in tokens.items()}
        with torch.inference_mode():
            features = _features(loaded.model.get_text_features(**tokens))
            result: NDArray[Any] = features.float().cpu().numpy()
        return np.asarray(result)


class ClipImageEncoder(BatchedEncoder["Image.Image"]):
    """The image tower of a :class:`ClipModel` (preprocessing by the model's own image processor)."""

    modality = "image"

    def __init__(self, clip: ClipModel, *, batch_size: int = DEFAULT_IMAGE_BATCH_SIZE) -> None:
        super().__init__(batch_size=batch_size)
        self.clip = clip

    @property
    def name(self) -> str:
        return self.clip.name

    @property
    def version(self) -> str:
        return self.clip.version

    @property
    def dim(self) -> int:
        return self.clip.dim

    def _check_item(self, item: object, index: int) -> Image.Image:
        from PIL import Image as PILImage

        if not isinstance(item, PILImage.Image):
            raise ValidationError(
                f"image item {index} is a {type(item).__name__}, not a PIL image (use hybrid_search.media.images)",
                "items",
            )
        return item if item.mode == "RGB" else item.convert("RGB")

    def _embed_batch(self, items: list[Image.Image]) -> NDArray[Any]:
        torch = import_torch()
        loaded = self.clip.get()
        pixels = loaded.image_processor(images=items, return_tensors="pt")["pixel_values"].to(loaded.device)
        with torch.inference_mode():
            features = _features(loaded.model.get_image_features(pixel_values=pixels))
            result: NDArray[Any] = features.float().cpu().numpy()
        return np.asarray(result)


_shared: dict[tuple[str, str | None], ClipModel] = {}
_shared_lock = threading.Lock()


def shared_clip_model(source: str | Path, *, device: str | None = None) -> ClipModel:
    """The process-wide :class:`ClipModel` for ``source`` and ``device`` (loaded on first use)."""
    key = (str(source), device)
    with _shared_lock:
        clip = _shared.get(key)
        if clip is None:
            clip = ClipModel(source, device=device)
            _shared[key] = clip
        return clip


def clip_encoders(
    source: str | Path,
    *,
    device: str | None = None,
    text_batch_size: int = DEFAULT_TEXT_BATCH_SIZE,
    image_batch_size: int = DEFAULT_IMAGE_BATCH_SIZE,
) -> tuple[ClipTextEncoder, ClipImageEncoder]:
    """The text and image encoders of one shared CLIP model (one set of weights in memory)."""
    clip = shared_clip_model(source, device=device)
    return (
        ClipTextEncoder(clip, batch_size=text_batch_size),
        ClipImageEncoder(clip, batch_size=image_batch_size),
    )
