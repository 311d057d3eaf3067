"""``hybrid-search search | serve | run | demo``: one query from the shell, the HTTP API and its page, the demo
that runs them all on a catalogue, and the two-product first-run check."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from hybrid_search.cli.common import JsonOpt, echo, ensure_index, follow, out, print_json, search_service
from hybrid_search.settings import get_settings


def search(
    query: Annotated[str | None, typer.Argument(help="What to search for (optional with --image).")] = None,
    image: Annotated[str | None, typer.Option(help="A query photo (JPEG, PNG, WebP or GIF).")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="key=value, repeatable: category, brand, colour, material, size, price_min, price_max, "
            "attr.<name> (a repeated key matches any of its values).",
        ),
    ] = None,
    fusion: Annotated[
        str | None,
        typer.Option(
            help="linear, rrf, native or learned [default: the index's tuned fusion, else the setting]."
        ),
    ] = None,
    normaliser: Annotated[str | None, typer.Option(help="minmax, zscore, l2 or dbsf (linear).")] = None,
    rank_constant: Annotated[float | None, typer.Option(help="k of reciprocal rank fusion.")] = None,
    rank_window: Annotated[int | None, typer.Option(help="Candidates per retriever.")] = None,
    weights: Annotated[
        list[str] | None, typer.Option("--weight", help="retriever=weight, repeatable (0 turns it off).")
    ] = None,
    page: Annotated[int, typer.Option(help="Page number, from 1.")] = 1,
    size: Annotated[int, typer.Option(help="Hits per page.")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each retriever's share of the score.")
    ] = False,
    facets: Annotated[
        bool, typer.Option("--facets/--no-facets", help="Compute facets and the total.")
    ] = True,
    index: Annotated[
        str | None,
        typer.Option(
            help="Index or alias (default: the alias); an attached shop index is searched by its attachment."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hybrid search: BM25 + kNN (text, photo, colour, fused, CLIP), fused into one ranking."""
    from hybrid_search.engine import create_engine
    from hybrid_search.search.console import build_query, read_image_file, render

    settings = get_settings()
    request = build_query(
        query, image=read_image_file(image, settings.image_max_bytes) if image else None,
        filters=filters or [], weights=weights or [], fusion=fusion, normaliser=normaliser,
        rank_constant=rank_constant, rank_window=rank_window, page=page, size=size, explain=explain,
        facets=facets,
    )  # fmt: skip
    with create_engine(settings) as engine:
        response = search_service(settings, engine).search(request, index=index)
    if as_json:
        print_json(response.to_dict(), ensure_ascii=False)
    else:
        out.print(render(response, explain=explain))


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: the setting].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: the setting].")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) and the search page at /."""
    from hybrid_search.api.server import serve as run_server

    settings = get_settings()
    echo(f"search page: http://{host or settings.api_host}:{port or settings.api_port}/")
    run_server(settings, host=host, port=port)


def run(
    catalog: Annotated[
        str | None,
        typer.Option(
            envvar="HYBRID_SEARCH_CATALOG",
            help="Catalogue to show (Luma folder, .jsonl or .csv); default: download the Luma sample data.",
        ),
    ] = None,
    stack: Annotated[bool, typer.Option("--stack/--no-stack", help="Start the local stack first.")] = True,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: the setting].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: the setting].")] = None,
) -> None:
    """The demo: start the stack, ingest the catalogue through the workers, serve the search page."""
    import os
    import signal

    from hybrid_search.api.server import resolve_catalogue
    from hybrid_search.api.server import serve as run_server
    from hybrid_search.catalog import open_catalogue
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.enqueue import Enqueuer
    from hybrid_search.ingest.workers import start_worker, stop_worker, workers_on_queue

    settings = get_settings()
    if stack:
        from hybrid_search.stack import Stack

        Stack(settings, echo=echo).up()
    path = resolve_catalogue(catalog, echo=echo)
    catalogue = open_catalogue(path)
    settings = settings.model_copy(update={"image_roots": [*settings.image_roots, catalogue.base_dir]})
    ensure_index(settings, settings.index_alias)
    worker = None
    if not workers_on_queue(settings):
        log = settings.stack_dir / "logs" / "run-worker.log"
        echo(f"starting a worker (log: {log}) ...")
        worker = start_worker(log, node=f"run-{os.getpid()}@%h")  # a node name of its own
    try:
        with Enqueuer(settings) as enqueuer:
            job = enqueuer.catalogue(catalogue)
        result = follow(settings, job, quiet=False)
        with create_engine(settings) as engine:
            engine.refresh(settings.index_alias)
        echo(f"{result['indexed']} products indexed, {result['dead_lettered']} dead-lettered "
             f"({result['skipped_unchanged']} unchanged, not re-embedded)")  # fmt: skip
        url = f"http://{host or settings.api_host}:{port or settings.api_port}/"
        out.print(f"search page: [bold]{url}[/]  (API docs: {url}docs; stop with Ctrl+C)")
        # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exception, so the worker stops too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        run_server(settings, host=host, port=port, log_level="warning")
    finally:
        if worker is not None:
            stop_worker(worker)


def demo(
    query: Annotated[str, typer.Argument(help="What to search for.")] = "waterproof jacket for hiking",
    stack: Annotated[bool, typer.Option("--stack/--no-stack", help="Start the local stack first.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start the local stack, index two products with real embeddings, run a hybrid query and print it."""
    from dataclasses import asdict

    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation.demo import DEMO_PRODUCTS, RETRIEVERS, run_demo

    settings = get_settings()
    if stack:
        from hybrid_search.stack import Stack

        Stack(settings, echo=echo).up()
    with create_engine(settings) as engine:
        result = run_demo(settings, engine, query)
    if as_json:
        print_json(asdict(result))
        return
    titles = {p["id"]: p["title"] for p in DEMO_PRODUCTS}
    out.print(f"indexed {len(DEMO_PRODUCTS)} products into {result.index}; query: [bold]{result.query}[/]")
    table = Table(
        "rank", "product", "fused score", "bm25 (raw -> norm)", "text kNN (raw -> norm)", "native sum"
    )
    native = dict(result.native)
    for rank, hit in enumerate(result.fused, 1):
        cells = []
        for name in RETRIEVERS:
            c = hit["explain"].get(name)
            cells.append(
                "-"
                if c is None or c["raw_score"] is None
                else f"{c['raw_score']:.3f} -> {c['normalised']:.3f}"
            )
        table.add_row(str(rank), titles.get(hit["id"], hit["id"]), f"{hit['score']:.3f}", *cells,
                      f"{native[hit['id']]:.3f}" if hit["id"] in native else "-")  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add these commands to the ``hybrid-search`` app."""
    app.command("search")(search)
    app.command("serve")(serve)
    app.command("run")(run)
    app.command("demo")(demo)


__all__ = ["demo", "register", "run", "search", "serve"]
