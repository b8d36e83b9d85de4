"""Sweep throughput on Dask: guarded one-minute calls, the four namespaces mixed.

One grid — a one-minute call stitched from the samples (``make_long_call(1)``, given to the
sweep as the user's own ``.wav`` + sidecar), the guard plan with its default margins, the
PCI-safe stop, a control latency of 50 ms plus an exponential tail of mean 150 ms and 2%
of control requests answered 503 — run on an embedded LocalCluster with 1 and then 2 worker
processes, in the same run. Each sweep is timed from submission to the last row (the
cluster is started and its workers warmed up first, so process start-up is not counted) and
reports scenarios per second, simulated call-minutes per minute of wall time, call-minutes
per core-second (wall time x workers) and per CPU-second the workers actually used (their
``process_time``, which others' load on a shared machine does not inflate). Both sweeps must
give identical rows.

Beside it, the per-scenario cost of the same guarded one-minute call run alone in this
process, per namespace (:mod:`scenario_e2e`'s measurement at one minute).

Targets on a 2-core machine: at least 1,000 guarded one-minute calls per minute of wall
time at 2 workers, and at least 1.8x from 1 worker to 2.

    python benchmarks/sweep.py            # 100 seeds per namespace (400 scenarios a sweep)
    python benchmarks/sweep.py 25
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenario_e2e

from mgsim.sim.call import make_long_call
from mgsim.sim.scenario import NAMESPACES
from mgsim.sweep import Grid, run_sweep
from mgsim.sweep.cluster import connect
from mgsim.sweep.grid import load_calls
from mgsim.sweep.rows import run_batch

LATENCY = "exponential:50:150"
ERROR_RATE = 0.02


def _cpu() -> float:
    return time.process_time()


def _warm(call: str) -> None:
    from mgsim.sweep.grid import Grid as WarmGrid
    from mgsim.sweep.rows import run_batch

    cells = WarmGrid(namespaces=("genesysaudiohook",), calls=(call,), seeds=1).cells()
    run_batch(cells, [(0, 0)], {call: _load(call)})


def _load(call: str) -> Any:
    from mgsim.sweep.grid import load_calls

    return load_calls([call])[call]


def _sweep(grid: Grid, workers: int, out: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    # the cluster run_sweep itself starts by default, opened here so its start is not timed
    with connect("local", workers=workers, dashboard=False) as conn:
        client = conn.client
        # every worker imports mgsim and runs a scenario before the clock starts
        client.run(_warm, grid.calls[0])
        cpu0 = client.run(_cpu)
        started, here = time.perf_counter(), time.process_time()
        result = run_sweep(grid, out, scheduler=client, progress=None)
        wall = time.perf_counter() - started
        cpu1 = client.run(_cpu)
        client_cpu = time.process_time() - here
    cpu = sum(cpu1[w] - cpu0[w] for w in cpu1)
    n = len(result.rows)
    call_minutes = float(result.rows["call_ms"].sum()) / 60_000.0
    return {
        "workers": workers,
        "scenarios": n,
        "wall_s": round(wall, 2),
        "scenarios_per_s": round(n / wall, 2),
        "call_minutes_per_wall_minute": round(call_minutes / wall * 60.0, 1),
        "call_minutes_per_core_s": round(call_minutes / (wall * workers), 3),
        "worker_cpu_s": round(cpu, 2),
        "cpu_ms_per_scenario": round(cpu / n * 1000.0, 1),
        "call_minutes_per_cpu_s": round(call_minutes / cpu, 3),
        "client_cpu_s": round(client_cpu, 2),
        "outcomes": result.rows["outcome"].value_counts().to_dict(),
    }, result.rows


def _alone_cpu(grid: Grid, seeds: int = 3) -> dict[str, float]:
    """CPU ms per scenario of the sweep's own cells, run here without Dask."""
    calls = load_calls(grid.calls)
    out = {}
    for cell in grid.cells():
        run_batch([cell], [(0, 0)], calls)  # first use of the platform's modules
        started = time.process_time()
        run_batch([cell], [(0, s) for s in range(seeds)], calls)
        out[cell.namespace] = round((time.process_time() - started) / seeds * 1000.0, 1)
    return out


def run(seeds: int = 100) -> dict[str, Any]:
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mgsim-bench-sweep-") as tmp:
        call_path = Path(tmp) / "one_minute"
        make_long_call(1, call_id="one_minute").save(call_path)
        grid = Grid(
            namespaces=NAMESPACES, latencies=(LATENCY,), error_rates=(ERROR_RATE,),
            strategies=("pci-safe",), calls=(str(call_path) + ".wav",), seeds=seeds,
        )  # fmt: skip
        alone_cpu = _alone_cpu(grid)
        one, rows1 = _sweep(grid, 1, Path(tmp) / "w1")
        two, rows2 = _sweep(grid, 2, Path(tmp) / "w2")
        pd.testing.assert_frame_equal(rows1, rows2)  # the same rows whatever the workers
    alone = scenario_e2e.run(minutes=1, repeats=3)["runs"]
    mean_alone_ms = sum(r["seconds"] for r in alone.values()) / len(alone) * 1000.0
    return {
        "benchmark": "sweep",
        "grid": {"namespaces": list(NAMESPACES), "latency": LATENCY, "error_rate": ERROR_RATE,
                 "strategy": "pci-safe", "call_s": 60, "seeds": seeds},
        "loadavg_at_start": [round(x, 2) for x in load],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "runs": {"1 worker": one, "2 workers": two},
        "speedup_wall": round(two["scenarios_per_s"] / one["scenarios_per_s"], 2),
        "alone_cpu_ms_per_scenario": alone_cpu,
        "alone_mean_cpu_ms_per_scenario": round(sum(alone_cpu.values()) / len(alone_cpu), 1),
        "scenario_e2e_1min_wall_ms": {
            ns: round(r["seconds"] * 1000.0, 1) for ns, r in alone.items()
        },
        "scenario_e2e_1min_mean_wall_ms": round(mean_alone_ms, 1),
        "targets": {"call_minutes_per_wall_minute_at_2": 1000, "speedup": 1.8},
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
