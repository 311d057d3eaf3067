"""The versioned product indices behind the alias: create the next version, make sure one exists, list them,
publish a reindexed one, delete an old one.

Each version is ``<alias>-v<N>``, created from the mapping files and the records of the configured encoders
(:func:`hybrid_search.engine.definition_from_settings`); reindexing fills a new version and then swaps the alias
to it, so searches never see a half-built index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hybrid_search.encoders.roles import encoder_records
from hybrid_search.engine import SearchEngine, definition_from_settings
from hybrid_search.errors import HybridSearchError, IndexNotFoundError
from hybrid_search.settings import Settings


def create_version(
    settings: Settings,
    engine: SearchEngine,
    *,
    activate: bool | None = None,
    encoders: Mapping[str, Any] | None = None,
) -> str:
    """Create the next ``<alias>-v<N>`` with vector fields for ``encoders`` (default: the configured ones);
    returns its name.

    ``activate``: swap the alias to it now; by default only when the alias does not exist yet.
    """
    definition = definition_from_settings(settings, encoder_records(settings, encoders))
    return engine.create_index(settings.index_alias, definition, activate=activate)


def ensure_index(settings: Settings, engine: SearchEngine, target: str) -> str | None:
    """Make sure ``target`` exists before writing to it: the settings' alias gets its first version when it has
    none (returns that version's name); any other missing index raises :class:`IndexNotFoundError`."""
    try:
        engine.vector_records(target)
    except IndexNotFoundError:
        if target != settings.index_alias:
            raise
        return create_version(settings, engine)
    return None


def versions(settings: Settings, engine: SearchEngine) -> list[dict[str, Any]]:
    """The alias's versions, oldest first: ``{"index", "version", "live", "documents"}`` each."""
    live = set(engine.resolve_alias(settings.index_alias))
    return [
        {"index": name, "version": n, "live": name in live, "documents": engine.count(name)}
        for n, name in engine.versions(settings.index_alias).items()
    ]


def publish(settings: Settings, engine: SearchEngine, index: str, *, swap: bool = True) -> None:
    """Make a reindexed version's writes searchable and, with ``swap``, point the alias at it (atomically)."""
    engine.refresh(index)
    if swap:
        engine.swap_alias(settings.index_alias, index)


def delete_version(settings: Settings, engine: SearchEngine, index: str) -> None:
    """Delete one version of the alias; refuses the live one and anything that is not a version."""
    if index in engine.resolve_alias(settings.index_alias):
        raise HybridSearchError(f"{index} is live behind {settings.index_alias}; swap the alias first")
    if index not in engine.versions(settings.index_alias).values():
        raise HybridSearchError(f"{index} is not a version of {settings.index_alias}")
    engine.delete_index(index)


__all__ = ["create_version", "delete_version", "ensure_index", "publish", "versions"]
