"""``mgsim sweep``: run a grid of scenarios and print each cell's leak probability.

Every axis flag takes a comma-separated list and may be repeated; numbers also take
``START:STOP:STEP`` (STOP included). Exit codes: 0 done; 2 a bad grid or option (nothing
ran); 1 the cluster failed (finished cells are kept); 130 interrupted (finished cells are
kept: the same command carries on where it stopped).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mgsim.errors import ConfigError, MgsimError

__all__ = ["add_parser"]

_EPILOG = """\
examples:
  mgsim sweep --out sweep-out --margin-ms 0:1500:250 --latency fixed:200,exponential:50:200 \\
      --strategy naive,pci-safe --seeds 200
  mgsim sweep --out sweep-out --scheduler tcp://127.0.0.1:8786 --call my_calls/call1.wav

The cluster: --scheduler tcp://HOST:PORT, else Dask's DASK_SCHEDULER_ADDRESS if set, else an
embedded LocalCluster with one worker process per core (--workers N). --scheduler in-process
runs without Dask. Exit codes: 0 done, 1 cluster failure, 2 bad grid or option, 130
interrupted (run the same command again to carry on).
"""


def _items(values: list[str] | None, default: list[str]) -> list[str]:
    if not values:
        return default
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _numbers(flag: str, values: list[str] | None, default: list[float]) -> list[float]:
    if not values:
        return default
    out: list[float] = []
    for item in _items(values, []):
        try:
            if ":" in item:
                start, stop, step = (float(x) for x in item.split(":"))
                if step <= 0 or stop < start:
                    raise ValueError
                n = round((stop - start) / step)
                out.extend(round(start + k * step, 9) for k in range(n + 1))
            else:
                out.append(float(item))
        except ValueError:
            raise ConfigError(
                f"{flag}: {item!r} is not a number or START:STOP:STEP (STOP >= START, STEP > 0)"
            ) from None
    return out


def _seeds(text: str) -> range:
    try:
        if ":" in text:
            start, stop = (int(x) for x in text.split(":"))
            return range(start, stop)
        return range(int(text))
    except ValueError:
        raise ConfigError(f"--seeds: {text!r} is not a count (200) or a range START:STOP") from None


def add_parser(sub: Any) -> None:
    """Register ``mgsim sweep`` on the CLI's subparsers."""
    p = sub.add_parser(
        "sweep", help="run a grid of seeded scenarios (on Dask) and estimate leak probabilities",
        description="Run a grid of seeded scenarios and estimate each cell's leak probability "
        "with a 95% Wilson interval. Rows and summaries go to Parquet files in --out; a sweep "
        "started again computes only the cells that --out lacks.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    p.add_argument("--namespace", action="append", help="default: all four")
    p.add_argument("--plan", action="append", help="whole, connect, guard (default guard)")
    p.add_argument("--margin-ms", action="append", help="margins before a span (default 1500)")
    p.add_argument("--margin-after-ms", action="append", help="margins after (default 1000)")
    p.add_argument(
        "--latency", action="append",
        help="control latency DIST:MS[:SPREAD_MS], DIST fixed, uniform, normal or exponential "
        "(the fault rules' distributions; default fixed:0)",
    )  # fmt: skip
    p.add_argument("--error-rate", action="append", help="probability of a 503-01 (default 0)")
    p.add_argument("--strategy", action="append", help="naive, confirm, pci-safe (default)")
    p.add_argument("--call", action="append", help="sample name or .wav/.json path")
    p.add_argument("--seeds", default="100", help="seeds per cell: N, or START:STOP")
    p.add_argument("--scheduler", default=None, help="tcp://HOST:PORT, local or in-process")
    p.add_argument("--workers", type=int, default=None, help="LocalCluster worker processes")
    p.add_argument("--batch-size", type=int, default=None, help="scenarios per Dask task")
    p.add_argument(
        "--target", type=float, default=None,
        help="also print the smallest margin whose 95%% upper bound is <= this",
    )  # fmt: skip
    p.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from mgsim.sweep.grid import Grid
    from mgsim.sweep.runner import run_sweep
    from mgsim.sweep.stats import smallest_margin

    if args.target is not None and not 0 < args.target < 1:
        raise ConfigError(f"--target must be in (0, 1), got {args.target}")
    grid = Grid(
        namespaces=_items(args.namespace, ["siprec", "twilio", "genesysaudiohook",
                                           "amazonconnect"]),
        plans=_items(args.plan, ["guard"]),
        margins_before_ms=_numbers("--margin-ms", args.margin_ms, [1500.0]),
        margins_after_ms=_numbers("--margin-after-ms", args.margin_after_ms, [1000.0]),
        latencies=_items(args.latency, ["fixed:0"]),
        error_rates=_numbers("--error-rate", args.error_rate, [0.0]),
        strategies=_items(args.strategy, ["pci-safe"]),
        calls=_items(args.call, ["card_payment"]),
        seeds=_seeds(args.seeds),
    )  # fmt: skip

    def echo(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        result = run_sweep(
            grid, args.out, scheduler=args.scheduler, workers=args.workers,
            batch_size=args.batch_size, progress=None if args.quiet else "text",
            dashboard=not args.no_dashboard, echo=echo,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(f"mgsim: interrupted; finished cells are in {args.out}; run the same command "
              "again to carry on", file=sys.stderr)  # fmt: skip
        return 130
    except ConfigError:
        raise
    except MgsimError as exc:
        print(f"mgsim: {exc}", file=sys.stderr)
        return 1
    summary = result.summary
    shown = summary[
        ["namespace", "margin_before_ms", "margin_after_ms", "latency", "error_rate", "strategy",
         "scenarios", "leaks", "leak_p", "leak_low", "leak_high"]
    ]  # fmt: skip
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if args.target is not None:
        print(f"\nsmallest margin before a span with a 95% upper bound <= {args.target:g}:")
        table = smallest_margin(summary, args.target)
        print(table.to_string(index=False, na_rep="none in grid"))
    print(
        f"\n{result.computed:,} scenarios run, {result.reused:,} reused; "
        f"rows: {result.out}/rows.parquet, summary: {result.out}/summary.parquet"
    )
    return 0
