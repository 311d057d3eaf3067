"""``hybrid-search health``: the configured engine, reachable or not."""

from __future__ import annotations

import typer

from hybrid_search.cli.common import JsonOpt, out, print_json
from hybrid_search.settings import get_settings


def health(as_json: JsonOpt = False) -> None:
    """Check the configured engine: reachable, credentials accepted, cluster status."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        h = engine.health()
    if as_json:
        print_json(h.__dict__)
    else:
        out.print(f"{h.engine} {h.version} at {settings.engine_url}: {h.status}, {h.number_of_nodes} node(s)")


def register(app: typer.Typer) -> None:
    """Add this command to the ``hybrid-search`` app."""
    app.command("health")(health)


__all__ = ["health", "register"]
