"""PCI risk sweeps: grids of seeded scenarios on Dask, tidy rows, Parquet, Wilson intervals.

>>> from mgsim.sweep import Grid, run_sweep
>>> grid = Grid(namespaces=("twilio",), margins_before_ms=(0, 1500),
...             latencies=("fixed:400",), strategies=("naive",), seeds=2)
>>> result = run_sweep(grid, scheduler="in-process", progress=None)
>>> result.summary[["margin_before_ms", "leaks", "scenarios"]].values.tolist()
[[0.0, 2.0, 2.0], [1500.0, 0.0, 2.0]]

See :mod:`mgsim.sweep.grid` (axes), :mod:`mgsim.sweep.rows` (what a row holds),
:mod:`mgsim.sweep.runner` (batches and resuming), :mod:`mgsim.sweep.cluster` (where it
runs) and :mod:`mgsim.sweep.stats` (summaries).
"""

from __future__ import annotations

from mgsim.sweep.grid import STRATEGIES, Cell, Grid, GridError, Latency
from mgsim.sweep.rows import OUTCOMES, ROW_SCHEMA
from mgsim.sweep.runner import SweepResult, run_sweep
from mgsim.sweep.stats import scenarios_needed, smallest_margin, summarize, wilson_interval

__all__ = [
    "OUTCOMES",
    "ROW_SCHEMA",
    "STRATEGIES",
    "Cell",
    "Grid",
    "GridError",
    "Latency",
    "SweepResult",
    "run_sweep",
    "scenarios_needed",
    "smallest_margin",
    "summarize",
    "wilson_interval",
]
