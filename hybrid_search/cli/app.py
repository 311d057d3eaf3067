"""The ``hybrid-search`` command line: the Typer app, its global options, and every command registered in the
order ``--help`` lists them. Each command lives in a module of its group and only parses arguments, calls the
library and prints.

    stack      stack up | down | status               (:mod:`.stack`)
    index      index create | swap | list | delete     (:mod:`.index`)
    attach     attach plan | apply | detach | reindex  (:mod:`.attach`)
    ingest     ingest, reindex, dead-letters, convert, workers   (:mod:`.ingest`)
    sync       backfill, sync (a shop's attached index)        (:mod:`.sync`)
    search     search, serve, run, demo                (:mod:`.search`)
    evaluate   eval, tune, untune, finetune            (:mod:`.evaluate`)
    health     health                                  (:mod:`.health`)
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from hybrid_search.cli import attach, evaluate, health, index, ingest, search, stack, sync
from hybrid_search.cli.common import err
from hybrid_search.errors import HybridSearchError

app = typer.Typer(
    help="Multimodal hybrid (BM25 + kNN) product search over Elasticsearch or OpenSearch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(stack.app, name="stack")
app.add_typer(index.app, name="index")
app.add_typer(attach.app, name="attach")


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


for module in (ingest, sync, search, evaluate, health):
    module.register(app)


def main() -> None:
    """Entry point: every expected failure is one line on stderr and exit status 1."""
    try:
        app()
    except HybridSearchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
