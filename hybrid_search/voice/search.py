"""Search by voice: the catalogue chooses among what the recogniser heard, and the choice is searched.

    voice = VoiceSearch(service, engine, recogniser(settings), VocabularyCache(engine, words=40),
                        index="products", max_seconds=15.0)
    result = voice.search(data, SearchQuery(text="voice", filters=Filters(colour="Red")))
    result.transcript.text, result.response.hits          # what was searched for, what it found
    result.to_dict()                                      # the search response with its transcript

:meth:`VoiceSearch.search` decodes the audio (:func:`hybrid_search.voice.audio.decode_audio`), recognises it,
biased towards the index's words (:mod:`hybrid_search.voice.hotwords`), lets the catalogue choose among the
distinct hypotheses and runs the query with the chosen text through the :class:`~hybrid_search.search.SearchService`.

**Choosing among hypotheses** (:func:`choose_transcript`): the catalogue arbitrates. Each distinct hypothesis
is run as a BM25 query (one ``_msearch``, one hit each: :func:`catalogue_scores`); the chosen one maximises
``score + CATALOGUE_WEIGHT * log(1 + top BM25 score)``, so "red hoodie" beats "rent hoodie" when the catalogue
sells red hoodies and the acoustic scores are close. The search runs on the chosen hypothesis alone
(:func:`transcript_query`): the words only the other hypotheses heard are mostly mishearings, which BM25 ``or``
and the kNN vector would chase (``benchmarks/voice.py`` measures both ways).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hybrid_search.catalog.schema import DEFAULT_SCHEMA, FieldSchema
from hybrid_search.engine import SearchRequest
from hybrid_search.search.bodies import bm25_query
from hybrid_search.voice.audio import decode_audio
from hybrid_search.voice.recognisers import Alternative, Ensemble, Transcriber, Transcript

if TYPE_CHECKING:
    from hybrid_search.engine import SearchEngine
    from hybrid_search.search import SearchQuery, SearchResponse, SearchService
    from hybrid_search.voice.hotwords import VocabularyCache

CATALOGUE_WEIGHT = 2.0  # chosen with benchmarks/voice.py, for one model and for an ensemble (docs/voice.md)


def catalogue_scores(
    engine: SearchEngine, index: str, texts: Sequence[str], *, schema: FieldSchema = DEFAULT_SCHEMA
) -> list[float]:
    """The top BM25 score of each text on the index (0 when nothing matches), over ``schema``'s text fields:
    one ``_msearch``."""
    if not texts:
        return []
    requests = [
        SearchRequest(query=bm25_query(text, schema=schema), size=1, source=False, track_total_hits=False)
        for text in texts
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


def transcript_query(query: SearchQuery, transcript: Transcript) -> SearchQuery:
    """``query`` searching for what was heard: its text becomes the chosen hypothesis alone (pure)."""
    return dataclasses.replace(query, text=transcript.text)


@dataclass(frozen=True)
class VoiceResult:
    """What a voice search heard and found: the transcript searched for and the search's response."""

    transcript: Transcript
    response: SearchResponse

    def to_dict(self) -> dict[str, Any]:
        """The search response as plain data, with ``transcript`` (what was heard, the alternatives) added."""
        out: dict[str, Any] = self.response.to_dict()
        out["transcript"] = self.transcript.as_dict()
        return out


class VoiceSearch:
    """Audio bytes -> transcript chosen by the catalogue -> hybrid text search (module docstring).

    ``vocabulary`` biases recognition towards the index's words; ``None`` recognises without biasing.
    ``max_seconds`` is the longest recording accepted. Every refusal of the audio is a
    :class:`hybrid_search.errors.ValidationError` with ``field="audio"``.
    """

    def __init__(
        self,
        service: SearchService,
        engine: SearchEngine,
        recogniser: Transcriber | Ensemble,
        vocabulary: VocabularyCache | None = None,
        *,
        index: str,
        max_seconds: float,
    ) -> None:
        self.service = service
        self.engine = engine
        self.recogniser = recogniser
        self.vocabulary = vocabulary
        self.index = index
        self.max_seconds = max_seconds

    def transcribe(self, data: bytes, *, biasing: bool = True) -> Transcript:
        """What ``data`` says: decoded, recognised (biased unless ``biasing`` is off), chosen by the catalogue.

        The transcript's timings add ``audio_decode_ms`` to the recogniser's.
        """
        started = time.perf_counter()
        audio = decode_audio(data, max_seconds=self.max_seconds)
        decoded_ms = round((time.perf_counter() - started) * 1000, 3)
        schema = self.service.schema_of(self.index)  # an attached shop index: its names
        vocabulary = None
        if biasing and self.vocabulary is not None:
            vocabulary = self.vocabulary.get(self.index, schema=schema)
        transcript = self.recogniser.transcribe(audio, vocabulary=vocabulary)
        if len(transcript.alternatives) > 1:
            texts = [a.text for a in transcript.alternatives]
            scores = catalogue_scores(self.engine, self.index, texts, schema=schema)
            transcript = choose_transcript(transcript, scores)
        return dataclasses.replace(transcript, timings={**transcript.timings, "audio_decode_ms": decoded_ms})

    def search(self, data: bytes, query: SearchQuery, *, biasing: bool = True) -> VoiceResult:
        """Run ``query`` (its filters, fusion, page, size) for what ``data`` says; its own text is replaced."""
        transcript = self.transcribe(data, biasing=biasing)
        return VoiceResult(
            transcript, self.service.search(transcript_query(query, transcript), index=self.index)
        )


__all__ = [
    "CATALOGUE_WEIGHT",
    "VoiceResult",
    "VoiceSearch",
    "catalogue_scores",
    "choose_transcript",
    "transcript_query",
]
