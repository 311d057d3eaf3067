"""Fast tests of the encoder seam: fusion math, batching and order, lazy loading, registry, colour histogram.

No model weights are loaded here (see ``test_encoders_models.py`` for those).
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from hybrid_search.encoders import ENCODER_NAMES, Encoder, fuse_vectors, get_encoder
from hybrid_search.encoders.base import (
    BatchedEncoder,
    LazyModel,
    fingerprint_files,
    l2_normalize,
    length_sorted_batches,
)
from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------- fuse_vectors


def test_fuse_vectors_pins_the_weighted_concatenation() -> None:
    # t = (3, 4) / 5, i = (0, 2, 0) / 2, w = 0.64: sqrt(w) = 0.8, sqrt(1 - w) = 0.6
    fused = fuse_vectors([3.0, 4.0], [0.0, 2.0, 0.0], 0.64)
    assert fused.dtype == np.float32
    np.testing.assert_allclose(fused, [0.48, 0.64, 0.0, 0.6, 0.0], rtol=0, atol=1e-7)
    assert float(np.linalg.norm(fused)) == pytest.approx(1.0, abs=1e-7)


def test_fused_inner_product_is_the_weighted_sum_of_cosines() -> None:
    rng = np.random.default_rng(7)
    t_a, t_b = rng.normal(size=(2, 384))
    i_a, i_b = rng.normal(size=(2, 1280))
    for w in (0.0, 0.3, 0.5, 0.9, 1.0):
        a = fuse_vectors(t_a, i_a, w).astype(np.float64)
        b = fuse_vectors(t_b, i_b, w).astype(np.float64)
        cos_t = t_a @ t_b / (np.linalg.norm(t_a) * np.linalg.norm(t_b))
        cos_i = i_a @ i_b / (np.linalg.norm(i_a) * np.linalg.norm(i_b))
        assert float(a @ b) == pytest.approx(w * cos_t + (1 - w) * cos_i, abs=1e-6)


def test_fuse_vectors_weight_one_and_zero_keep_one_half() -> None:
    np.testing.assert_allclose(fuse_vectors([1.0, 0.0], [0.0, 1.0], 1.0), [1.0, 0.0, 0.0, 0.0], atol=0)
    np.testing.assert_allclose(fuse_vectors([1.0, 0.0], [0.0, 1.0], 0.0), [0.0, 0.0, 0.0, 1.0], atol=0)


def test_fuse_vectors_missing_image_is_zeros_then_unit_length() -> None:
    fused = fuse_vectors([3.0, 4.0], None, 0.25, image_dim=3)
    np.testing.assert_allclose(fused, [0.6, 0.8, 0.0, 0.0, 0.0], rtol=0, atol=1e-7)
    # against a full fused vector of the same weight the score is sqrt(w) * cos_text (documented)
    full = fuse_vectors([0.0, 1.0], [1.0, 0.0, 0.0], 0.25)
    assert float(fused @ full) == pytest.approx(math.sqrt(0.25) * 0.8, abs=1e-7)


def test_fuse_vectors_batches_row_by_row() -> None:
    texts = np.array([[3.0, 4.0], [1.0, 0.0]])
    images = np.array([[0.0, 2.0], [5.0, 0.0]])
    fused = fuse_vectors(texts, images, 0.64)
    assert fused.shape == (2, 4)
    np.testing.assert_allclose(fused[0], fuse_vectors(texts[0], images[0], 0.64), atol=0)
    np.testing.assert_allclose(fused[1], [0.8, 0.0, 0.6, 0.0], atol=1e-7)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (([1.0], [1.0], 1.5), {}, "text_weight"),
        (([1.0], [1.0], -0.1), {}, "text_weight"),
        (([1.0], [1.0], math.nan), {}, "text_weight"),
        (([1.0], [1.0], True), {}, "text_weight"),
        (([0.0, 0.0], [1.0], 0.5), {}, "text_vec"),
        (([1.0], [math.inf], 0.5), {}, "image_vec"),
        (([1.0], None, 0.5), {}, "image_dim"),
        (([1.0], None, 0.0), {"image_dim": 2}, "image_vec"),
        (([[1.0], [1.0]], [[1.0]], 0.5), {}, "image_vec"),
        (([1.0], [1.0, 0.0], 0.5), {"image_dim": 3}, "image_vec"),
    ],
)
def test_fuse_vectors_rejects_bad_input(args: tuple[Any, ...], kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        fuse_vectors(*args, **kwargs)
    assert info.value.field == field


# ----------------------------------------------------------------------------------------- batching


class _RecordingTextEncoder(BatchedEncoder[str]):
    """Deterministic fake: vector = (len(text), position of first char); records the batches it saw."""

    modality = "text"

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size=batch_size)
        self.batches: list[list[str]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "1"

    @property
    def dim(self) -> int:
        return 2

    def _check_item(self, item: object, index: int) -> str:
        if not isinstance(item, str):
            raise ValidationError(f"item {index} is not a str", "items")
        return item

    def _item_length(self, item: str) -> int:
        return len(item)

    def _embed_batch(self, items: list[str]) -> NDArray[Any]:
        self.batches.append(list(items))
        return np.array([[len(text), ord(text[0]) if text else 1] for text in items], dtype=np.float32)


def test_batches_are_sorted_by_length_and_order_is_restored() -> None:
    encoder = _RecordingTextEncoder(batch_size=2)
    texts = ["bb", "a", "dddd", "ccc", "eeeee"]
    vectors = encoder.embed_documents(texts)
    assert encoder.batches == [["eeeee", "dddd"], ["ccc", "bb"], ["a"]]
    expected = l2_normalize(np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32))
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(encoder.embed_query("ccc"), expected[3])


def test_fake_encoder_satisfies_the_protocol_and_handles_empty_and_bad_input() -> None:
    encoder = _RecordingTextEncoder(batch_size=4)
    assert isinstance(encoder, Encoder)
    empty = encoder.embed_documents([])
    assert empty.shape == (0, 2) and empty.dtype == np.float32
    with pytest.raises(ValidationError):
        encoder.embed_documents("not a list")  # a str is a Sequence[str]: refused at run time
    with pytest.raises(ValidationError):
        encoder.embed_documents(["ok", 3])  # type: ignore[list-item]


def test_length_sorted_batches_is_stable_for_equal_lengths() -> None:
    assert list(length_sorted_batches([0, 0, 0, 0, 0], 2)) == [[0, 1], [2, 3], [4]]
    assert list(length_sorted_batches([1, 3, 2], 10)) == [[1, 2, 0]]


def test_l2_normalize_keeps_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)
    assert out.dtype == np.float32


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batch_size_must_be_a_positive_int(batch_size: Any) -> None:
    with pytest.raises(ConfigurationError):
        _RecordingTextEncoder(batch_size=batch_size)


# ----------------------------------------------------------------------------------------- lazy loading


def test_lazy_model_loads_once_under_concurrent_first_use() -> None:
    calls: list[int] = []
    start = threading.Barrier(8)

    def loader() -> object:
        calls.append(1)
        threading.Event().wait(0.05)  # widen the race window
        return object()

    lazy = LazyModel(loader, "test model")
    results: list[object] = []

    def worker() -> None:
        start.wait()
        results.append(lazy.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(calls) == 1
    assert len(results) == 8 and all(result is results[0] for result in results)


def test_lazy_model_wraps_load_failures_in_encoder_error() -> None:
    def loader() -> object:
        raise OSError("weights missing")

    lazy = LazyModel(loader, "broken model")
    with pytest.raises(EncoderError, match="cannot load broken model: weights missing"):
        lazy.get()
    assert not lazy.loaded


def test_fingerprint_follows_file_content(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"abc")
    first = fingerprint_files([weights])
    assert first == fingerprint_files([weights]) and len(first) == 16
    weights.write_bytes(b"abcd")
    assert fingerprint_files([weights]) != first


# ----------------------------------------------------------------------------------------- registry


def test_importing_the_package_loads_no_heavy_library() -> None:
    code = (
        "import sys, hybrid_search.encoders, hybrid_search.media.images;"
        "heavy = {'torch', 'transformers', 'PIL', 'torchvision', 'httpx'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("spec", "kwargs", "error", "message"),
    [
        ("nope", {}, ConfigurationError, "unknown encoder"),
        ("", {}, ConfigurationError, "non-empty"),
        ("resnet50", {}, EncoderError, "needs a local weights file"),
        ("resnet50:/nonexistent/resnet50.pth", {}, EncoderError, "not found"),
        ("efficientnet-lite0:/nonexistent/lite0.pth", {}, EncoderError, "not found"),
        ("clip", {"modality": "text"}, ConfigurationError, "needs a model name or folder"),
        ("clip:/some/folder", {}, ConfigurationError, "modality='text' or modality='image'"),
        ("hf-text", {}, ConfigurationError, "needs a model name or folder"),
        ("minilm:extra", {}, ConfigurationError, "takes no argument"),
        ("colour", {"modality": "text"}, ConfigurationError, "encodes image, not text"),
        ("colour", {"modality": "video"}, ConfigurationError, "modality must be one of"),
        ("colour", {"batch_size": 0}, ConfigurationError, "batch_size"),
    ],
)
def test_get_encoder_refuses_bad_specs(
    spec: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        get_encoder(spec, **kwargs)


def test_get_encoder_builds_without_loading() -> None:
    colour = get_encoder("color", batch_size=3)
    assert (colour.name, colour.dim, colour.modality) == ("colour-hsv-8x8x8", 512, "image")
    assert isinstance(colour, Encoder)
    assert set(ENCODER_NAMES) >= {"minilm", "efficientnet-lite0", "clip", "colour", "resnet50", "hf-text"}


def test_clip_towers_share_one_model(tmp_path: Path) -> None:
    folder = str(tmp_path)
    text = get_encoder(f"clip:{folder}", modality="text")
    image = get_encoder(f"clip:{folder}", modality="image")
    assert (text.modality, image.modality) == ("text", "image")
    assert text.clip is image.clip  # type: ignore[attr-defined]
    assert not text.clip.loaded  # type: ignore[attr-defined]


def test_pick_device() -> None:
    torch = pytest.importorskip("torch", reason="torch ships with the 'workers' extra")
    from hybrid_search.encoders import pick_device

    assert pick_device("cpu") == "cpu"
    assert pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigurationError):
        pick_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="CUDA is not available"):
            pick_device("cuda")


# ----------------------------------------------------------------------------------------- colour


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Any:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
    return image_module.new("RGB", size, colour)


def _on_white(colour: tuple[int, int, int]) -> Any:
    canvas = _solid((255, 255, 255), (120, 100))  # small enough not to be resized (no blended edges)
    canvas.paste(_solid(colour, (40, 50)), (40, 25))
    return canvas


def test_colour_red_is_closer_to_red_than_to_blue() -> None:
    encoder = get_encoder("colour")
    red, other_red, blue = encoder.embed_documents(
        [_solid((200, 20, 20)), _solid((210, 30, 25)), _solid((20, 30, 200))]
    )
    assert red.shape == (512,)
    assert float(red @ other_red) > 0.99
    assert float(red @ blue) < 0.01


def test_colour_ignores_the_white_background() -> None:
    encoder = get_encoder("colour")
    product_on_white, product_alone, blue_on_white = encoder.embed_documents(
        [_on_white((200, 20, 20)), _solid((200, 20, 20)), _on_white((20, 30, 200))]
    )
    assert float(product_on_white @ product_alone) == pytest.approx(1.0, abs=1e-6)
    assert float(product_on_white @ blue_on_white) < 0.01


def test_colour_of_an_all_white_image_is_still_a_unit_vector() -> None:
    vector = get_encoder("colour").embed_query(_solid((255, 255, 255)))
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-6)


def test_colour_refuses_non_images() -> None:
    with pytest.raises(ValidationError, match="not a PIL image"):
        get_encoder("colour").embed_documents(["red"])


# ----------------------------------------------------------------------------------------- preprocessing


def test_lite_preprocessing_crops_224_of_256_and_scales_to_plus_minus_one() -> None:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
    from hybrid_search.encoders.image import lite_preprocess

    # 256 x 256: the crop is exactly 224 px at offset 16, so no resampling happens and values are exact
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    out = lite_preprocess(image_module.fromarray(pixels))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, (pixels[16:240, 16:240].astype(np.float32) - 127.0) / 128.0)


def test_lite_preprocessing_crop_box_of_a_landscape_photo() -> None:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
    from hybrid_search.encoders.image import lite_preprocess

    # 512 x 320: crop = int(224 / 256 * 320) = 280 at top (320 - 280 + 1) // 2 = 20,
    # left (512 - 280 + 1) // 2 = 116; nothing outside the crop box may leak in through the resize filter
    pixels = np.zeros((320, 512, 3), dtype=np.uint8)
    pixels[20:300, 116:396] = 255  # exactly the crop box is white
    out = lite_preprocess(image_module.fromarray(pixels))
    np.testing.assert_allclose(out, (255.0 - 127.0) / 128.0, atol=1e-6)


def test_imagenet_preprocessing_uses_torchvision_mean_and_std() -> None:
    image_module = pytest.importorskip("PIL.Image", reason="Pillow ships with the 'workers' extra")
    from hybrid_search.encoders.image import imagenet_preprocess

    out = imagenet_preprocess(image_module.new("RGB", (300, 400), (255, 0, 128)))
    assert out.shape == (224, 224, 3)
    expected = (np.array([1.0, 0.0, 128 / 255]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(out[100, 100], expected, atol=1e-5)
