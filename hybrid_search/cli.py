"""The ``hybrid-search`` command line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hybrid_search.errors import HybridSearchError
from hybrid_search.settings import get_settings

app = typer.Typer(
    help="Multimodal hybrid (BM25 + kNN) product search over Elasticsearch or OpenSearch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(help="The local stack: OpenSearch + k-NN (from Maven Central) and Redis, no Docker.")
index_app = typer.Typer(help="Versioned product indices behind the alias.")
app.add_typer(stack_app, name="stack")
app.add_typer(index_app, name="index")

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _echo(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # the engine clients log each failed request with a traceback; the adapter turns those failures into
        # one clear error line, so their own logs only show with --verbose
        for name in ("opensearch", "elasticsearch", "elastic_transport", "urllib3"):
            logging.getLogger(name).setLevel(logging.CRITICAL)


# ---- stack ------------------------------------------------------------------------------------------------


def _print_status(rows: list[object], as_json: bool) -> None:
    from hybrid_search.stack import ComponentStatus

    statuses = [r for r in rows if isinstance(r, ComponentStatus)]
    if as_json:
        print(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    table = Table("component", "state", "address", "detail", "pid")
    for s in statuses:
        table.add_row(
            s.name, "[green]up[/]" if s.up else "[red]down[/]", s.address, s.detail, str(s.pid or "")
        )
    out.print(table)


@stack_app.command("up")
def stack_up(
    nodes: Annotated[int, typer.Option(help="Engine nodes: 1, or 3 for a cluster (one JVM each).")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Start the OpenSearch node(s) and Redis (idempotent) and wait until they answer."""
    from hybrid_search.stack import Stack

    _print_status(list(Stack(get_settings(), echo=_echo).up(nodes=nodes)), as_json)


@stack_app.command("down")
def stack_down(as_json: JsonOpt = False) -> None:
    """Stop what `stack up` started (idempotent)."""
    from hybrid_search.stack import Stack

    _print_status(list(Stack(get_settings(), echo=_echo).down()), as_json)


@stack_app.command("status")
def stack_status(as_json: JsonOpt = False) -> None:
    """Each component, up or down, with its address. Exits 3 when any is down."""
    from hybrid_search.stack import Stack

    rows = Stack(get_settings(), echo=_echo).status()
    _print_status(list(rows), as_json)
    if not all(r.up for r in rows):
        raise typer.Exit(3)


# ---- index ------------------------------------------------------------------------------------------------


@index_app.command("create")
def index_create(
    activate: Annotated[
        bool | None,
        typer.Option("--activate/--no-activate", help="Swap the alias to it (default: only if none)."),
    ] = None,
) -> None:
    """Create the next `<alias>-v<N>` from the mapping files and the configured encoders."""
    from hybrid_search.engine import create_engine, definition_from_settings
    from hybrid_search.indexing import encoder_records

    settings = get_settings()
    definition = definition_from_settings(settings, encoder_records(settings))
    with create_engine(settings) as engine:
        name = engine.create_index(settings.index_alias, definition, activate=activate)
        live = engine.resolve_alias(settings.index_alias)
    out.print(f"created {name}; alias {settings.index_alias} -> {', '.join(live) or '(none)'}")


@index_app.command("swap")
def index_swap(
    index: Annotated[str, typer.Argument(help="The version to make live, e.g. products-v2.")],
) -> None:
    """Point the alias at another version, atomically."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        engine.swap_alias(settings.index_alias, index)
    out.print(f"alias {settings.index_alias} -> {index}")


@index_app.command("list")
def index_list(as_json: JsonOpt = False) -> None:
    """The alias's versions, their document counts and which one is live."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        live = set(engine.resolve_alias(settings.index_alias))
        rows = [
            {"index": name, "version": n, "live": name in live, "documents": engine.count(name)}
            for n, name in engine.versions(settings.index_alias).items()
        ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("index", "live", "documents")
    for row in rows:
        table.add_row(str(row["index"]), "yes" if row["live"] else "", str(row["documents"]))
    out.print(table)


@index_app.command("delete")
def index_delete(index: Annotated[str, typer.Argument(help="A version that is not live.")]) -> None:
    """Delete one version of the index (refuses the live one)."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        if index in engine.resolve_alias(settings.index_alias):
            raise HybridSearchError(f"{index} is live behind {settings.index_alias}; swap the alias first")
        if index not in engine.versions(settings.index_alias).values():
            raise HybridSearchError(f"{index} is not a version of {settings.index_alias}")
        engine.delete_index(index)
    out.print(f"deleted {index}")


@app.command("demo")
def demo(
    query: Annotated[str, typer.Argument(help="What to search for.")] = "waterproof jacket for hiking",
    stack: Annotated[bool, typer.Option("--stack/--no-stack", help="Start the local stack first.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start the local stack, index two products with real embeddings, run a hybrid query and print it."""
    from dataclasses import asdict

    from hybrid_search.demo import DEMO_PRODUCTS, run_demo
    from hybrid_search.engine import create_engine

    settings = get_settings()
    if stack:
        from hybrid_search.stack import Stack

        Stack(settings, echo=_echo).up()
    with create_engine(settings) as engine:
        result = run_demo(settings, engine, query)
    if as_json:
        print(json.dumps(asdict(result), indent=2))
        return
    titles = {p["id"]: p["title"] for p in DEMO_PRODUCTS}
    out.print(f"indexed {len(DEMO_PRODUCTS)} products into {result.index}; query: [bold]{result.query}[/]")
    table = Table(
        "rank", "product", "fused score", "bm25 (raw -> norm)", "text kNN (raw -> norm)", "native sum"
    )
    native = dict(result.native)
    for rank, hit in enumerate(result.fused, 1):
        cells = []
        for name in ("bm25", "text_knn"):
            c = hit["explain"].get(name)
            cells.append(
                "-"
                if c is None or c["raw_score"] is None
                else f"{c['raw_score']:.3f} -> {c['normalised']:.3f}"
            )
        table.add_row(str(rank), titles.get(hit["id"], hit["id"]), f"{hit['score']:.3f}", *cells,
                      f"{native[hit['id']]:.3f}" if hit["id"] in native else "-")  # fmt: skip
    out.print(table)


@app.command("health")
def health(as_json: JsonOpt = False) -> None:
    """Check the configured engine: reachable, credentials accepted, cluster status."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        h = engine.health()
    if as_json:
        print(json.dumps(h.__dict__, indent=2))
    else:
        out.print(f"{h.engine} {h.version} at {settings.engine_url}: {h.status}, {h.number_of_nodes} node(s)")


def main() -> None:
    """Entry point: every expected failure is one line on stderr and exit status 1."""
    try:
        app()
    except HybridSearchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
