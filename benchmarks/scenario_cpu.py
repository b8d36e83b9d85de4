"""CPU per guarded one-minute scenario, alone and on a Dask worker, against a baseline tree.

The sweep benchmark's cell (a one-minute call, guard plan, PCI-safe stop, latency
``exponential:50:150``, 2% of control requests answered 503-01), per namespace, run as a
sweep runs it (``mgsim.sweep.rows.run_batch``, a batch of seeds): once in the measuring
process ("alone") and once as a task on a one-worker LocalCluster of the same tree
("worker"; the tree's own ``mgsim.sweep.cluster.connect``). Time is ``process_time`` of the
process that ran the batch, which others' load on a shared machine inflates far less than
wall time.

With ``--baseline DIR`` (a checkout of an earlier tree, e.g. ``git archive main | tar -x -C
DIR``), the two trees are measured in alternating subprocesses, ``--rounds`` times each,
in the same run, and the report gives the median of each and the ratio baseline / this
tree per namespace. Both must give the same rows.

    python benchmarks/scenario_cpu.py --baseline /tmp/mgsim-main --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NAMESPACES = ("siprec", "twilio", "genesysaudiohook", "amazonconnect")
HERE = Path(__file__).resolve().parent.parent


def _job(call: str, namespace: str, seeds: int) -> dict[str, Any]:
    """CPU ms per scenario of one batch of ``seeds`` scenarios, after one to warm up."""
    from mgsim.sweep.grid import Grid, load_calls
    from mgsim.sweep.rows import run_batch

    grid = Grid(
        namespaces=(namespace,), latencies=("exponential:50:150",), error_rates=(0.02,),
        strategies=("pci-safe",), calls=(call,), seeds=seeds,
    )  # fmt: skip
    cells, calls = grid.cells(), load_calls(grid.calls)
    run_batch(cells, [(0, seeds)], calls)  # first use of the platform's modules
    started = time.process_time()
    rows = run_batch(cells, [(0, s) for s in range(seeds)], calls)
    ms = (time.process_time() - started) / seeds * 1000.0
    return {"ms": ms, "rows": rows}


def _measure(call: str, seeds: int) -> dict[str, Any]:
    """In a subprocess of one tree: every namespace alone, then on a worker."""
    from mgsim.sweep.cluster import connect

    out: dict[str, Any] = {"alone": {}, "worker": {}, "rows": {}}
    for ns in NAMESPACES:
        got = _job(call, ns, seeds)
        out["alone"][ns] = got["ms"]
        out["rows"][ns] = got["rows"]
    with connect("local", workers=1, dashboard=False) as conn:
        for ns in NAMESPACES:
            got = conn.client.submit(_job, call, ns, seeds, pure=False).result()
            out["worker"][ns] = got["ms"]
            assert got["rows"] == out["rows"][ns]  # the same rows on the worker
    return out


def _run_tree(tree: Path, call: str, seeds: int) -> dict[str, Any]:
    # the tree's mgsim first; this directory so that workers can import _job
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(Path(__file__).parent)])}
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import scenario_cpu; "
        "print(json.dumps(scenario_cpu._measure(sys.argv[2], int(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), call, str(seeds)],
        env=env, capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(baseline: Path | None, rounds: int = 3, seeds: int = 5) -> dict[str, Any]:
    from mgsim.sim.call import make_long_call

    load = os.getloadavg()
    trees = {"this": HERE} if baseline is None else {"baseline": baseline, "this": HERE}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="mgsim-bench-cpu-") as tmp:
        call = Path(tmp) / "one_minute"
        make_long_call(1, call_id="one_minute").save(call)
        for _ in range(rounds):
            for name, tree in trees.items():  # alternating, so both meet the same load
                runs[name].append(_run_tree(tree, str(call) + ".wav", seeds))
    report: dict[str, Any] = {
        "benchmark": "scenario_cpu",
        "rounds": rounds,
        "seeds": seeds,
        "loadavg_at_start": [round(x, 2) for x in load],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    for name, got in runs.items():
        report[name] = {
            where: {ns: round(statistics.median(r[where][ns] for r in got), 1) for ns in NAMESPACES}
            for where in ("alone", "worker")
        }
        for where in ("alone", "worker"):
            values = report[name][where]
            values["mean"] = round(sum(values[ns] for ns in NAMESPACES) / len(NAMESPACES), 1)
    if baseline is not None:
        for ns in NAMESPACES:  # faster code, the same rows
            assert runs["baseline"][0]["rows"][ns] == runs["this"][0]["rows"][ns], ns
        report["rows_identical"] = True
        report["ratio_baseline_over_this"] = {
            where: {
                ns: round(report["baseline"][where][ns] / report["this"][where][ns], 2)
                for ns in (*NAMESPACES, "mean")
            }
            for where in ("alone", "worker")
        }
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="an earlier tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(run(args.baseline, args.rounds, args.seeds), indent=2))
