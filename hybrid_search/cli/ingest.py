"""``hybrid-search ingest | reindex | dead-letters | convert | workers``: catalogues into the index through the
queue (:class:`~hybrid_search.ingest.enqueue.Enqueuer`), and the workers that embed and write them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from hybrid_search.cli.common import JsonOpt, echo, ensure_index, follow, out, print_json
from hybrid_search.settings import get_settings


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
    from hybrid_search.ingest.enqueue import Enqueuer
    from hybrid_search.ingest.jobs import summary

    settings = get_settings()
    target = index or settings.index_alias
    if create:
        ensure_index(settings, target)
    with Enqueuer(settings) as enqueuer:
        job = enqueuer.catalogue(open_catalogue(catalogue), index=target, batch_size=batch_size)
    if not wait:
        result = summary(settings, job, {})
        result["status"] = "queued"
        print_json(result) if as_json else out.print(
            f"job {job.id}: {job.read} products in {job.batches} batches queued for {target}; "
            f"{job.read_errors} invalid records dead-lettered"
        )
        return
    result = follow(settings, job, quiet=as_json)
    if as_json:
        print_json(result)
        return
    table = Table(
        "read", "indexed", "unchanged (not re-embedded)", "dead-lettered", "texts embedded", "photos embedded"
    )
    table.add_row(*(str(result[k]) for k in ("read", "indexed", "skipped_unchanged", "dead_lettered",
                                             "text_embedded", "images_embedded")))  # fmt: skip
    out.print(table)
    out.print(f"dead letters: {result['dead_letters']} (hybrid-search dead-letters)")


def reindex(
    catalogue: Annotated[str, typer.Argument(help="The catalogue to re-embed from.")],
    swap: Annotated[bool, typer.Option("--swap/--no-swap", help="Move the alias when done.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Re-embed the catalogue into a new versioned index and swap the alias to it (no downtime)."""
    from hybrid_search.catalog import open_catalogue
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.enqueue import Enqueuer
    from hybrid_search.ingest.indices import create_version, publish

    settings = get_settings()
    with create_engine(settings) as engine:
        name = create_version(settings, engine, activate=False)
    echo(f"created {name}; re-embedding into it")
    with Enqueuer(settings) as enqueuer:
        job = enqueuer.catalogue(open_catalogue(catalogue), index=name)
    result = follow(settings, job, quiet=as_json)
    with create_engine(settings) as engine:
        publish(settings, engine, name, swap=swap)
    result["swapped"] = swap
    if as_json:
        print_json(result)
    else:
        out.print(f"{name}: {result['indexed']} indexed, {result['dead_lettered']} dead-lettered; "
                  + (f"alias {settings.index_alias} -> {name}" if swap else "alias not moved"))  # fmt: skip


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
        print_json({"total": total, "dead_letters": rows}, ensure_ascii=False)
    else:
        table = Table("id", "source", "reason", "at")
        for row in rows:
            table.add_row(
                str(row.get("id")), str(row.get("source")), str(row.get("reason"))[:200], str(row.get("at"))
            )
        out.print(table)
        out.print(f"{total} dead letter(s) for {target}")
    if clear:
        echo(f"cleared {tracker.clear_dead_letters(target)} dead letter(s)")


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
        echo(f"skipped {error.source}: {error.reason}")
    echo(f"{written} products written, {len(errors)} invalid records skipped")


def workers(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(help="Worker processes (default: the setting).")] = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: the ingest queue).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run Celery ingestion workers in the foreground (extra arguments go to `celery worker`)."""
    from hybrid_search.ingest.workers import celery_worker_argv, reexec_with_worker_env, share_concurrency

    settings = get_settings()
    reexec_with_worker_env(sys.argv[1:])  # glibc reads its allocator settings at start-up only
    if concurrency is not None:
        share_concurrency(concurrency)
    from workers.app import app as celery_app

    celery_app.worker_main(
        celery_worker_argv(
            settings, concurrency=concurrency, queues=queues, loglevel=loglevel, extra=ctx.args
        )
    )


def register(app: typer.Typer) -> None:
    """Add these commands to the ``hybrid-search`` app."""
    app.command("ingest")(ingest)
    app.command("reindex")(reindex)
    app.command("dead-letters")(dead_letters)
    app.command("convert")(convert)
    app.command("workers", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        workers
    )


__all__ = ["convert", "dead_letters", "ingest", "register", "reindex", "workers"]
