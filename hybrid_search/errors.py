"""The errors hybrid-search raises, as one small tree.

    HybridSearchError                 base of everything raised on purpose
    ├── ConfigurationError            settings that cannot work (bad URL, missing file, bad value)
    ├── StackError                    the local stack cannot start/stop (missing Java, Maven, redis-server)
    ├── EngineError                   the search engine refused or failed a request
    │   ├── EngineUnavailableError    cannot reach the engine (connection refused, timeout, DNS)
    │   ├── EngineAuthError           credentials or API key rejected (401/403)
    │   ├── IndexNotFoundError        the index or alias does not exist
    │   └── BulkWriteError            some items of a bulk write failed (per-item reasons attached)
    ├── EncoderMismatchError          vectors from another encoder than the index's ``_meta`` records
    ├── ValidationError               user input rejected (query, record, image, audio); ``field`` names it
    └── EncoderError                  a model could not be loaded or run

Every class takes only positional ``message`` plus simple keyword data, so instances pickle
(Celery moves exceptions between processes).
"""

from __future__ import annotations

from typing import Any


class HybridSearchError(Exception):
    """Base class of every error raised on purpose by hybrid-search."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigurationError(HybridSearchError):
    """The settings cannot work."""


class StackError(HybridSearchError):
    """The local stack cannot be started, stopped or inspected."""


class EngineError(HybridSearchError):
    """The search engine refused or failed a request."""


class EngineUnavailableError(EngineError):
    """The engine cannot be reached."""


class EngineAuthError(EngineError):
    """The engine rejected the credentials."""


class IndexNotFoundError(EngineError):
    """The index or alias does not exist."""


class BulkWriteError(EngineError):
    """Some items of a bulk write failed.

    ``errors`` is a list of ``{"id": ..., "kind": "conflict"|"mapping"|"other", "reason": ...}``.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors or [])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.errors))


class EncoderMismatchError(HybridSearchError):
    """Vectors were produced by another encoder than the one the index records."""


class ValidationError(HybridSearchError):
    """User input was rejected; ``field`` names the offending input when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.field))


class EncoderError(HybridSearchError):
    """A model could not be loaded or run."""


__all__ = [
    "BulkWriteError",
    "ConfigurationError",
    "EncoderError",
    "EncoderMismatchError",
    "EngineAuthError",
    "EngineError",
    "EngineUnavailableError",
    "HybridSearchError",
    "IndexNotFoundError",
    "StackError",
    "ValidationError",
]
