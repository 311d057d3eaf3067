"""Speech recognisers: checked audio -> distinct n-best transcripts, written as the catalogue writes them.

    transcriber = recogniser(settings)                    # a Transcriber or an Ensemble; loads on first use
    result = transcriber.transcribe(audio, vocabulary=vocabulary)
    result.text, result.alternatives                      # best transcript, distinct n-best with scores

**Recognition** (:class:`Transcriber`): one encoder pass over the (at most 30 s) window, then beam search asking
for several hypotheses (CTranslate2's ``num_hypotheses``), without timestamps, at temperature 0 with no fallback
and no VAD (a query is one short utterance). The transcript's length is capped by the audio's
(:func:`max_tokens`), so a decoder caught in a loop stops early. Each hypothesis is written as the catalogue
writes it (:func:`hybrid_search.voice.spoken.written_form`: "three slash four plywood four by eight" ->
"3/4 plywood 4x8"; what the model wrote stays in ``Alternative.spoken``); hypotheses that then read the same are
merged, each keeping its score, the average log-probability per token. A recording in which the model hears no
speech is refused (:class:`hybrid_search.errors.ValidationError` with ``field="audio"``).

**Models** (:func:`hybrid_search.voice.models.resolve_model`): ``whisper-tiny.en`` (also what no model name
means); ``whisper-base``, the multilingual Whisper base, told the language (English); any other value goes to
faster-whisper as a model name or folder. Models joined by ``+`` (``whisper-tiny.en+whisper-base``, the settings'
default) make an :class:`Ensemble`: each recognises the utterance and their hypotheses are pooled.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid_search.errors import ConfigurationError, EncoderError, ValidationError
from hybrid_search.voice.audio import Audio
from hybrid_search.voice.hotwords import Vocabulary
from hybrid_search.voice.models import TINY_EN, default_model_path, resolve_model
from hybrid_search.voice.spoken import written_form

if TYPE_CHECKING:
    from hybrid_search.settings import Settings

NO_SPEECH_PROB = 0.6
# Whisper can loop ("1-1-4-1-2-2-2-2-..." for "1/4-20 jamb nuts", each token likely): a query of s seconds may
# produce at most MAX_TOKENS_BASE + MAX_TOKENS_PER_SECOND * s tokens, well above the pace of speech
MAX_TOKENS_BASE = 10
MAX_TOKENS_PER_SECOND = 10.0


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

    Different models mishear differently, so the pool more often holds the right words for the catalogue's choice
    (:func:`hybrid_search.voice.search.choose_transcript`; ``benchmarks/voice.py`` compares an ensemble with its
    models alone). The models run one after the other (their times add up). A hypothesis several models heard keeps its best score and the model that gave it. The first model
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


__all__ = [
    "MAX_TOKENS_BASE",
    "MAX_TOKENS_PER_SECOND",
    "NO_SPEECH_PROB",
    "Alternative",
    "Ensemble",
    "Transcriber",
    "Transcript",
    "max_tokens",
    "model_settings",
    "normalise_transcript",
    "recogniser",
]
