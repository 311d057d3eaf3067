"""The encoder seam: what every encoder offers, and the machinery the torch encoders share.

An encoder turns items of one modality into L2-normalised ``float32`` vectors of a fixed ``dim``:

* ``embed_documents(items) -> ndarray (n, dim)`` for indexing (batched);
* ``embed_query(item) -> ndarray (dim,)`` for one query (equal to ``embed_documents([item])[0]``).

Text items are ``str``; image items are ``PIL.Image.Image`` objects already loaded and checked by
:mod:`hybrid_search.media.images`. ``name`` names the model (or its folder) and ``version`` is a stable
identifier of the weights (a short sha256 of the weight and config files), recorded in the index so that
vectors from another model are refused.

Nothing here imports torch, transformers or PIL at module level: they are imported by the loaders, the
first time an encoder embeds something, so the core package imports fast without the ``workers`` extra.
"""

from __future__ import annotations

import hashlib
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError

if TYPE_CHECKING:
    from PIL import Image  # noqa: F401 - named in the ImageEncoder alias string

Modality = Literal["text", "image"]
Vectors = NDArray[np.float32]

ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ItemT = TypeVar("ItemT")
ModelT = TypeVar("ModelT")

DEFAULT_TEXT_BATCH_SIZE = 64
# CPU images/s are the same at 16 as at 32, and a smaller batch keeps less of a worker's peak memory (the
# activations the worker's allocator settings keep; figures in docs/benchmarks.md)
DEFAULT_IMAGE_BATCH_SIZE = 16


@runtime_checkable
class Encoder(Protocol[ItemT_contra]):
    """Two-method encoder seam (documents batched, one query), swappable by name.

    Any object with these attributes and methods is an encoder: tests may use a deterministic fake.
    """

    @property
    def name(self) -> str:
        """The model name or folder."""
        ...

    @property
    def version(self) -> str:
        """A stable identifier of the weights."""
        ...

    @property
    def dim(self) -> int:
        """Length of every vector."""
        ...

    @property
    def modality(self) -> Modality:
        """What the items are: ``"text"`` (str) or ``"image"`` (PIL image)."""
        ...

    def embed_documents(self, items: Sequence[ItemT_contra]) -> Vectors:
        """``(len(items), dim)`` float32, each row L2-normalised, in the order of ``items``."""
        ...

    def embed_query(self, item: ItemT_contra) -> Vectors:
        """``(dim,)`` float32, L2-normalised; equal to ``embed_documents([item])[0]``."""
        ...


TextEncoder = Encoder[str]
ImageEncoder = Encoder["Image.Image"]


def pick_device(preferred: str | None = None) -> str:
    """The torch device to run on: ``preferred`` when given, else ``"cuda"`` if available, else ``"cpu"``.

    Raises :class:`ConfigurationError` when ``preferred`` is not a torch device or asks for CUDA on a machine
    without it, and :class:`EncoderError` when torch is not installed (the ``workers`` extra).
    """
    torch = import_torch()
    if preferred is None or preferred == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(preferred)
    except (RuntimeError, ValueError) as exc:
        raise ConfigurationError(f"not a torch device: {preferred!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(f"device {preferred!r} requested but CUDA is not available")
    return str(device)


def import_torch() -> Any:
    """Import torch or raise a clear :class:`EncoderError` (torch ships with the ``workers`` extra)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise EncoderError("torch is not installed: install hybrid-search with the 'workers' extra") from exc
    return torch


def l2_normalize(vectors: NDArray[Any]) -> Vectors:
    """Row-wise (last axis) L2 normalisation to float32; rows of zeros stay zero."""
    arr = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    out: Vectors = np.divide(arr, norms, out=np.zeros_like(arr), where=norms > 0).astype(np.float32)
    return out


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Yield batches of item indices, longest first, so each batch pads to similar lengths.

    The caller writes each batch's rows back at these indices, which restores the input order.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json", ".txt", ".model")
_fingerprint_cache: dict[tuple[str, int, int], str] = {}
_fingerprint_lock = threading.Lock()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _fingerprint_lock:
        cached = _fingerprint_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _fingerprint_lock:
        _fingerprint_cache[key] = value
    return value


def fingerprint_files(paths: Sequence[Path], *, root: Path | None = None, length: int = 16) -> str:
    """Short sha256 over the names and contents of ``paths`` (a stable id of a set of weight files).

    File digests are cached per (path, size, mtime), so asking twice does not re-read large files.
    """
    if not paths:
        raise EncoderError("no weight files to fingerprint")
    digest = hashlib.sha256()
    for path in sorted(paths):
        label = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(label.encode("utf-8") + b"\0" + _file_sha256(path).encode("ascii") + b"\n")
    return digest.hexdigest()[:length]


def fingerprint_folder(folder: Path, *, length: int = 16) -> str:
    """Short sha256 of a model folder's weight, config and vocabulary files (README and the like ignored)."""
    files = [
        path
        for path in folder.rglob("*")
        if path.is_file() and path.suffix in _WEIGHT_SUFFIXES and not path.name.startswith(".")
    ]
    if not files:
        raise EncoderError(f"no model files found in {folder}")
    return fingerprint_files(files, root=folder, length=length)


class LazyModel(Generic[ModelT]):
    """Holds a model that is built on first use, once, under a lock (safe to share between threads)."""

    def __init__(self, loader: Callable[[], ModelT], description: str) -> None:
        self._loader = loader
        self._description = description
        self._lock = threading.Lock()
        self._value: ModelT | None = None

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def get(self) -> ModelT:
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                try:
                    self._value = self._loader()
                except (EncoderError, ConfigurationError):
                    raise
                except (OSError, ValueError, RuntimeError, KeyError, ImportError, TypeError) as exc:
                    raise EncoderError(f"cannot load {self._description}: {exc}") from exc
            return self._value


class BatchedEncoder(ABC, Generic[ItemT]):
    """Base of the bundled encoders: input checks, batching, order, normalisation.

    Subclasses implement :meth:`_embed_batch` (a list of items -> ``(len, dim)`` array, not yet normalised)
    and may override :meth:`_item_length` to batch texts by length.
    """

    modality: Modality

    def __init__(self, *, batch_size: int) -> None:
        self.batch_size = check_batch_size(batch_size)

    @property
    @abstractmethod
    def name(self) -> str: ...

    @property
    @abstractmethod
    def version(self) -> str: ...

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def _check_item(self, item: object, index: int) -> ItemT:
        """Return the item if acceptable, else raise :class:`ValidationError`."""

    @abstractmethod
    def _embed_batch(self, items: list[ItemT]) -> NDArray[Any]: ...

    def _item_length(self, item: ItemT) -> int:
        return 0

    def embed_documents(self, items: Sequence[ItemT]) -> Vectors:
        if isinstance(items, (str, bytes)):
            raise ValidationError("embed_documents takes a sequence of items, not a single string", "items")
        checked = [self._check_item(item, index) for index, item in enumerate(items)]
        out = np.zeros((len(checked), self.dim), dtype=np.float32)
        if not checked:
            return out
        lengths = [self._item_length(item) for item in checked]
        for batch in length_sorted_batches(lengths, self.batch_size):
            vectors = np.asarray(self._embed_batch([checked[i] for i in batch]), dtype=np.float32)
            if vectors.shape != (len(batch), self.dim):
                raise EncoderError(
                    f"{self.name} returned shape {vectors.shape}, expected {(len(batch), self.dim)}"
                )
            out[batch] = vectors
        return l2_normalize(out)

    def embed_query(self, item: ItemT) -> Vectors:
        vectors: Vectors = self.embed_documents([item])[0]
        return vectors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r})"


def env_path(value: str | os.PathLike[str]) -> Path:
    """Expand ``~`` and environment variables in a user-given path."""
    return Path(os.path.expandvars(os.path.expanduser(os.fspath(value))))
