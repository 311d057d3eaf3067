"""Draw evaluated methods side by side (matplotlib, the ``eval`` extra), one group of bars per metric."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hybrid_search.errors import ConfigurationError

PLOTTED = ("ndcg@10", "condensed_ndcg@10", "recall@10", "recall@100", "mrr@10")


def plot_methods(
    summary: Mapping[str, Mapping[str, Any]],
    path: str | Path,
    *,
    metrics: Sequence[str] = PLOTTED,
    title: str = "",
) -> Path:
    """Write a PNG bar chart of ``summary`` (method -> metric -> value), one colour per method.

    A bar carries a whisker from the baseline's value + the bootstrap interval of the difference when the
    summary has one (``vs_baseline``), so a bar whose whisker stays clear of the baseline's bar is a
    difference unlikely to be noise.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigurationError(
            "--plot needs matplotlib: pip install 'hybrid-search[eval]' (or pip install matplotlib)"
        ) from None
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigurationError(f"--plot writes a PNG file: {path} does not end in .png")
    methods = list(summary)
    baseline = next((m for m in methods if "vs_baseline" not in summary[m]), None)
    width = 0.8 / max(1, len(methods))
    figure, axes = plt.subplots(figsize=(max(7.0, 1.6 * len(metrics) + 0.5 * len(methods)), 4.5))
    for i, method in enumerate(methods):
        row = summary[method]
        xs = [m + (i - (len(methods) - 1) / 2) * width for m in range(len(metrics))]
        values = [float(row.get(m) or 0.0) for m in metrics]
        bars = axes.bar(xs, values, width, label=method)
        differences = row.get("vs_baseline") or {}
        if baseline is not None and differences:
            lows, highs, centres = [], [], []
            for metric, value in zip(metrics, values, strict=True):
                ci = differences.get(metric)
                base = float(summary[baseline].get(metric) or 0.0)
                if ci is None:
                    lows.append(0.0)
                    highs.append(0.0)
                    centres.append(value)
                    continue
                centre = base + ci["diff"]
                centres.append(centre)
                lows.append(centre - (base + ci["low"]))
                highs.append((base + ci["high"]) - centre)
            axes.errorbar(xs, centres, yerr=[lows, highs], fmt="none", ecolor="black", capsize=2, lw=0.8)
        for bar, value in zip(bars, values, strict=True):
            axes.annotate(  # inside the bar, at its foot: clear of the interval whiskers
                f"{value:.3f}",
                (bar.get_x() + bar.get_width() / 2, 0.0),
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=90,
                color="white",
                xytext=(0, 3),
                textcoords="offset points",
            )
    axes.set_xticks(range(len(metrics)), list(metrics))
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("mean over queries")
    axes.set_title(title or "retrieval methods")
    axes.legend(fontsize=7, ncols=min(3, len(methods)), loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


__all__ = ["PLOTTED", "plot_methods"]
