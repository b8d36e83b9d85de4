"""What a scenario and a sweep produce is pinned: speeding the media path up changes nothing.

``tests/golden/results.json`` holds, recorded before the per-packet path was optimised,
the sweep rows of a fixed grid (four namespaces, two margins, the naive and the PCI-safe
stop, a 30% error rate, several seeds) and a fingerprint of scenario outcomes per
namespace, clean and impaired: the whole ``to_json`` (utterances, actions, requests, the
gateway's accounting with its anomalies), and a digest of every timeline's audio and its
received and streamed flags, sample by sample. A change that alters any of them fails here.

When a change is meant to change results, write the file again and say why in the commit:

    .venv/bin/python tests/test_results_unchanged.py --write
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mgsim.media.impair import Impairment
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, ScenarioResult, run_scenario
from mgsim.sweep import Grid, run_sweep

GOLDEN = Path(__file__).parent / "golden" / "results.json"

GRID = {
    "namespaces": NAMESPACES,
    "margins_before_ms": (0, 1500),
    "latencies": ("exponential:50:150",),
    "error_rates": (0.3,),
    "strategies": ("naive", "pci-safe"),
    "calls": ("card_payment",),
    "seeds": 3,
}

IMPAIRMENTS = {
    "siprec": Impairment(loss=0.05, reorder=0.05, duplicate=0.03, jitter_ms=60, seed=7),
    "twilio": Impairment(loss=0.05, jitter_ms=40, burst=0.02, seed=7),
    "genesysaudiohook": Impairment(jitter_ms=60, burst=0.02, seed=7),
    "amazonconnect": Impairment(jitter_ms=200, burst=0.05, seed=7),
}

CASES = [(ns, kind) for ns in NAMESPACES for kind in ("clean", "impaired", "whole")]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def fingerprint(result: ScenarioResult) -> dict[str, Any]:
    """Everything a scenario produced that a faster media path must leave as it was."""
    call = result.call
    assert call is not None
    timelines = {
        str(channel): {
            "samples": len(t),
            "audio": _digest(t.audio().tobytes()),
            "received": _digest(t.received_mask().tobytes()),
            "streamed": _digest(t.streamed_mask().tobytes()),
            "counts": [t.received_samples, t.streamed_samples, t.overlap_samples],
        }
        for channel, t in sorted(call.timelines.items(), key=lambda kv: str(kv[0]))
    }
    return {
        "result": result.to_json(),
        "timelines": timelines,
        "streamed": {role: _digest(m.tobytes()) for role, m in sorted(result.streamed.items())},
        "webhooks": _digest(json.dumps(result.webhooks, sort_keys=True).encode()),
    }


def scenario_for(namespace: str, kind: str) -> Scenario:
    call = load_sample("card_payment")
    if kind == "whole":
        return Scenario(call, namespace, Plan("whole"), seed=3)  # type: ignore[arg-type]
    impairment = IMPAIRMENTS[namespace] if kind == "impaired" else None
    return Scenario(call, namespace, Plan("guard"), impairment=impairment, seed=3)  # type: ignore[arg-type]


def sweep_rows() -> list[dict[str, Any]]:
    result = run_sweep(Grid(**GRID), scheduler="in-process", progress=None)  # type: ignore[arg-type]
    return json.loads(result.rows.to_json(orient="records", double_precision=15))


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())


def test_sweep_rows_are_unchanged(golden: dict[str, Any]) -> None:
    rows = sweep_rows()
    assert len(rows) == len(golden["rows"]) == 4 * 2 * 2 * 3
    for got, want in zip(rows, golden["rows"], strict=True):
        assert got == want
    # the grid is not degenerate: it has leaks, masking and clean scenarios
    assert {r["outcome"] for r in rows} == {"leak", "masked", "clean"}


@pytest.mark.parametrize(("namespace", "kind"), CASES)
def test_scenario_outcomes_are_unchanged(golden: dict[str, Any], namespace: str, kind: str) -> None:
    got = _canonical(fingerprint(run_scenario(scenario_for(namespace, kind))))
    want = golden["scenarios"][f"{namespace}/{kind}"]
    assert got["timelines"] == want["timelines"]
    assert got["streamed"] == want["streamed"]
    assert got["result"]["accounting"] == want["result"]["accounting"]
    assert got == want


def write() -> None:
    data = {
        "rows": sweep_rows(),
        "scenarios": {
            f"{ns}/{kind}": _canonical(fingerprint(run_scenario(scenario_for(ns, kind))))
            for ns, kind in CASES
        },
    }
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_results_unchanged.py --write")
    write()
