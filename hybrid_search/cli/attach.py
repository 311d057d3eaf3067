"""``hybrid-search attach plan|apply|detach|reindex --config FILE``: the layer on a shop's own index
(:mod:`hybrid_search.attach`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hybrid_search.cli.common import JsonOpt, echo, out, print_json
from hybrid_search.settings import get_settings

if TYPE_CHECKING:
    from hybrid_search.attach import AttachPlan
    from hybrid_search.engine import SearchEngine

app = typer.Typer(help="Attach the layer to a shop's existing index (hs_ fields only, the shop's own query).")

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="The attachment file (TOML: index, [fields], [images], [lexical])."),
]


def _plan(engine: SearchEngine, config_file: Path) -> AttachPlan:
    from hybrid_search.attach import plan_attachment
    from hybrid_search.catalog.attachment import load_attach_config

    return plan_attachment(engine, load_attach_config(config_file), get_settings())


@app.command("plan")
def attach_plan(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Say what attaching would add and every risk found; changes nothing (exit status 1 when refused)."""
    from hybrid_search.engine import create_engine

    with create_engine(get_settings()) as engine:
        plan = _plan(engine, config)
    if as_json:
        print_json(plan.as_dict())
    else:
        out.print(plan.render(), highlight=False, markup=False, soft_wrap=True)
    if plan.refused:
        raise typer.Exit(1)


@app.command("apply")
def attach_apply(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """Add the missing hs_ fields and record the attachment in the index's _meta (again: changes nothing)."""
    from hybrid_search.attach import apply_attachment
    from hybrid_search.engine import create_engine

    with create_engine(get_settings()) as engine:
        result = apply_attachment(engine, _plan(engine, config))
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(result.render(), highlight=False, markup=False, soft_wrap=True)


@app.command("detach")
def attach_detach(
    config: ConfigOpt,
    strip: Annotated[
        bool, typer.Option("--strip", help="Also remove the hs_ values from the documents.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Forget the attachment (its _meta records); --strip also removes the hs_ values."""
    from hybrid_search.attach import detach
    from hybrid_search.catalog.attachment import load_attach_config
    from hybrid_search.engine import create_engine

    attachment = load_attach_config(config)
    with create_engine(get_settings()) as engine:
        result = detach(engine, attachment, strip=strip)
    if as_json:
        print_json(result.as_dict())
    else:
        out.print(result.render(), highlight=False, markup=False, soft_wrap=True)


@app.command("reindex")
def attach_reindex(
    config: ConfigOpt,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Move the name to the copy without asking.")
    ] = False,
) -> None:
    """OpenSearch index without index.knn: copy it into a k-NN index and move its name to the copy (an alias).

    Pause the shop's writes first: writes made during the copy are not in it.
    """
    from hybrid_search.attach import reindex_attached
    from hybrid_search.engine import create_engine

    def confirm(message: str) -> bool:
        if yes:
            echo(message + " yes (--yes)")
            return True
        return typer.confirm(message, default=False, err=True)

    with create_engine(get_settings()) as engine:
        result = reindex_attached(engine, _plan(engine, config), confirm)
    out.print(result.render(), highlight=False, markup=False, soft_wrap=True)


__all__ = ["app"]
