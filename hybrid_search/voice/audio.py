"""Audio bytes -> checked 16 kHz mono samples: what a voice query is before any model hears it.

    audio = decode_audio(data, max_seconds=15.0)   # wav, mp3, ogg (vorbis/opus), webm, flac, m4a
    audio.samples, audio.seconds, audio.peak_dbfs

Decoding uses PyAV, the library faster-whisper itself decodes with (it bundles FFmpeg: no system ffmpeg).
The container is sniffed from its first bytes (RIFF/WAVE, MP3 with or without ID3, Ogg, Matroska/WebM - what
browsers' ``MediaRecorder`` produces -, FLAC, MP4/M4A) and anything else is refused before FFmpeg sees it.
Decoding stops as soon as the audio is longer than ``max_seconds``, so a long file costs no more than a short
one. Audio shorter than :data:`MIN_SECONDS` is refused, and so is a recording whose peak stays below
:data:`SILENCE_DBFS` (silent). Every refusal is a :class:`hybrid_search.errors.ValidationError` with
``field="audio"``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybrid_search.errors import ValidationError

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 30.0  # one Whisper window: a voice query is never longer
MIN_SECONDS = 0.2
SILENCE_DBFS = -45.0

# container -> what it is, sniffed from the first bytes
AUDIO_FORMATS = ("wav", "mp3", "ogg", "webm", "flac", "mp4")


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


__all__ = [
    "AUDIO_FORMATS",
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "SILENCE_DBFS",
    "WINDOW_SECONDS",
    "Audio",
    "decode_audio",
    "sniff_audio",
]
