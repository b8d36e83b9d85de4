"""Leak probabilities per grid cell, with Wilson score intervals.

The Wilson interval is used because sweeps look for rare leaks: with zero leaks in ``n``
scenarios the normal approximation gives the useless interval [0, 0], while Wilson's
upper bound is z²/(n + z²), which says how many leak-free scenarios a claim needs (at
95%, 38,412 of them for "at most 1 in 10,000").

>>> low, high = wilson_interval(0, 10)
>>> round(low, 4), round(high, 4)
(0.0, 0.2775)
>>> scenarios_needed(1e-4)
38411
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pandas as pd

from mgsim.errors import ConfigError

__all__ = ["CELL_COLUMNS", "scenarios_needed", "smallest_margin", "summarize", "wilson_interval"]

CELL_COLUMNS = (
    "namespace", "plan", "margin_before_ms", "margin_after_ms", "latency", "latency_mean_ms",
    "error_rate", "strategy", "call",
)  # fmt: skip
"""The axis columns that name a grid cell in rows and summaries."""


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for ``k`` successes in ``n`` trials (two-sided)."""
    if n <= 0 or not 0 <= k <= n:
        raise ConfigError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = _z(confidence)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # clamp the rounding at the ends (k = 0 or k = n are exact bounds)
    return (0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half))


def scenarios_needed(target: float, confidence: float = 0.95) -> int:
    """Leak-free scenarios whose Wilson upper bound is at most ``target``."""
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target must be in (0, 1), got {target}")
    z2 = _z(confidence) ** 2
    n = math.ceil(z2 * (1 - target) / target)
    while wilson_interval(0, n, confidence)[1] > target:  # guard the float rounding
        n += 1
    return n


def summarize(rows: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per grid cell: scenarios, leaks, the leak probability and its Wilson
    interval (``leak_low``, ``leak_high``), the share that failed closed (``masked``), and
    means of sensitive words transcribed, audio masked, requests and retries."""
    if rows.empty:
        raise ConfigError("no rows to summarize")
    frame = rows.assign(leak=rows["outcome"].eq("leak"), masked=rows["outcome"].eq("masked"))
    grouped = frame.groupby(["cell", *CELL_COLUMNS], sort=False, dropna=False)
    out = grouped.agg(
        scenarios=("seed", "size"),
        leaks=("leak", "sum"),
        masked=("masked", "mean"),
        pci_words_transcribed=("pci_words_transcribed", "mean"),
        ms_masked=("ms_masked", "mean"),
        requests=("requests", "mean"),
        retries=("retries", "mean"),
    ).reset_index()
    out["leaks"] = out["leaks"].astype("int64")
    out["leak_p"] = out["leaks"] / out["scenarios"]
    bounds = [
        wilson_interval(int(k), int(n), confidence)
        for k, n in zip(out["leaks"], out["scenarios"], strict=True)
    ]
    out["leak_low"] = [b[0] for b in bounds]
    out["leak_high"] = [b[1] for b in bounds]
    first = ["cell", *CELL_COLUMNS, "scenarios", "leaks", "leak_p", "leak_low", "leak_high"]
    return out[first + [c for c in out.columns if c not in first]]


def smallest_margin(summary: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per namespace, plan, latency, error rate, strategy and call: the smallest margin
    before a span from which every larger margin in the grid has a Wilson upper bound of
    at most ``target`` (NaN where even the largest does not)."""
    keys = ["namespace", "plan", "latency", "error_rate", "strategy", "call"]
    out = []
    for values, group in summary.groupby(keys, sort=False):
        # worst upper bound over each margin (several margins after a span may share one)
        worst = group.groupby("margin_before_ms")["leak_high"].max().sort_index()
        best = math.nan
        for margin, high in reversed(list(worst.items())):
            if high > target:
                break
            best = float(margin)
        out.append({**dict(zip(keys, values, strict=True)), "smallest_margin_ms": best})
    return pd.DataFrame(out, columns=[*keys, "smallest_margin_ms"])
