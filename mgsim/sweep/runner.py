"""Running a grid: batches of scenarios on Dask workers, cells saved as they finish.

The scenarios of the cells still missing from the output are cut, cell by cell, into
batches of ``batch_size`` (by default sized so each thread gets at least eight batches, and
no batch holds more than 32 scenarios: a few seconds of work against a few milliseconds of
Dask overhead). A bounded number of batches is in flight at a time, so the scheduler and
this process hold little however large the grid is. Each call is sent to the cluster once,
as a task of its own: a worker that dies loses nothing the scheduler cannot recompute.

Every scenario depends only on its cell and seed (its simulator, fault draws and clock are
its own), so how the scenarios are batched and which worker runs them does not change a
row. Rows that come back twice (a batch run again after its worker died, with its first
result already in) are kept once.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from mgsim.errors import ConfigError, MgsimError
from mgsim.sweep.cluster import Connection, connect
from mgsim.sweep.grid import Cell, Grid, call_digests, load_calls
from mgsim.sweep.progress import Progress, TextProgress, auto_progress
from mgsim.sweep.rows import ROW_SCHEMA, run_batch
from mgsim.sweep.stats import summarize
from mgsim.sweep.store import Store

__all__ = ["Batch", "SweepResult", "batches", "run_sweep"]

MAX_BATCH = 32
BATCHES_PER_THREAD = 8
IN_FLIGHT_PER_THREAD = 3


@dataclass(frozen=True, slots=True)
class Batch:
    """Scenarios run by one task: ``items`` are (index into ``cells``, seed)."""

    number: int
    cells: tuple[Cell, ...]
    items: tuple[tuple[int, int], ...]
    cell_ids: tuple[int, ...]  # each local cell's index in the grid's list of cells


def batches(cells: Sequence[Cell], todo: Sequence[int], size: int) -> Iterator[Batch]:
    """Cut the scenarios of ``cells[i] for i in todo`` into batches of ``size``, in order."""
    flat = ((i, seed) for i in todo for seed in cells[i].seeds)
    for number in itertools.count():
        chunk = list(itertools.islice(flat, size))
        if not chunk:
            return
        ids = tuple(dict.fromkeys(i for i, _ in chunk))
        local = {gi: li for li, gi in enumerate(ids)}
        yield Batch(
            number,
            tuple(cells[i] for i in ids),
            tuple((local[i], seed) for i, seed in chunk),
            ids,
        )


@dataclass(slots=True)
class SweepResult:
    """What a sweep produced: every row of the grid (``rows``, in grid order, seeds in
    order), the per-cell ``summary``, and how many scenarios ran now (``computed``) or
    were already in the output (``reused``)."""

    rows: pd.DataFrame
    summary: pd.DataFrame
    out: Path | None
    computed: int
    reused: int
    cluster: str
    dashboard: str | None


def _batch_size(scenarios: int, threads: int, requested: int | None) -> int:
    if requested is not None:
        if isinstance(requested, bool) or requested < 1:
            raise ConfigError(f"batch_size must be >= 1, got {requested}")
        return requested
    return max(1, min(MAX_BATCH, -(-scenarios // (threads * BATCHES_PER_THREAD))))


def run_sweep(
    grid: Grid,
    out: str | Path | None = None,
    *,
    scheduler: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    progress: Progress | str | None = "auto",
    dashboard: bool = True,
    confidence: float = 0.95,
    echo: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run every scenario of ``grid`` that ``out`` lacks and return all of the grid's rows
    and its summary (also written to ``out`` as Parquet, when given).

    ``scheduler`` and ``workers`` choose the cluster (:mod:`mgsim.sweep.cluster`);
    ``progress`` is ``"auto"`` (a widget in notebooks, a bar on terminals), ``"text"``,
    ``None`` or a :class:`~mgsim.sweep.progress.Progress`; ``echo`` is told where the sweep
    runs and the dashboard's address.

    >>> grid = Grid(namespaces=("genesysaudiohook",), margins_before_ms=(0, 1500), seeds=2)
    >>> result = run_sweep(grid, scheduler="in-process", progress=None)
    >>> result.summary[["margin_before_ms", "scenarios", "leaks"]].values.tolist()
    [[0.0, 2.0, 0.0], [1500.0, 2.0, 0.0]]
    """
    cells = grid.cells()
    store = Store(out) if out is not None else None
    todo = [i for i, c in enumerate(cells) if store is None or not store.has(c)]
    total = sum(len(cells[i].seeds) for i in todo)
    reused = grid.size - total
    rows_by_cell: dict[int, list[dict[str, Any]]] = {}
    cluster, link = "nothing to run", None
    if todo:
        bar = _progress(progress)
        with connect(scheduler, workers=workers, dashboard=dashboard) as conn:
            cluster, link = conn.description, conn.dashboard
            if echo is not None:
                echo(f"running {total:,} scenarios in {len(todo):,} cells on {cluster}")
                if link:
                    echo(f"Dask dashboard: {link}")
            size = _batch_size(total, conn.threads, batch_size)
            work = batches(cells, todo, size)
            if bar is not None:
                bar.start(total, reused)
            try:
                _drive(conn, cells, work, store, rows_by_cell, bar, grid)
            finally:
                if bar is not None:
                    bar.close()
    if store is not None:
        store.write_grid(grid)
        rows = store.read_cells(cells)
    else:
        # through Arrow, so the columns have the same types as rows read from Parquet
        ordered = [r for i in range(len(cells)) for r in sorted(rows_by_cell[i], key=_seed)]
        rows = pa.Table.from_pylist(ordered, schema=ROW_SCHEMA).to_pandas()
    summary = summarize(rows, confidence)
    if store is not None:
        store.write_frame("rows", rows)
        store.write_frame("summary", summary)
    return SweepResult(rows, summary, store.path if store else None, total, reused, cluster, link)


def _seed(row: dict[str, Any]) -> int:
    return int(row["seed"])


def _progress(progress: Progress | str | None) -> Progress | None:
    if progress == "auto":
        return auto_progress()
    if progress == "text":
        return TextProgress()
    if progress is None or not isinstance(progress, str):
        return progress
    raise ConfigError(f"progress {progress!r}: use 'auto', 'text', None or a Progress")


def _drive(
    conn: Connection,
    cells: Sequence[Cell],
    work: Iterator[Batch],
    store: Store | None,
    rows_by_cell: dict[int, list[dict[str, Any]]],
    bar: Progress | None,
    grid: Grid,
) -> None:
    done = 0
    seen: set[tuple[int, int]] = set()

    def take(batch: Batch, rows: list[dict[str, Any]]) -> None:
        nonlocal done
        for (li, seed), row in zip(batch.items, rows, strict=True):
            gi = batch.cell_ids[li]
            if (gi, seed) in seen:
                continue
            seen.add((gi, seed))
            rows_by_cell.setdefault(gi, []).append(row)
            done += 1
            if len(rows_by_cell[gi]) == len(cells[gi].seeds) and store is not None:
                store.write_cell(cells[gi], rows_by_cell.pop(gi))
        if bar is not None:
            bar.update(done)

    if conn.client is None:
        calls = load_calls(grid.calls)
        for batch in work:
            take(batch, run_batch(batch.cells, batch.items, calls))
        return

    import distributed

    as_completed: Any = distributed.as_completed

    client = conn.client
    token = uuid.uuid4().hex[:8]
    # One task per call, holding it on the cluster: batches depend on it, and a worker
    # lost with it only means the scheduler runs the task again.
    digests = call_digests(grid.calls)
    calls_f = {
        name: client.submit(_hold, call, key=f"mgsim-call-{digests[name]}-{token}", pure=False)
        for name, call in load_calls(grid.calls).items()
    }

    def submit(batch: Batch) -> Any:
        needed = {c.call: calls_f[c.call] for c in batch.cells}
        future = client.submit(
            run_batch, batch.cells, batch.items, needed,
            key=f"mgsim-batch-{token}-{batch.number}", pure=False,
        )  # fmt: skip
        return future

    window = max(2, conn.threads * IN_FLIGHT_PER_THREAD)
    pending: dict[str, tuple[Any, Batch]] = {}
    for batch in itertools.islice(work, window):
        future = submit(batch)
        pending[future.key] = (future, batch)
    queue = as_completed([f for f, _ in pending.values()])
    try:
        for future in queue:
            if future.key not in pending:
                continue  # told twice of one batch: its rows are in already
            batch = pending.pop(future.key)[1]
            try:
                rows = future.result()
            except MgsimError:
                raise
            except Exception as exc:
                raise MgsimError(
                    f"batch {batch.number} ({len(batch.items)} scenarios) failed on the "
                    f"cluster: {type(exc).__name__}: {exc}"
                ) from exc
            future.release()
            take(batch, rows)
            nxt = next(work, None)
            if nxt is not None:
                f = submit(nxt)
                pending[f.key] = (f, nxt)
                queue.add(f)
    finally:
        if pending:  # stopped early: nothing left running on a shared cluster
            client.cancel([f for f, _ in pending.values()])
        for f in calls_f.values():
            f.release()


def _hold(value: Any) -> Any:
    return value
