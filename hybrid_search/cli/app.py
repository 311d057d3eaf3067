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
    from hybrid_search.encoders.roles import encoder_records
    from hybrid_search.engine import create_engine, definition_from_settings

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
    from hybrid_search.encoders.roles import encoder_records
    from hybrid_search.engine import create_engine, definition_from_settings
    from hybrid_search.errors import IndexNotFoundError

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
    from hybrid_search.encoders.roles import encoder_records
    from hybrid_search.engine import create_engine, definition_from_settings
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
    from hybrid_search.ingest.queue import WORKER_ENV

    if any(k not in os.environ for k in WORKER_ENV) and os.environ.get("HYBRID_SEARCH_KEEP_MALLOC") != "1":
        # glibc reads these at start-up only: re-exec this same command with them
        command = [sys.executable, "-m", "hybrid_search.cli", *sys.argv[1:]]
        os.execvpe(sys.executable, command, {**WORKER_ENV, **os.environ})  # noqa: S606
    if concurrency is not None:
        # the worker processes read their settings from the environment: share the process count with them
        # (it decides their torch threads, see hybrid_search.ingest.queue.worker_torch_threads)
        os.environ["HYBRID_SEARCH_WORKER_CONCURRENCY"] = str(concurrency)
        get_settings.cache_clear()
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

    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation.demo import DEMO_PRODUCTS, run_demo

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


# ---- evaluation -------------------------------------------------------------------------------------------

QueriesOpt = Annotated[
    str,
    typer.Option(
        "--queries",
        help="TSV qid<TAB>text, or with a header line qid<TAB>text<TAB>image for photo (+ text) queries.",
    ),
]
QrelsOpt = Annotated[str, typer.Option("--qrels", help="TSV qid<TAB>doc_id<TAB>grade.")]
GradeOffsetOpt = Annotated[
    float, typer.Option(help="Subtracted from grades to get gains (Home Depot: 1, its lowest grade).")
]
RelevantGradeOpt = Annotated[
    float, typer.Option(help="Lowest grade that counts as relevant for Recall and MRR (Home Depot: 2.33).")
]
SampleOpt = Annotated[
    int | None, typer.Option(help="Evaluate a fixed random sample of this many judged queries.")
]
JsonFileOpt = Annotated[str | None, typer.Option("--json", help="Also write the report as JSON to FILE.")]


def _eval_inputs(queries: str, qrels: str, grade_offset: float, relevant_grade: float, sample: int | None,
                 seed: int) -> tuple[Any, Any]:  # fmt: skip
    from hybrid_search.evaluation.data import judged_queries, judgments, read_qrels, read_queries
    from hybrid_search.evaluation.data import sample as take_sample

    judged = judgments(read_qrels(qrels), grade_offset=grade_offset, relevant_grade=relevant_grade)
    kept, missing = judged_queries(read_queries(queries), judged)
    if missing:
        _echo(f"{len(missing)} queries have no judgments in {qrels} and are left out (first: {missing[0]})")
    if not kept:
        raise HybridSearchError(f"no query of {queries} is judged in {qrels}")
    return take_sample(kept, sample, seed), judged


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    if path is not None:
        from pathlib import Path

        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _echo(f"wrote {path}")


@app.command("eval")
def evaluate(
    queries: QueriesOpt,
    qrels: QrelsOpt,
    methods: Annotated[
        list[str] | None,
        typer.Option(
            "--methods",
            help="Methods, space-separated or repeated: bm25, text-knn, image-knn, colour-knn, native, "
            "linear[:<normaliser>[:<weights>]], rrf[:<k>[:<weights>]], tuned; @<window> sets the rank "
            "window. <weights>: a text-kNN share in [0, 1] or name=w,name=w.",
        ),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Method to compare against (default: the first).")
    ] = None,
    grade_offset: GradeOffsetOpt = 0.0,
    relevant_grade: RelevantGradeOpt = 1.0,
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the bootstrap.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the confidence intervals.")] = 2000,
    json_file: JsonFileOpt = None,
    plot: Annotated[str | None, typer.Option(help="Draw the methods side by side into FILE.png.")] = None,
) -> None:
    """Evaluate retrieval methods on the live index: nDCG@10 (and condensed), Recall@1/10/100, MRR@10, p50
    latency, and paired bootstrap 95% intervals of each method's difference from the baseline."""
    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation.console import eval_tables, progress_bar
    from hybrid_search.evaluation.data import fingerprint
    from hybrid_search.evaluation.methods import parse_methods
    from hybrid_search.evaluation.runner import evaluate as run_evaluation
    from hybrid_search.search import SearchService, apply_search_threads, search_encoders

    specs = parse_methods(methods or ["bm25 text-knn native linear rrf"])
    chosen, judged = _eval_inputs(queries, qrels, grade_offset, relevant_grade, sample, seed)
    # hits' display fields come from doc values: no _mget of each page of 100 (latency = retrieval + fusion)
    settings = get_settings().model_copy(update={"search_display": "docvalues"})
    apply_search_threads(settings)
    target = index or settings.index_alias
    with create_engine(settings) as engine:
        encoders = search_encoders(settings)
        fixed = SearchService(settings, engine, encoders, use_tuned=False)
        tuned = SearchService(settings, engine, encoders)
        if any(s.tuned for s in specs):
            saved = engine.tuned_config(target) or {}
            fitted_on = (saved.get("tuning") or {}).get("queries_fingerprint")
            if fitted_on is not None and fitted_on == fingerprint([q.qid for q in chosen]):
                _echo("note: tuned was fitted on these very queries; its figures here are in-sample (a fit). "
                      "hybrid-search tune prints held-out figures.")  # fmt: skip
        with progress_bar(err, "evaluating", len(chosen), "queries") as update:
            report = run_evaluation(
                fixed, tuned, target, chosen, judged, specs, baseline=baseline, samples=bootstrap, seed=seed,
                on_query=update,
            )  # fmt: skip
    for table in eval_tables(report):
        out.print(table)
    _write_json(json_file, report)
    if plot is not None:
        from hybrid_search.evaluation.plot import plot_methods

        plot_methods(report["methods"], plot, title=f"{report['queries']} queries on {target}")
        _echo(f"wrote {plot}")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HybridSearchError(f"--{what} must be comma-separated numbers, got {text!r}") from None


@app.command("tune")
def tune(
    queries: QueriesOpt,
    qrels: QrelsOpt,
    grade_offset: GradeOffsetOpt = 0.0,
    relevant_grade: RelevantGradeOpt = 1.0,
    folds: Annotated[int, typer.Option(help="Cross-validation folds over queries.")] = 5,
    metric: Annotated[
        str, typer.Option(help="Objective: ndcg@10, condensed_ndcg@10, mrr@10, recall@10 or recall@100.")
    ] = "ndcg@10",
    retrievers: Annotated[str, typer.Option(help="Retrievers whose weights are tuned.")] = "bm25,text_knn",
    fusions: Annotated[str, typer.Option(help="Fusion methods tried (linear, rrf).")] = "linear,rrf",
    normalisers: Annotated[str, typer.Option(help="Normalisers tried by linear.")] = "minmax,zscore,l2,dbsf",
    rank_constants: Annotated[str, typer.Option(help="Rank constants tried by rrf.")] = "5,10,20,40,60,100",
    windows: Annotated[str, typer.Option(help="Rank windows tried (candidates per retriever).")] = "100,200",
    steps: Annotated[
        int, typer.Option(help="Weight grid resolution: weights are multiples of 1/steps.")
    ] = 10,
    trials: Annotated[
        int | None, typer.Option(help="Random search: this many random configurations instead of the grid.")
    ] = None,
    verify: Annotated[
        int, typer.Option(help="Re-run this many (query, configuration) pairs live; they must match.")
    ] = 20,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Save the best configuration as the index's default.")
    ] = True,
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
    sample: SampleOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds, the sample and random search.")] = 0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the confidence intervals.")] = 2000,
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="Also fit query-adaptive fusion (bm25 and text_knn weights predicted per query, linear/minmax) "
            "with held-out figures against the best global weight, and save it as the index's default.",
        ),
    ] = False,
    learned: Annotated[
        bool,
        typer.Option(
            "--learned",
            help="Also fit learned fusion (a ranker over BM25, text kNN and title-match features of each "
            "candidate) with held-out figures against BM25 and the best global weight, and save it as the "
            "index's default fusion (`learned`).",
        ),
    ] = False,
    json_file: JsonFileOpt = None,
) -> None:
    """Tune fusion (method, weights, normaliser, rank constant, rank window) with k-fold cross-validation,
    print held-out figures, and save the best configuration as the index's default (method `tuned`)."""
    import datetime

    from hybrid_search.engine import create_engine
    from hybrid_search.evaluation import tuning
    from hybrid_search.evaluation.console import progress_bar, tune_tables
    from hybrid_search.evaluation.data import fingerprint
    from hybrid_search.search import SearchService, apply_search_threads, search_encoders

    names = [r.strip().replace("-", "_") for r in retrievers.split(",") if r.strip()]
    window_list = [int(w) for w in _floats(windows, "windows")]
    options: dict[str, Any] = {
        "fusions": [f.strip() for f in fusions.split(",") if f.strip()],
        "normalisers": [n.strip() for n in normalisers.split(",") if n.strip()],
        "rank_constants": _floats(rank_constants, "rank-constants"),
        "windows": window_list,
    }
    if trials is None:
        configs = tuning.grid(names, steps=steps, **options)
    else:
        configs = tuning.random_configs(names, trials, seed=seed, **options)
    tuning.objective(metric, [], {}, frozenset())  # an unknown objective fails before any work
    chosen, judged = _eval_inputs(queries, qrels, grade_offset, relevant_grade, sample, seed)
    qids = [q.qid for q in chosen]
    settings = get_settings().model_copy(update={"search_display": "docvalues"})
    apply_search_threads(settings)
    target = index or settings.index_alias
    with create_engine(settings) as engine:
        service = SearchService(settings, engine, search_encoders(settings), use_tuned=False)
        with progress_bar(err, "fetching candidates", len(chosen), "queries") as update:
            candidates = tuning.fetch_candidates(service, target, chosen, names, window_list, on_query=update)
        with progress_bar(err, "fusing offline", len(configs), "configurations") as update:
            report = tuning.tune(
                candidates, configs, qids, judged, retrievers=names, folds=folds, metric=metric, seed=seed,
                samples=bootstrap, on_config=update,
            )  # fmt: skip
        report.verified = tuning.verify_live(service, target, chosen, candidates, configs, verify, seed=seed)
        data = report.to_dict()
        best = report.best_config
        fitted: dict[str, Any] | None = None
        if adaptive:
            from hybrid_search.evaluation.adaptive_tuning import DENSE, LEXICAL, NORMALISER, fit_with_cv

            window = best.rank_window
            model, data["adaptive"] = fit_with_cv(chosen, candidates[window], judged, folds=folds, seed=seed)
            share = data["adaptive"]["best_global_share"]
            fitted = {"fusion": "linear", "normaliser": NORMALISER, "rank_window": window,
                      "weights": {LEXICAL: round(1 - share, 6), DENSE: share}, "adaptive": model.to_dict()}  # fmt: skip
        if learned:
            from hybrid_search.evaluation import learned_tuning

            window = best.rank_window
            titles = learned_tuning.candidate_titles(
                lambda ids: {d: f.get("title") for d, f in engine.get_fields(target, ids, ["title"]).items()},
                candidates[window],
            )
            ranker, data["learned"] = learned_tuning.fit_with_cv(
                chosen, candidates[window], titles, judged, folds=folds, seed=seed, rank_window=window
            )
            fitted = {
                **(fitted or {}),
                "fusion": "learned",
                "rank_window": window,
                "learned": ranker.to_dict(),
            }
        if save:
            saved = {
                **best.as_dict(),
                **(fitted or {}),
                "tuning": {
                    "metric": metric, "queries": len(qids), "queries_fingerprint": fingerprint(qids),
                    "folds": folds, "configurations": len(configs), "fit_mean": report.best_mean,
                    "cv_mean": report.cv_mean(), "at": datetime.datetime.now(datetime.UTC).isoformat(),
                },
            }  # fmt: skip
            data["saved_to"] = engine.set_tuned_config(target, saved)
    for table in tune_tables(data):
        out.print(table)
    out.print(
        f"best on all {len(qids)} queries: {best.label()}  {metric} {report.best_mean:.3f} (fit: in-sample, "
        f"optimistic); cross-validated estimate {report.cv_mean():.3f}. "
        f"{report.verified} live re-runs matched the offline fusion.",
        highlight=False,
    )
    if adaptive:
        figures = data["adaptive"]["held_out_ndcg@10"]
        diff, low, high = data["adaptive"]["adaptive_minus_global"]
        out.print(f"query-adaptive fusion, held out ({folds} folds): nDCG@10 {figures['adaptive (CV)']:.4f} vs "
                  f"{figures['global share (CV)']:.4f} with the best global weight ({diff:+.4f}, 95% CI "
                  f"{low:+.4f} to {high:+.4f})", highlight=False)  # fmt: skip
    if learned:
        figures = data["learned"]["held_out_ndcg@10"]
        diff, low, high = data["learned"]["learned_minus_bm25"]
        gdiff, glow, ghigh = data["learned"]["learned_minus_global"]
        out.print(f"learned fusion, held out ({folds} folds): nDCG@10 {figures['learned (CV)']:.4f} vs BM25 alone "
                  f"{figures['bm25 alone']:.4f} ({diff:+.4f}, 95% CI {low:+.4f} to {high:+.4f}) and the best global "
                  f"weight {figures['global share (CV)']:.4f} ({gdiff:+.4f}, 95% CI {glow:+.4f} to {ghigh:+.4f})",
                  highlight=False)  # fmt: skip
    if save:
        out.print(f"saved as the tuned configuration of {data['saved_to']} (method `tuned`, and the default "
                  "of every search there that does not say otherwise)", highlight=False)  # fmt: skip
    _write_json(json_file, data)


@app.command("untune")
def untune(
    index: Annotated[str | None, typer.Option(help="Index or alias (default: the alias).")] = None,
) -> None:
    """Remove the index's tuned configuration: searches fall back to the settings' defaults."""
    from hybrid_search.engine import create_engine

    settings = get_settings()
    with create_engine(settings) as engine:
        name = engine.set_tuned_config(index or settings.index_alias, None)
    out.print(f"removed the tuned configuration of {name}")


@app.command("finetune")
def finetune(
    catalogue: Annotated[
        str, typer.Argument(help="The catalogue whose product texts the judgments refer to.")
    ],
    queries: QueriesOpt,
    qrels: QrelsOpt,
    relevant_grade: RelevantGradeOpt = 1.0,
    negative_grade: Annotated[
        float | None,
        typer.Option(help="Judged products below this grade are hard negatives (default: --relevant-grade)."),
    ] = None,
    base: Annotated[
        str | None, typer.Option(help="Text encoder to start from (default: the text_encoder setting).")
    ] = None,
    out_dir: Annotated[
        str, typer.Option("--out", help="Folder that receives the versioned model folder.")
    ] = "models",
    index: Annotated[
        str | None,
        typer.Option(
            help="Index whose BM25 top hits give hard negatives to queries with no judged negative "
            "(default: the alias; --no-mine to skip)."
        ),
    ] = None,
    mine: Annotated[bool, typer.Option("--mine/--no-mine", help="Mine BM25 hard negatives.")] = True,
    epochs: Annotated[int, typer.Option(help="Passes over the pairs.")] = 1,
    batch_size: Annotated[
        int, typer.Option(help="Pairs per step (more in-batch negatives when larger).")
    ] = 64,
    learning_rate: Annotated[float, typer.Option(help="Peak AdamW learning rate.")] = 5e-5,
    max_length: Annotated[int, typer.Option(help="Tokens kept of each query and product text.")] = 32,
    per_query: Annotated[
        int | None, typer.Option(help="Keep at most this many pairs per query (its best-graded products).")
    ] = None,
    freeze_layers: Annotated[
        int, typer.Option(help="Lower transformer layers kept fixed (cheaper steps on a CPU).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the shuffles and the initialisation.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the text encoder on (query, relevant product) pairs from judgments or click logs, contrastively
    (in-batch and hard negatives), into a new versioned model folder; then reindex with it."""
    from hybrid_search.catalog import Product, open_catalogue, product_text
    from hybrid_search.evaluation.console import progress_bar
    from hybrid_search.evaluation.data import read_qrels, read_queries
    from hybrid_search.evaluation.finetune import train, training_pairs

    settings = get_settings()
    texts = {
        p.id: product_text(p.document())
        for p in open_catalogue(catalogue).records()
        if isinstance(p, Product)
    }
    asked = {q.qid: q.text for q in read_queries(queries) if q.text}
    grades = read_qrels(qrels)
    mined: dict[str, list[str]] | None = None
    if mine:
        from hybrid_search.engine import create_engine
        from hybrid_search.search import SearchQuery, SearchService

        target = index or settings.index_alias
        with create_engine(settings) as engine:
            service = SearchService(settings, engine, {}, use_tuned=False)
            wanted = sorted(q for q in grades if q in asked)
            mined = {}
            with progress_bar(err, "mining BM25 negatives", len(wanted), "queries") as update:
                for n, qid in enumerate(wanted, 1):
                    query = SearchQuery(text=asked[qid], size=10, rank_window=10, facets=False,
                                        weights={"bm25": 1.0, "text_knn": 0.0}, fusion="linear")  # fmt: skip
                    mined[qid] = [h.id for h in service.search(query, index=target).hits]
                    update(n)
    pairs = training_pairs(asked, grades, texts, relevant_grade=relevant_grade, negative_grade=negative_grade,
                           mined=mined, per_query=per_query, seed=seed)  # fmt: skip
    if not pairs:
        raise HybridSearchError(
            f"no training pairs: no judged query of {qrels} has a product of {catalogue} graded >= {relevant_grade}"
        )
    _echo(f"{len(pairs)} pairs from {len({p.qid for p in pairs})} queries "
          f"({sum(p.negative is not None for p in pairs)} with a hard negative)")  # fmt: skip
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]fine-tuning"), BarColumn(), MofNCompleteColumn(), TextColumn("steps, loss"),
               TextColumn("{task.fields[loss]}"), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("fine-tuning", total=None, loss="-")
        report = train(pairs, base=base or settings.text_encoder, out_dir=Path(out_dir), epochs=epochs,
                       batch_size=batch_size, learning_rate=learning_rate, max_length=max_length,
                       freeze_layers=freeze_layers, device=settings.device, seed=seed,
                       progress=lambda step, steps, loss: bar.update(task, completed=step, total=steps,
                                                                     loss=f"{loss:.3f}"))  # fmt: skip
    summary = report.summary()
    spec = f"hf-text:{report.folder.resolve()}"
    summary["text_encoder"] = spec
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"wrote {report.folder} ({report.steps} steps, {summary['minutes_per_epoch']} min per epoch on "
              f"{report.device}, loss {summary['loss_per_epoch']})")  # fmt: skip
    out.print(
        "use it: give the workers, the API and this shell HYBRID_SEARCH_TEXT_ENCODER="
        f"{spec} and run `hybrid-search reindex {catalogue}` (new index version, alias swapped when done)"
    )


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
