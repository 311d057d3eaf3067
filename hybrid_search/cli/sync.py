"""``hybrid-search backfill | sync``: vectors for a shop's attached index, through the workers.

    hybrid-search backfill --config attach.toml [--wait] [--json] [--restart]
    hybrid-search sync --config attach.toml (--once | --follow) [--wait] [--full] [--json]

The file names the index; the attachment recorded in the index's ``_meta`` by ``hybrid-search attach apply``
is what counts (an index not attached yet is refused).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hybrid_search.cli.common import JsonOpt, echo, err, out, print_json
from hybrid_search.errors import ConfigurationError
from hybrid_search.settings import get_settings

if TYPE_CHECKING:
    from hybrid_search.catalog.attachment import AttachConfig
    from hybrid_search.engine import SearchEngine
    from hybrid_search.ingest.backfill import BackfillResult

ConfigOpt = Annotated[
    Path, typer.Option("--config", help="The attachment file (TOML) of the index.", show_default=False)
]


def _attachment(engine: SearchEngine, path: Path) -> AttachConfig:
    """The attachment recorded in the index the file names."""
    from hybrid_search.catalog.attachment import load_attach_config
    from hybrid_search.ingest.attached import recorded_attachment

    return recorded_attachment(engine, load_attach_config(path).index)


def _show(result: BackfillResult, as_json: bool) -> None:
    data = result.as_dict()
    if as_json:
        print_json(data)
        return
    line = (
        f"{result.index}: {result.scanned} documents read in {result.pages} pages, "
        f"{result.queued} sent to the workers (job {result.job})"
    )
    if result.waited:
        line += (
            f"; {result.embedded} embedded, {result.unchanged} unchanged, {result.failed} failed, "
            f"{result.missing} deleted meanwhile"
            + (f", {result.photo_failed} photos unreadable" if result.photo_failed else "")
        )
        if result.failed or result.photo_failed:
            line += f" (dead letters: hybrid-search dead-letters --index {result.index})"
    else:
        line += f"; {result.unchanged} already up to date"
    out.print(line, highlight=False, soft_wrap=True)


def backfill(
    config: ConfigOpt,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress until every document is done.")] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget where a stopped backfill was and start over.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give every document of an attached index its vectors (the stale ones go to the workers); a stopped
    backfill resumes where it was."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.backfill import ScanProgress
    from hybrid_search.ingest.backfill import backfill as run_backfill
    from hybrid_search.ingest.jobs import progress as job_progress

    settings = get_settings()
    with create_engine(settings) as engine:
        attachment = _attachment(engine, config)
        if as_json:
            result = run_backfill(engine, settings, attachment, resume=not restart, wait=wait)
        else:
            with Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err,
            ) as bar:  # fmt: skip
                scan = bar.add_task("scanning", total=max(engine.count(attachment.index), 1), info="")
                jobs: dict[str, Any] = {}

                def scanned(at: ScanProgress) -> None:
                    bar.update(scan, total=max(at.total, at.scanned, 1), completed=at.scanned,
                               info=f"{at.unchanged} up to date, {at.queued} queued")  # fmt: skip

                def embedding(state: dict[str, Any]) -> None:
                    from hybrid_search.ingest.enqueue import Job

                    total = int(state.get("total", 0))
                    if "task" not in jobs:
                        jobs["task"] = bar.add_task("embedding", total=max(total, 1), info="")
                    done, failed = job_progress(Job("", "", total, 0, 0), state)
                    elapsed = bar.tasks[jobs["task"]].elapsed or 0.0
                    rate = f"{done / elapsed:.1f} docs/s, " if elapsed > 0 and done else ""
                    bar.update(
                        jobs["task"], total=max(total, 1), completed=done, info=f"{rate}failed {failed}"
                    )

                result = run_backfill(engine, settings, attachment, progress=scanned, resume=not restart,
                                      wait=wait, on_job=embedding)  # fmt: skip
    if result.resumed and not as_json:
        echo(f"resumed a stopped backfill of {result.index} (job {result.job}); --restart starts over")
    _show(result, as_json)


def sync(
    config: ConfigOpt,
    once: Annotated[bool, typer.Option("--once", help="Sync once and exit.")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Sync every HYBRID_SEARCH_ATTACH_SYNC_INTERVAL_S until Ctrl-C.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="With --once: wait until the workers are done.")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Scan every document (compare content hashes), not just changes.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Follow the shop's writes: changed and new documents go to the workers (by updated_at; without it, or
    with --full, a scan comparing content hashes)."""
    from hybrid_search.engine import create_engine
    from hybrid_search.ingest.sync import follow as follow_changes
    from hybrid_search.ingest.sync import sync_once

    if once == follow:
        raise ConfigurationError("give one of --once and --follow")
    settings = get_settings()
    with create_engine(settings) as engine:
        attachment = _attachment(engine, config)
        if once:
            _show(sync_once(engine, settings, attachment, wait=wait, full=full), as_json)
            return

        def show(result: BackfillResult) -> None:
            if as_json:
                print(json.dumps(result.as_dict()), flush=True)  # one line per sync
            else:
                _show(result, False)

        echo(f"following {attachment.index} every {settings.attach_sync_interval_s:g} s (Ctrl-C stops)")
        try:
            follow_changes(engine, settings, attachment, on_result=show, full=full)
        except KeyboardInterrupt:
            echo("stopped")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``hybrid-search`` app."""
    app.command("backfill")(backfill)
    app.command("sync")(sync)


__all__ = ["backfill", "register", "sync"]
