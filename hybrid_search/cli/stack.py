"""``hybrid-search stack up|down|status``: the local stack (:class:`hybrid_search.stack.Stack`)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hybrid_search.cli.common import JsonOpt, echo, out, print_json
from hybrid_search.settings import get_settings

app = typer.Typer(
    help="The local stack without Docker: OpenSearch + k-NN and/or Elasticsearch (Maven Central), Redis, a worker."
)


def _print_status(rows: list[object], as_json: bool) -> None:
    from hybrid_search.stack import ComponentStatus

    statuses = [r for r in rows if isinstance(r, ComponentStatus)]
    if as_json:
        print_json([s.as_dict() for s in statuses])
        return
    table = Table("component", "state", "address", "detail", "pid")
    for s in statuses:
        table.add_row(
            s.name, "[green]up[/]" if s.up else "[red]down[/]", s.address, s.detail, str(s.pid or "")
        )
    out.print(table)


@app.command("up")
def stack_up(
    nodes: Annotated[int, typer.Option(help="OpenSearch nodes: 1, or 3 for a cluster (one JVM each).")] = 1,
    engine: Annotated[
        str, typer.Option(help="Which engine to start: opensearch, elasticsearch (8.19, one node) or both.")
    ] = "opensearch",
    es_http_port: Annotated[
        int | None,
        typer.Option(
            envvar="HYBRID_SEARCH_STACK_ES_HTTP_PORT", help="Elasticsearch HTTP port (default 9400)."
        ),
    ] = None,
    es_transport_port: Annotated[
        int | None,
        typer.Option(
            envvar="HYBRID_SEARCH_STACK_ES_TRANSPORT_PORT",
            help="Elasticsearch transport port (default 9500).",
        ),
    ] = None,
    workers: Annotated[
        bool | None,
        typer.Option("--workers/--no-workers", help="Start an ingestion worker too (default: if installed)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the engine node(s), Redis and a worker (idempotent) and wait until they answer."""
    import importlib.util

    from hybrid_search.stack import Stack

    if workers is None:
        workers = all(importlib.util.find_spec(m) is not None for m in ("celery", "torch"))
    stack = Stack(get_settings(), echo=echo, es_http_port=es_http_port, es_transport_port=es_transport_port)
    _print_status(list(stack.up(nodes=nodes, engine=engine, workers=workers)), as_json)


@app.command("down")
def stack_down(
    engine: Annotated[
        str | None,
        typer.Option(help="Stop only this engine (opensearch, elasticsearch or both); default: everything."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop what `stack up` started (idempotent)."""
    from hybrid_search.stack import Stack

    stack = Stack(get_settings(), echo=echo)
    rows = stack.down() if engine is None else stack.down(engine=engine, redis=False)
    _print_status(list(rows), as_json)


@app.command("status")
def stack_status(as_json: JsonOpt = False) -> None:
    """Each component, up or down, with its address. Exits 3 when any is down."""
    from hybrid_search.stack import Stack

    rows = Stack(get_settings(), echo=echo).status()
    _print_status(list(rows), as_json)
    if not all(r.up for r in rows):
        raise typer.Exit(3)


__all__ = ["app"]
