"""One tidy row per scenario, and the batches of scenarios a worker runs.

A row holds the cell's axis values, the seed and what happened: sensitive words and audio
transcribed, audio masked at the source, requests and retries, and the outcome. Nothing
in it depends on where or when it ran (no timing, no worker), so the same grid and seeds
give the same rows on any cluster.

``outcome`` is ``leak`` when at least one sensitive word was transcribed (redaction may
still hide it, but card data reached the transcripts), ``masked`` when nothing was
transcribed because the integration failed closed, and ``clean`` otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from mgsim.media._base import Wire
from mgsim.sim.call import Call
from mgsim.sim.scenario import Scenario, ScenarioResult, run_scenario
from mgsim.sweep.grid import Cell

__all__ = ["OUTCOMES", "ROW_SCHEMA", "row_of", "run_batch"]

OUTCOMES = ("clean", "masked", "leak")

ROW_SCHEMA = pa.schema(
    [
        ("cell", pa.string()),
        ("namespace", pa.string()),
        ("plan", pa.string()),
        ("margin_before_ms", pa.float64()),
        ("margin_after_ms", pa.float64()),
        ("latency", pa.string()),
        ("latency_mean_ms", pa.float64()),
        ("error_rate", pa.float64()),
        ("strategy", pa.string()),
        ("call", pa.string()),
        ("seed", pa.int64()),
        ("call_ms", pa.float64()),
        ("pci_words", pa.int64()),
        ("pci_words_transcribed", pa.int64()),
        ("pci_ms_transcribed", pa.float64()),
        ("pci_words_visible", pa.int64()),
        ("ms_masked", pa.float64()),
        ("requests", pa.int64()),
        ("retries", pa.int64()),
        ("stops_unconfirmed", pa.int64()),
        ("outcome", pa.string()),
    ]
)
"""The columns of a row, in order (also the Parquet schema)."""


def row_of(cell: Cell, seed: int, result: ScenarioResult) -> dict[str, Any]:
    """The tidy row of one scenario's result."""
    leaks = result.leaks
    within = cell.margin_before_ms  # the guard's deadline: the span's start
    masked = sum(
        a.masked_until_ms - (a.at_ms + within)
        for a in result.actions
        if a.masked_until_ms is not None
    )
    entries = result.journal.entries
    transcribed = int(leaks["pci_words_transcribed"])
    outcome = "leak" if transcribed else ("masked" if masked > 0 else "clean")
    return {
        "cell": cell.key,
        **cell.values(),
        "seed": seed,
        "call_ms": float(result.scenario.call.duration_ms),
        "pci_words": int(leaks["pci_words"]),
        "pci_words_transcribed": transcribed,
        "pci_ms_transcribed": float(leaks["pci_ms_transcribed"]),
        "pci_words_visible": int(leaks["pci_words_visible"]),
        "ms_masked": float(max(0.0, masked)),
        "requests": len(entries),
        # each action sends one request; any more are retries (the client's or the stop's)
        "retries": max(0, len(entries) - len(result.actions)),
        "stops_unconfirmed": sum(
            1 for a in result.actions if a.action == "stop" and not a.confirmed
        ),
        "outcome": outcome,
    }


def run_batch(
    cells: Sequence[Cell], items: Sequence[tuple[int, int]], calls: Mapping[str, Call]
) -> list[dict[str, Any]]:
    """Run the scenarios ``items`` ((index into ``cells``, seed) pairs) and return their
    rows, in order. This is the task a Dask worker runs; it needs only its arguments."""
    rows = []
    for i, seed in items:
        cell = cells[i]
        result = run_scenario(_with_wires(cell, cell.scenario(calls[cell.call], seed)))
        rows.append(row_of(cell, seed, result))
    return rows


# (call digest, namespace, guid) -> the call as the platform sends it, for the scenarios
# a worker runs next: wires are immutable, and every scenario of a call on Twilio,
# AudioHook or Amazon Connect sends the same ones (the seed draws only control latencies
# and faults). Encoding is 8-16% of such a scenario. SIPREC's RTP sequence numbers,
# timestamps and SSRCs are drawn from the seed, so its wires differ per seed: not kept.
_WIRES: OrderedDict[tuple[str, str, str], tuple[Wire, ...]] = OrderedDict()
_WIRES_KEPT = 8
_WIRES_LOCK = threading.Lock()  # a worker may run batches in several threads


def _with_wires(cell: Cell, scenario: Scenario) -> Scenario:
    if scenario.namespace == "siprec" or not cell.call_digest:
        return scenario
    key = (cell.call_digest, cell.namespace, scenario.guid)
    with _WIRES_LOCK:
        wires = _WIRES.get(key)
        if wires is not None:
            _WIRES.move_to_end(key)
    if wires is None:
        wires = tuple(scenario.sent_wires())
        with _WIRES_LOCK:
            _WIRES[key] = wires
            while len(_WIRES) > _WIRES_KEPT:
                _WIRES.popitem(last=False)
    return replace(scenario, wires_override=wires)
