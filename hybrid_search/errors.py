"""The errors hybrid-search raises, as one small tree.

    HybridSearchError                 base of everything raised on purpose
    ├── ConfigurationError            settings that cannot work (bad URL, missing file, bad value)
    ├── StackError                    the local stack cannot start/stop (missing Java, Maven, redis-server)
    ├── EngineError                   the search engine refused or failed a request
    │   ├── EngineUnavailableError    cannot reach the engine (connection refused, timeout, DNS)
    │   ├── EngineAuthError           credentials or API key rejected (401/403)
    │   ├── EngineRequestError        the engine refused a request hybrid-search built (HTTP 400)
    │   └── IndexNotFoundError        the index or alias does not exist
    ├── EncoderMismatchError          vectors from another encoder than the index's ``_meta`` records
    ├── ValidationError               user input rejected (query, record, image, audio); ``field`` names it
    └── EncoderError                  a model could not be loaded or run

Whose fault it is decides the branch. A user's input is checked before any request is built, and what fails
that check is a :class:`ValidationError` (the API answers 4xx). A request the engine refuses (HTTP 400) was
built by hybrid-search, so it is never the user's fault but a bug or a mapping that does not fit the code: an
:class:`EngineRequestError`, carrying the engine's own error type and reason for the log, which the API answers
as a server-side engine error (502 ``engine_error``, like every :class:`EngineError` that is not a 503) and not
as invalid input.

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


class EngineRequestError(EngineError):
    """The engine refused a request that hybrid-search built (HTTP 400): a fault on this side, not the user's.

    ``error_type`` and ``reason`` come from the engine's error body (``parsing_exception``, ``parsing_exception:
    unknown query [x] (caused by ...)``): only the engine's own type and reason texts, never the request or its
    headers, so they can be logged.
    """

    def __init__(self, message: str, error_type: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.error_type, self.reason))


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
    "ConfigurationError",
    "EncoderError",
    "EncoderMismatchError",
    "EngineAuthError",
    "EngineError",
    "EngineRequestError",
    "EngineUnavailableError",
    "HybridSearchError",
    "IndexNotFoundError",
    "StackError",
    "ValidationError",
]
