"""The ``hybrid-search`` command line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

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
stack_app = typer.Typer(
    help="The local stack without Docker: OpenSearch + k-NN and/or Elasticsearch (Maven Central), Redis, a worker."
)
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
    stack = Stack(get_settings(), echo=_echo, es_http_port=es_http_port, es_transport_port=es_transport_port)
    _print_status(list(stack.up(nodes=nodes, engine=engine, workers=workers)), as_json)


@stack_app.command("down")
def stack_down(
    engine: Annotated[
        str | None,
        typer.Option(help="Stop only this engine (opensearch, elasticsearch or both); default: everything."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop what `stack up` started (idempotent)."""
    from hybrid_search.stack import Stack

    stack = Stack(get_settings(), echo=_echo)
    rows = stack.down() if engine is None else stack.down(engine=engine, redis=False)
    _print_status(list(rows), as_json)


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


@app.command("ingest")
def ingest(
    catalogue: Annotated[str, typer.Argument(help="A .jsonl/.csv catalogue, or the Luma store folder.")],
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until every batch is done.")] = False,
    index: Annotated[
        str | None, typer.Option(help="Index or alias to write to (default: the alias).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Products per task.")] = None,
    create: Annotated[bool, typer.Option("--create/--no-create", help="Create the index if missing.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Enqueue a catalogue for the workers (embed + write); with --wait, follow it to the end."""
    from hybrid_search.catalog import open_catalogue
    from hybrid_search.ingest.jobs import enqueue_catalogue, summary

    settings = get_settings()
    target = index or settings.index_alias
    if create:
        _ensure_index(settings, target)
    job = enqueue_catalogue(settings, open_catalogue(catalogue), index=target, batch_size=batch_size)
    if not wait:
        result = summary(settings, job, {})
        result["status"] = "queued"
        print(json.dumps(result, indent=2)) if as_json else out.print(
            f"job {job.id}: {job.read} products in {job.batches} batches queued for {target}; "
            f"{job.read_errors} invalid records dead-lettered"
        )
        return
    result = _follow(settings, job, quiet=as_json)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(
        "read", "indexed", "unchanged (not re-embedded)", "dead-lettered", "texts embedded", "photos embedded"
    )
    table.add_row(*(str(result[k]) for k in ("read", "indexed", "skipped_unchanged", "dead_lettered",
                                             "text_embedded", "images_embedded")))  # fmt: skip
    out.print(table)
    out.print(f"dead letters: {result['dead_letters']} (hybrid-search dead-letters)")


def _ensure_index(settings: Any, target: str) -> None:
    from hybrid_search.engine import create_engine, definition_from_settings
    from hybrid_search.errors import IndexNotFoundError
    from hybrid_search.indexing import encoder_records

    with create_engine(settings) as engine:
        try:
            engine.vector_records(target)
        except IndexNotFoundError:
            if target != settings.index_alias:
                raise
            name = engine.create_index(target, definition_from_settings(settings, encoder_records(settings)))
            _echo(f"created {name} behind alias {target}")


def _follow(settings: Any, job: Any, *, quiet: bool) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybrid_search.ingest.jobs import wait_for_job

    if quiet:
        return wait_for_job(settings, job)
    with Progress(
        TextColumn("[bold]ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(), console=err,
    ) as progress:  # fmt: skip
        task = progress.add_task("ingest", total=max(job.read, 1), rate="", failed=job.read_errors)

        def update(state: dict[str, Any]) -> None:
            done = int(state.get("indexed", 0)) + int(state.get("failed", 0))
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:.1f} products/s" if elapsed > 0 else ""
            progress.update(
                task, completed=done, rate=rate, failed=int(state.get("failed", 0)) + job.read_errors
            )

        return wait_for_job(settings, job, on_progress=update)


@app.command("reindex")
def reindex(
    catalogue: Annotated[str, typer.Argument(help="The catalogue to re-embed from.")],
    swap: Annotated[bool, typer.Option("--swap/--no-swap", help="Move the alias when done.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed the catalogue into a new versioned index and swap the alias to it (no downtime)."""
    from hybrid_search.catalog import open_catalogue
    from hybrid_search.engine import create_engine, definition_from_settings
    from hybrid_search.indexing import encoder_records
    from hybrid_search.ingest.jobs import enqueue_catalogue

    settings = get_settings()
    with create_engine(settings) as engine:
        name = engine.create_index(
            settings.index_alias,
            definition_from_settings(settings, encoder_records(settings)),
            activate=False,
        )
    _echo(f"created {name}; re-embedding into it")
    job = enqueue_catalogue(settings, open_catalogue(catalogue), index=name)
    result = _follow(settings, job, quiet=as_json)
    with create_engine(settings) as engine:
        engine.refresh(name)
        if swap:
            engine.swap_alias(settings.index_alias, name)
    result["swapped"] = swap
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        out.print(f"{name}: {result['indexed']} indexed, {result['dead_lettered']} dead-lettered; "
                  + (f"alias {settings.index_alias} -> {name}" if swap else "alias not moved"))  # fmt: skip


@app.command("dead-letters")
def dead_letters(
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    limit: Annotated[int, typer.Option(help="How many of the newest to show.")] = 20,
    clear: Annotated[bool, typer.Option("--clear", help="Delete them after showing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Records that could not be ingested, with their reasons."""
    from hybrid_search.ingest.tracking import Tracker, connect

    settings = get_settings()
    target = index or settings.index_alias
    tracker = Tracker(connect(settings.redis_url))
    rows = tracker.dead_letters(target, limit)
    total = tracker.dead_letter_count(target)
    if as_json:
        print(json.dumps({"total": total, "dead_letters": rows}, indent=2, ensure_ascii=False))
    else:
        table = Table("id", "source", "reason", "at")
        for row in rows:
            table.add_row(
                str(row.get("id")), str(row.get("source")), str(row.get("reason"))[:200], str(row.get("at"))
            )
        out.print(table)
        out.print(f"{total} dead letter(s) for {target}")
    if clear:
        _echo(f"cleared {tracker.clear_dead_letters(target)} dead letter(s)")


@app.command("convert")
def convert(
    catalogue: Annotated[str, typer.Argument(help="A Luma folder, Home Depot products.csv, CSV or JSONL.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="The JSONL file to write ('-' for stdout).")
    ] = "-",
) -> None:
    """Convert a catalogue to the native JSONL format (photo paths made absolute)."""
    from hybrid_search.catalog import convert_to_jsonl, open_catalogue

    source = open_catalogue(catalogue)
    if output == "-":
        written, errors = convert_to_jsonl(source, sys.stdout)
    else:
        with open(output, "w", encoding="utf-8") as handle:
            written, errors = convert_to_jsonl(source, handle)
    for error in errors[:20]:
        _echo(f"skipped {error.source}: {error.reason}")
    _echo(f"{written} products written, {len(errors)} invalid records skipped")


@app.command("workers", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def workers(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: the setting).")] = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: the ingest queue).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run Celery ingestion workers in the foreground (extra arguments go to `celery worker`)."""
    import os

    settings = get_settings()
    from hybrid_search.queue import WORKER_ENV

    if any(k not in os.environ for k in WORKER_ENV) and os.environ.get("HYBRID_SEARCH_KEEP_MALLOC") != "1":
        # glibc reads these at start-up only: re-exec this same command with them
        command = [sys.executable, "-m", "hybrid_search.cli", *sys.argv[1:]]
        os.execvpe(sys.executable, command, {**WORKER_ENV, **os.environ})  # noqa: S606
    from workers.app import app as celery_app

    argv = ["worker", f"--concurrency={concurrency or settings.worker_concurrency}",
            f"--queues={queues or settings.ingest_queue}", f"--loglevel={loglevel}", "--prefetch-multiplier=1",
            "--without-gossip", "--without-mingle", *ctx.args]  # fmt: skip
    celery_app.worker_main(argv)


@app.command("search")
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
    fusion: Annotated[str | None, typer.Option(help="linear, rrf or native [default: the setting].")] = None,
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
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Hybrid search: BM25 + kNN (text, photo, colour, fused, CLIP), fused into one ranking."""
    from hybrid_search.engine import create_engine
    from hybrid_search.search import SearchService, apply_search_threads, search_encoders
    from hybrid_search.search.console import build_query, read_image_file, render

    settings = get_settings()
    request = build_query(
        query, image=read_image_file(image, settings.image_max_bytes) if image else None,
        filters=filters or [], weights=weights or [], fusion=fusion, normaliser=normaliser,
        rank_constant=rank_constant, rank_window=rank_window, page=page, size=size, explain=explain,
        facets=facets,
    )  # fmt: skip
    apply_search_threads(settings)
    with create_engine(settings) as engine:
        response = SearchService(settings, engine, search_encoders(settings)).search(request, index=index)
    if as_json:
        print(json.dumps(response.to_dict(), indent=2, ensure_ascii=False))
    else:
        out.print(render(response, explain=explain))


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: the setting].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: the setting].")] = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs) and the search page at /."""
    from hybrid_search.api.server import serve as run_server

    settings = get_settings()
    _echo(f"search page: http://{host or settings.api_host}:{port or settings.api_port}/")
    run_server(settings, host=host, port=port)


@app.command("run")
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
    from hybrid_search.api.server import resolve_catalogue, start_worker, stop_worker, workers_on_queue
    from hybrid_search.api.server import serve as run_server
    from hybrid_search.catalog import open_catalogue
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.jobs import enqueue_catalogue

    settings = get_settings()
    if stack:
        from hybrid_search.stack import Stack

        Stack(settings, echo=_echo).up()
    path = resolve_catalogue(catalog, echo=_echo)
    catalogue = open_catalogue(path)
    settings = settings.model_copy(update={"image_roots": [*settings.image_roots, catalogue.base_dir]})
    _ensure_index(settings, settings.index_alias)
    worker = None
    if not workers_on_queue(settings):
        import os

        log = settings.stack_dir / "logs" / "run-worker.log"
        _echo(f"starting a worker (log: {log}) ...")
        worker = start_worker(dict(os.environ), log)
    try:
        job = enqueue_catalogue(settings, catalogue)
        result = _follow(settings, job, quiet=False)
        with create_engine(settings) as engine:
            engine.refresh(settings.index_alias)
        _echo(f"{result['indexed']} products indexed, {result['dead_lettered']} dead-lettered "
              f"({result['skipped_unchanged']} unchanged, not re-embedded)")  # fmt: skip
        url = f"http://{host or settings.api_host}:{port or settings.api_port}/"
        out.print(f"search page: [bold]{url}[/]  (API docs: {url}docs; stop with Ctrl+C)")
        import signal

        # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exception, so the worker stops too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        run_server(settings, host=host, port=port, log_level="warning")
    finally:
        if worker is not None:
            stop_worker(worker)


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
