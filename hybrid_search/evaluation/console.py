"""Readable tables of ``hybrid-search eval`` and ``tune`` reports (rich), and a progress bar for long runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hybrid_search.evaluation.runner import METRICS

HEADERS = {
    "ndcg@10": "nDCG@10",
    "condensed_ndcg@10": "cond. nDCG@10",
    "recall@1": "R@1",
    "recall@10": "R@10",
    "recall@100": "R@100",
    "mrr@10": "MRR@10",
}
DIFF_METRICS = ("ndcg@10", "condensed_ndcg@10", "recall@100", "mrr@10")


@contextlib.contextmanager
def progress_bar(console: Console, label: str, total: int, unit: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on ``console``; yields ``update(done)``."""
    with Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=max(total, 1))
        yield lambda done: progress.update(task, completed=done)


def _value(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _diff(ci: Mapping[str, float] | None) -> str:
    if not ci:
        return "-"
    marker = " *" if ci["low"] > 0 or ci["high"] < 0 else ""
    return f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]{marker}"


def metrics_table(
    summary: Mapping[str, Mapping[str, Any]], *, title: str = "", latency: bool = True
) -> Table:
    """One row per method: every metric's mean, and p50 latency."""
    table = Table(title=title or None)
    table.add_column("method", overflow="fold")
    for metric in METRICS:
        table.add_column(HEADERS[metric], justify="right")
    if latency:
        table.add_column("p50 ms", justify="right")
    for name, row in summary.items():
        cells = [name, *(_value(row.get(m)) for m in METRICS)]
        if latency:
            cells.append(f"{row['p50_ms']:.1f}" if row.get("p50_ms") is not None else "-")
        table.add_row(*cells)
    return table


def differences_table(
    summary: Mapping[str, Mapping[str, Any]], baseline: str, metrics: Sequence[str] = DIFF_METRICS
) -> Table:
    """Difference of each method from the baseline with its paired bootstrap 95% interval (``*``: excludes 0)."""
    table = Table(title=f"difference from {baseline}, paired bootstrap 95% interval (*: excludes 0)")
    table.add_column("method", overflow="fold")
    for metric in metrics:
        table.add_column(f"Δ {HEADERS[metric]}", justify="right")
    for name, row in summary.items():
        if name == baseline:
            continue
        table.add_row(name, *(_diff((row.get("vs_baseline") or {}).get(m)) for m in metrics))
    return table


def eval_tables(report: Mapping[str, Any]) -> list[Table]:
    summary = report["methods"]
    title = (
        f"{report['queries']} queries ({report['queries_with_relevant']} with a relevant document: Recall and "
        f"MRR average over those) on {report['index']}"
    )
    tables = [metrics_table(summary, title=title)]
    if len(summary) > 1:
        tables.append(differences_table(summary, report["baseline"]))
    return tables


def folds_table(report: Mapping[str, Any], family: str = "all") -> Table:
    table = Table(
        "fold",
        "queries",
        "chosen on the other folds",
        f"{report['metric']} there (fit)",
        f"{report['metric']} held out",
        title=f"{report['folds'] and len(report['folds'][family])}-fold cross-validation ({family})",
    )
    for fold in report["folds"][family]:
        table.add_row(
            str(fold["fold"]),
            str(fold["queries"]),
            fold["chosen"],
            f"{fold['train_mean']:.3f}",
            f"{fold['held_out_mean']:.3f}",
        )
    return table


def tune_tables(report: Mapping[str, Any]) -> list[Table]:
    held_out = report["held_out"]
    return [
        folds_table(report),
        metrics_table(
            held_out,
            title="held-out figures: each query ranked by the configuration chosen without its fold",
            latency=False,
        ),
        differences_table(held_out, report["baseline"]),
    ]


__all__ = [
    "differences_table",
    "eval_tables",
    "folds_table",
    "metrics_table",
    "progress_bar",
    "tune_tables",
]
