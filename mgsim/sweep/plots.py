"""A sweep's summary as heatmaps: leak probability over margin and latency (needs the
``lab`` extra for matplotlib; figures are built without pyplot, as in :mod:`mgsim.lab`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mgsim.errors import ConfigError

__all__ = ["leak_heatmap"]


def leak_heatmap(summary: pd.DataFrame, *, value: str = "leak_p") -> Any:
    """One heatmap per namespace (columns) and stop strategy (rows): ``value`` (the leak
    probability by default, or ``leak_high`` for its upper bound) for each margin before a
    span (y) and latency distribution (x, in the grid's order); each square is labelled
    leaks/scenarios. Other axes of the grid must have one value, or be filtered first."""
    from matplotlib.figure import Figure

    for axis in ("plan", "margin_after_ms", "error_rate", "call"):
        if summary[axis].nunique() > 1:
            raise ConfigError(f"the summary has several {axis} values; select one first")
    namespaces = list(dict.fromkeys(summary["namespace"]))
    strategies = list(dict.fromkeys(summary["strategy"]))
    latencies = list(dict.fromkeys(summary["latency"]))
    margins = sorted(summary["margin_before_ms"].unique())
    fig = Figure(figsize=(2.6 * len(namespaces) + 1.2, 2.4 * len(strategies) + 0.6),
                 layout="constrained")  # fmt: skip
    axes = fig.subplots(len(strategies), len(namespaces), squeeze=False, sharex=True,
                        sharey=True)  # fmt: skip
    image = None
    for r, strategy in enumerate(strategies):
        for c, ns in enumerate(namespaces):
            ax = axes[r][c]
            part = summary[(summary["namespace"] == ns) & (summary["strategy"] == strategy)]
            grid = part.pivot_table(index="margin_before_ms", columns="latency", values=value,
                                    aggfunc="max", sort=False)  # fmt: skip
            grid = grid.reindex(index=margins, columns=latencies)
            image = ax.imshow(grid.to_numpy(dtype=float), vmin=0.0, vmax=1.0, cmap="Reds",
                              origin="lower", aspect="auto")  # fmt: skip
            counts = part.set_index(["margin_before_ms", "latency"])
            for yi, m in enumerate(margins):
                for xi, lat in enumerate(latencies):
                    if (m, lat) in counts.index:
                        row = counts.loc[(m, lat)]
                        shade = grid.iloc[yi, xi]
                        ax.text(xi, yi, f"{int(row['leaks'])}/{int(row['scenarios'])}",
                                ha="center", va="center", fontsize=8,
                                color="white" if shade > 0.6 else "black")  # fmt: skip
            ax.set_xticks(range(len(latencies)), latencies, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(len(margins)), [f"{m:g}" for m in margins], fontsize=8)
            if r == 0:
                ax.set_title(ns, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"{strategy}\nmargin before (ms)", fontsize=9)
            if r == len(strategies) - 1:
                ax.set_xlabel("control latency (ms)", fontsize=9)
    if image is not None:
        label = "leak probability" if value == "leak_p" else value
        fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    return fig
