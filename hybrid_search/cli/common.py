"""What the command modules share: the two consoles, the ``--json`` option, output helpers, the progress bar of
an ingestion job, and the one place that gives a command its search service (:func:`search_service`, and the
pair an evaluation compares, :func:`compared_services`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from hybrid_search.engine import SearchEngine
    from hybrid_search.ingest.enqueue import Job
    from hybrid_search.search import SearchService
    from hybrid_search.settings import Settings

out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def echo(message: str) -> None:
    """A progress or status line on stderr (stdout stays for the result)."""
    err.print(message, highlight=False, soft_wrap=True)


def print_json(data: Any, *, ensure_ascii: bool = True) -> None:
    """The command's result as indented JSON on stdout."""
    print(json.dumps(data, indent=2, ensure_ascii=ensure_ascii))


def search_service(settings: Settings, engine: SearchEngine, *, use_tuned: bool = True) -> SearchService:
    """The search service of a command: the configured encoders (models load on first use), torch's threads set
    for query encoding. ``use_tuned=False``: ignore the index's tuned configuration."""
    from hybrid_search.search import SearchService, apply_search_threads

    apply_search_threads(settings)
    return SearchService.from_settings(settings, engine=engine, use_tuned=use_tuned)


def compared_services(settings: Settings, engine: SearchEngine) -> tuple[SearchService, SearchService]:
    """The two services an evaluation compares, ``(fixed, tuned)``: without and with the index's tuned
    configuration, sharing one set of encoders, so each model loads once."""
    from hybrid_search.search import SearchService

    tuned = search_service(settings, engine)
    return SearchService(settings, engine, tuned.encoders, use_tuned=False), tuned


def ensure_index(settings: Settings, target: str) -> None:
    """Give the alias its first version when it has none (and say so); any other missing index is an error."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.indices import ensure_index as ensure

    with create_engine(settings) as engine:
        created = ensure(settings, engine, target)
    if created is not None:
        echo(f"created {created} behind alias {target}")


def follow(settings: Settings, job: Job, *, quiet: bool) -> dict[str, Any]:
    """Wait for the job to end, with a progress bar on stderr unless ``quiet``; returns its summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybrid_search.ingest.jobs import progress, wait_for_job

    if quiet:
        return wait_for_job(settings, job)
    with Progress(
        TextColumn("[bold]ingesting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
        TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(), console=err,
    ) as bar:  # fmt: skip
        task = bar.add_task("ingest", total=max(job.read, 1), rate="", failed=job.read_errors)

        def update(state: dict[str, Any]) -> None:
            done, failed = progress(job, state)
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{done / elapsed:.1f} products/s" if elapsed > 0 else ""
            bar.update(task, completed=done, rate=rate, failed=failed)

        return wait_for_job(settings, job, on_progress=update)


__all__ = [
    "JsonOpt",
    "compared_services",
    "echo",
    "ensure_index",
    "err",
    "follow",
    "out",
    "print_json",
    "search_service",
]
