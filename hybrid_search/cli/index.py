"""``hybrid-search index create|swap|list|delete``: the versioned indices behind the alias
(:mod:`hybrid_search.ingest.indices`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hybrid_search.cli.common import JsonOpt, out, print_json
from hybrid_search.settings import get_settings

app = typer.Typer(help="Versioned product indices behind the alias.")


@app.command("create")
def index_create(
    activate: Annotated[
        bool | None,
        typer.Option("--activate/--no-activate", help="Swap the alias to it (default: only if none)."),
    ] = None,
) -> None:
    """Create the next `<alias>-v<N>` from the mapping files and the configured encoders."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.indices import create_version

    settings = get_settings()
    with create_engine(settings) as engine:
        name = create_version(settings, engine, activate=activate)
        live = engine.resolve_alias(settings.index_alias)
    out.print(f"created {name}; alias {settings.index_alias} -> {', '.join(live) or '(none)'}")


@app.command("swap")
def index_swap(
    index: Annotated[str, typer.Argument(help="The version to make live, e.g. products-v2.")],
) -> None:
    """Point the alias at another version, atomically."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        engine.swap_alias(settings.index_alias, index)
    out.print(f"alias {settings.index_alias} -> {index}")


@app.command("list")
def index_list(as_json: JsonOpt = False) -> None:
    """The alias's versions, their document counts and which one is live."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.indices import versions

    settings = get_settings()
    with create_engine(settings) as engine:
        rows = versions(settings, engine)
    if as_json:
        print_json(rows)
        return
    table = Table("index", "live", "documents")
    for row in rows:
        table.add_row(str(row["index"]), "yes" if row["live"] else "", str(row["documents"]))
    out.print(table)


@app.command("delete")
def index_delete(index: Annotated[str, typer.Argument(help="A version that is not live.")]) -> None:
    """Delete one version of the index (refuses the live one)."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.indices import delete_version

    settings = get_settings()
    with create_engine(settings) as engine:
        delete_version(settings, engine, index)
    out.print(f"deleted {index}")


__all__ = ["app"]
