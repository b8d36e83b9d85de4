"""A 10-minute call end to end in virtual time: scenario, media, transcription, redaction.

Per namespace: the guard plan over a call stitched from the sample calls
(``make_long_call``), every sensitive span guarded, through the platform's wire format into
the embedded simulator, transcribed by the reference engine, redacted and leak-analysed.
Reports the multiple of real time (target: at least 500x), and, as the baseline in the same
run, the same scenario with every media frame taking its own turn of the event loop
(``BATCH_MEDIA = False``: how scenarios ran before media was fed in runs between control
events). Both give the same outcome (tests/test_scenario.py).

    python benchmarks/scenario_e2e.py
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from mgsim.sim import scenario as scenario_module
from mgsim.sim.call import Call, make_long_call
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, ScenarioResult, run_scenario


def _best(call: Call, namespace: str, repeats: int, *, batch: bool) -> tuple[float, ScenarioResult]:
    scenario_module.BATCH_MEDIA = batch
    try:
        best, result = float("inf"), None
        for _ in range(repeats):
            started = time.perf_counter()
            result = run_scenario(Scenario(call, namespace, Plan("guard")))  # type: ignore[arg-type]
            best = min(best, time.perf_counter() - started)
    finally:
        scenario_module.BATCH_MEDIA = True
    assert result is not None
    return best, result


def run(minutes: float = 10, repeats: int = 3) -> dict[str, Any]:
    call = make_long_call(minutes)
    seconds = call.duration_ms / 1000.0
    rows = {}
    for namespace in NAMESPACES:
        fast, result = _best(call, namespace, repeats, batch=True)
        stepped, baseline = _best(call, namespace, repeats, batch=False)
        assert result.to_json() == baseline.to_json()  # the same outcome either way
        rows[namespace] = {
            "seconds": round(fast, 3),
            "x_real_time": round(seconds / fast, 1),
            "stepped_seconds": round(stepped, 3),
            "stepped_x_real_time": round(seconds / stepped, 1),
            "speedup": round(stepped / fast, 2),
            "utterances": len(result.utterances),
            "pci_words": result.leaks["pci_words"],
            "pci_words_transcribed": result.leaks["pci_words_transcribed"],
        }
    return {"benchmark": "scenario_e2e", "call_seconds": seconds, "target_x": 500, "runs": rows}


if __name__ == "__main__":
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(json.dumps(run(minutes), indent=2))
