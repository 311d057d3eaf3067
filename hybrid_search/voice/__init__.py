"""Voice search: audio bytes -> checked samples -> n-best transcripts biased towards the catalogue -> a search.

    transcriber = recogniser(settings)                     # a Transcriber or an Ensemble; loads on first use
    audio = decode_audio(data, max_seconds=15.0)           # wav, mp3, ogg (vorbis/opus), webm, flac, m4a
    vocabulary = catalogue_vocabulary(engine, "products")  # category names, colours, frequent title words
    result = transcriber.transcribe(audio, vocabulary=vocabulary)
    result.text, result.alternatives                       # best transcript, distinct n-best with scores

    voice = VoiceSearch(service, engine, transcriber, VocabularyCache(engine, words=40), index="products",
                        max_seconds=15.0)
    voice.search(data, query).to_dict()                    # all of the above, then the catalogue chooses

One job a module:

- :mod:`.audio`: sniffing the container and decoding it to 16 kHz mono samples (PyAV), with its refusals;
- :mod:`.models`: which Whisper model faster-whisper loads (tiny.en, the Whisper base joined from PyPI);
- :mod:`.recognisers`: :class:`Transcriber` (one model), :class:`Ensemble` (several), :func:`recogniser`;
- :mod:`.spoken`: spoken forms to written forms ("three quarter inch" -> "3/4 in.");
- :mod:`.hotwords`: the catalogue's words the recogniser is told to expect, cached per index;
- :mod:`.search`: the catalogue chooses among the hypotheses, and :class:`VoiceSearch` runs the search.
"""

from hybrid_search.voice.audio import AUDIO_FORMATS, SAMPLE_RATE, Audio, decode_audio, sniff_audio
from hybrid_search.voice.hotwords import (
    Vocabulary,
    VocabularyCache,
    catalogue_vocabulary,
    title_nouns,
    title_words,
    vocabulary_request,
)
from hybrid_search.voice.models import BASE, TINY_EN, resolve_model, whisper_base_path
from hybrid_search.voice.recognisers import (
    Alternative,
    Ensemble,
    Transcriber,
    Transcript,
    max_tokens,
    model_settings,
    normalise_transcript,
    recogniser,
)
from hybrid_search.voice.search import (
    CATALOGUE_WEIGHT,
    VoiceResult,
    VoiceSearch,
    catalogue_scores,
    choose_transcript,
    transcript_query,
)
from hybrid_search.voice.spoken import written_form

__all__ = [
    "AUDIO_FORMATS",
    "BASE",
    "CATALOGUE_WEIGHT",
    "SAMPLE_RATE",
    "TINY_EN",
    "Alternative",
    "Audio",
    "Ensemble",
    "Transcriber",
    "Transcript",
    "Vocabulary",
    "VocabularyCache",
    "VoiceResult",
    "VoiceSearch",
    "catalogue_scores",
    "catalogue_vocabulary",
    "choose_transcript",
    "decode_audio",
    "max_tokens",
    "model_settings",
    "normalise_transcript",
    "recogniser",
    "resolve_model",
    "sniff_audio",
    "title_nouns",
    "title_words",
    "transcript_query",
    "vocabulary_request",
    "whisper_base_path",
    "written_form",
]
