"""mgsim.sweep without a cluster: the grid, rows, Wilson intervals, Parquet and resuming."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import mgsim.sweep
import mgsim.sweep.grid
import mgsim.sweep.runner
import mgsim.sweep.stats
from mgsim.cli import main
from mgsim.errors import ConfigError
from mgsim.server.faults import FaultRule
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario, run_scenario
from mgsim.sweep import (
    ROW_SCHEMA,
    Grid,
    GridError,
    Latency,
    run_sweep,
    scenarios_needed,
    smallest_margin,
    summarize,
    wilson_interval,
)
from mgsim.sweep.runner import batches

# AudioHook is the cheapest platform to simulate; Twilio has the 20 ms stepping of RTP-like
# platforms. Latency 400 ms against margins 0 and 1500: the naive stop leaks at 0 only.
SMALL = {
    "namespaces": ("genesysaudiohook", "twilio"),
    "margins_before_ms": (0, 1500),
    "latencies": ("fixed:400",),
    "strategies": ("naive", "pci-safe"),
    "seeds": 2,
}
FAST = {**SMALL, "namespaces": ("genesysaudiohook",)}


def test_doctests() -> None:
    for module in (mgsim.sweep, mgsim.sweep.grid, mgsim.sweep.runner, mgsim.sweep.stats):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# -- Wilson intervals against published values -------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # Brown, Cai & DasGupta (2001): 0 of 10 at 95%, upper bound z²/(n + z²)
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval_matches_published_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_needs_and_confidence() -> None:
    n = scenarios_needed(1e-4)
    assert wilson_interval(0, n)[1] <= 1e-4 < wilson_interval(0, n - 1)[1]
    assert wilson_interval(3, 50, 0.99)[1] > wilson_interval(3, 50, 0.95)[1]
    with pytest.raises(ConfigError, match="k <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ConfigError, match="confidence"):
        wilson_interval(1, 4, 1.5)


# -- the grid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"namespaces": ("twilio", "webex")}, "unknown namespace 'webex'"),
        ({"margins_before_ms": (500, -1)}, "margins_before_ms: -1 ms is negative"),
        ({"margins_after_ms": (-250,)}, "margins_after_ms: -250 ms is negative"),
        ({"margins_before_ms": ()}, "the margins_before_ms axis is empty"),
        ({"namespaces": ()}, "the namespace axis is empty"),
        ({"strategies": []}, "the strategy axis is empty"),
        ({"seeds": 0}, "non-empty range"),
        ({"seeds": range(5, 5)}, "non-empty range"),
        ({"plans": ("guard", "panic")}, "unknown plan 'panic'"),
        ({"latencies": ("lognormal:100",)}, "DIST one of fixed, uniform, normal, exponential"),
        ({"latencies": ("uniform:100",)}, "spread_ms: must be > 0 for distribution uniform"),
        ({"latencies": ("fixed:-5",)}, "latency_ms: must be between 0 and 600000"),
        ({"error_rates": (1.0,)}, r"error rate 1.0 must be in \[0, 1\)"),
        ({"strategies": ("optimistic",)}, "unknown stop strategy 'optimistic'"),
        ({"calls": ("no_such_call",)}, "no sample call named 'no_such_call'"),
        ({"calls": ("/nowhere/call.wav",)}, "does not exist"),
        ({"margins_before_ms": (0, 0)}, "repeats a value"),
    ],
)
def test_bad_grid_is_refused_with_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(GridError, match=message):
        Grid(**kwargs)  # type: ignore[arg-type]


def test_bad_grid_on_the_cli_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    for argv, message in [
        (["--namespace", "twilio,nope"], "unknown namespace 'nope'"),
        (["--margin-ms", "-100"], "-100 ms is negative"),
        (["--margin-ms", ","], "the margins_before_ms axis is empty"),
        (["--margin-ms", "0:x:1"], "is not a number or START:STOP:STEP"),
        (["--seeds", "ten"], "--seeds: 'ten' is not a count"),
        (["--latency", "exponential:10"], "spread_ms: must be > 0"),
        (["--scheduler", "udp://127.0.0.1:1"], "use tcp://HOST:PORT"),
    ]:
        assert main(["sweep", "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mgsim: ") and message in err, err
        assert len(err.strip().splitlines()) == 1  # one line, no traceback
        # a bad grid is refused before the output directory is even made; a bad
        # scheduler after the grid, but before any scenario ran
        assert not list(out.glob("cells/*.parquet"))


def test_cells_and_keys() -> None:
    grid = Grid(**SMALL)  # type: ignore[arg-type]
    cells = grid.cells()
    assert len(cells) == 2 * 2 * 2 and grid.size == 16
    assert len({c.key for c in cells}) == len(cells)
    # the key is the cell's content: the same grid gives the same keys, new seeds new ones
    assert [c.key for c in Grid(**SMALL).cells()] == [c.key for c in cells]  # type: ignore[arg-type]
    other = Grid(**{**SMALL, "seeds": range(2, 4)})  # type: ignore[arg-type]
    assert not {c.key for c in other.cells()} & {c.key for c in cells}


def test_latency_reuses_the_fault_rules() -> None:
    lat = Latency.parse("exponential:100:200")
    (rule,) = lat.rules()
    assert rule == FaultRule(latency_ms=100.0, distribution="exponential", spread_ms=200.0)
    assert lat.mean_ms == 300.0
    error, latency = lat.rules(error_rate=0.2)
    assert (error.error, error.probability, error.distribution) == ("503-01", 0.2, "exponential")
    assert latency == rule
    assert Latency.parse("fixed:0").rules() == ()


def test_batches_cover_every_scenario_once() -> None:
    cells = Grid(**{**SMALL, "seeds": 3}).cells()  # type: ignore[arg-type]
    todo = [0, 2, 5, 7]
    got = [
        (b.cell_ids[li], seed) for b in batches(cells, todo, 5) for li, seed in b.items
    ]
    assert got == [(i, s) for i in todo for s in range(3)]
    assert max(len(b.items) for b in batches(cells, todo, 5)) == 5


# -- scenarios and rows -----------------------------------------------------------------------


def test_scenario_fault_rules_delay_control_requests() -> None:
    call = load_sample("card_payment")
    slow = FaultRule(latency_ms=400.0)
    fast = run_scenario(Scenario(call, "genesysaudiohook", Plan("guard", 0.0), confirm_stop=False))
    late = run_scenario(
        Scenario(call, "genesysaudiohook", Plan("guard", 0.0), confirm_stop=False,
                 fault_rules=(slow,))
    )  # fmt: skip
    assert fast.leaks["pci_words_transcribed"] == 0
    assert late.leaks["pci_words_transcribed"] > 0  # the stop took effect 400 ms late
    assert all(e.latency_ms >= 400.0 for e in late.journal.entries)


def test_rows_and_summary_in_process(tmp_path: Path) -> None:
    result = run_sweep(Grid(**SMALL), tmp_path, scheduler="in-process", progress=None)  # type: ignore[arg-type]
    rows = result.rows
    assert list(rows.columns) == ROW_SCHEMA.names
    assert len(rows) == 16 and result.computed == 16 and result.reused == 0
    assert not rows.duplicated(["cell", "seed"]).any()
    by = rows.set_index(["namespace", "strategy", "margin_before_ms", "seed"])
    for ns in SMALL["namespaces"]:  # type: ignore[attr-defined]
        # naive with no margin: the 400 ms stop lets card digits through
        assert (by.loc[(ns, "naive", 0.0), "outcome"] == "leak").all()
        assert (by.loc[(ns, "naive", 0.0), "pci_words_transcribed"] > 0).all()
        # PCI-safe with no margin: fails closed, masks at the source, nothing transcribed
        safe = by.loc[(ns, "pci-safe", 0.0)]
        assert (safe["outcome"] == "masked").all() and (safe["ms_masked"] > 0).all()
        assert (safe["pci_words_transcribed"] == 0).all()
        # a 1.5 s margin covers 400 ms either way
        assert (by.loc[(ns, slice(None), 1500.0), "outcome"] == "clean").all()
    assert (rows["requests"] >= 8).all() and (rows["retries"] == 0).all()
    assert (rows["pci_words"] == 23).all()

    summary = result.summary
    assert len(summary) == 8 and (summary["scenarios"] == 2).all()
    leaky = summary[(summary["strategy"] == "naive") & (summary["margin_before_ms"] == 0)]
    assert (leaky["leak_p"] == 1.0).all()
    assert leaky["leak_low"].round(4).eq(round(wilson_interval(2, 2)[0], 4)).all()
    assert (summary.loc[summary["leaks"] == 0, "leak_high"] > 0).all()

    # what is on disk is what was returned
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "rows.parquet"), rows)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "summary.parquet"), summary)
    assert len(list((tmp_path / "cells").glob("*.parquet"))) == 8

    table = smallest_margin(summary, 0.9)
    naive = table[table["strategy"] == "naive"]["smallest_margin_ms"]
    assert naive.tolist() == [1500.0, 1500.0]


def test_interrupted_sweep_computes_only_missing_cells(tmp_path: Path) -> None:
    grid = Grid(**FAST)  # type: ignore[arg-type]
    whole = run_sweep(grid, tmp_path / "a", scheduler="in-process", progress=None)

    class Interrupt:
        """Stops the sweep (as Ctrl-C would) once the first cells are saved."""

        def start(self, total: int, already: int) -> None:
            pass

        def update(self, done: int) -> None:
            if done >= 5:
                raise KeyboardInterrupt

        def close(self) -> None:
            pass

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, out, scheduler="in-process", progress=Interrupt(), batch_size=1)
    saved = sorted(p.name for p in (out / "cells").glob("*.parquet"))
    assert len(saved) == 2  # 5 scenarios: two whole cells of 2 seeds
    damaged = (out / "cells" / saved[1])
    damaged.write_bytes(b"not parquet")  # a damaged cell is computed again
    again = run_sweep(grid, out, scheduler="in-process", progress=None)
    assert (again.computed, again.reused) == (6, 2)
    pd.testing.assert_frame_equal(again.rows, whole.rows)
    nothing = run_sweep(grid, out, scheduler="in-process", progress=None)
    assert (nothing.computed, nothing.reused) == (0, 8)
    assert nothing.cluster == "nothing to run"
    pd.testing.assert_frame_equal(nothing.summary, whole.summary)
    assert pq.read_schema(out / "cells" / saved[0]).names == ROW_SCHEMA.names


def test_rows_do_not_depend_on_batching() -> None:
    grid = Grid(**{**FAST, "latencies": ("exponential:50:300",), "error_rates": (0.3,),
                   "margins_before_ms": (300,), "seeds": 3})  # type: ignore[arg-type]
    one = run_sweep(grid, scheduler="in-process", progress=None, batch_size=1).rows
    many = run_sweep(grid, scheduler="in-process", progress=None, batch_size=7).rows
    pd.testing.assert_frame_equal(one, many)
    assert one["retries"].sum() > 0  # 503s were retried, so the seeds mattered


def test_a_worker_encodes_each_call_once_per_platform_but_siprec_per_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mgsim.sweep.rows as rows_module
    from mgsim.media import siprec, twilio

    counts = {"twilio": 0, "siprec": 0}
    for name, module in (("twilio", twilio), ("siprec", siprec)):
        real = module.encode

        def counted(*args: object, _real: object = real, _name: str = name, **kw: object) -> object:
            counts[_name] += 1
            return _real(*args, **kw)  # type: ignore[operator]

        monkeypatch.setattr(module, "encode", counted)
    monkeypatch.setattr(rows_module, "_WIRES", type(rows_module._WIRES)())
    grid = Grid(namespaces=("twilio", "siprec"), margins_before_ms=(0, 1500),
                latencies=("fixed:400",), seeds=2)  # fmt: skip
    cells = grid.cells()
    items = [(i, seed) for i in range(len(cells)) for seed in range(2)]
    got = rows_module.run_batch(cells, items, mgsim.sweep.grid.load_calls(grid.calls))
    # Twilio's wires are the same for every seed and cell of a call; SIPREC's RTP differs
    assert counts == {"twilio": 1, "siprec": 4}
    fresh = [rows_module.row_of(cells[i], seed, run_scenario(cells[i].scenario(
        load_sample("card_payment"), seed))) for i, seed in items]  # fmt: skip
    assert got == fresh


def test_user_call_from_its_files(tmp_path: Path) -> None:
    path = tmp_path / "mine"
    load_sample("card_payment").truncated(30_000).save(path)
    grid = Grid(namespaces=("genesysaudiohook",), calls=(str(path) + ".wav",), seeds=1)
    result = run_sweep(grid, scheduler="in-process", progress=None)
    assert result.rows["call"].tolist() == [str(path) + ".wav"]
    assert result.rows["call_ms"].tolist() == [30_000.0]
    assert result.rows["pci_words"].iloc[0] > 0


def test_summarize_and_smallest_margin_rules() -> None:
    with pytest.raises(ConfigError, match="no rows"):
        summarize(pd.DataFrame(columns=ROW_SCHEMA.names))
    base = {"cell": "c", "namespace": "twilio", "plan": "guard", "margin_after_ms": 1000.0,
            "latency": "fixed:0", "latency_mean_ms": 0.0, "error_rate": 0.0,
            "strategy": "naive", "call": "x", "pci_words_transcribed": 0, "ms_masked": 0.0,
            "requests": 8, "retries": 0}  # fmt: skip
    rows = pd.DataFrame(
        [{**base, "cell": f"m{m}", "margin_before_ms": m, "seed": s,
          "outcome": "leak" if (m, s) in leaks else "clean"}
         for m in (0.0, 100.0, 200.0) for s in range(400)
         for leaks in [{(100.0, 3)}]]
    )  # fmt: skip
    summary = summarize(rows)
    # margin 0 has no leak but margin 100 has one: the smallest margin is the one from
    # which every larger margin meets the target, not the first that happens to
    assert smallest_margin(summary, 0.01)["smallest_margin_ms"].tolist() == [200.0]
    assert math.isnan(smallest_margin(summary, 0.001)["smallest_margin_ms"].iloc[0])
