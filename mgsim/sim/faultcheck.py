"""Many seeded calls through a flaky gateway: how often each stop strategy leaks.

>>> row = pci_fault_check("genesysaudiohook", calls=2)
>>> row["guard_leaks"], row["calls"]
(0, 2)
"""

from __future__ import annotations

from typing import Any

from mgsim.server.config import Faults
from mgsim.sim.call import Call, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Namespace, Scenario, run_scenario

__all__ = ["pci_fault_check"]


def pci_fault_check(
    namespace: Namespace,
    *,
    calls: int = 100,
    rate_503: float = 0.3,
    latency_ms: float = 200.0,
    call: Call | None = None,
    naive: bool = True,
) -> dict[str, Any]:
    """Run ``calls`` seeded guard-plan calls with the PCI-safe stop, failing closed (and,
    with ``naive``, the same seeds with a single stop assumed to work); count the calls and
    words that leaked, the stops left unconfirmed and the fail-closed maskings."""
    call = call or load_sample("card_payment")
    faults = Faults(rate_503=rate_503, latency_ms=latency_ms)
    row: dict[str, Any] = {
        "namespace": namespace,
        "calls": calls,
        "rate_503": rate_503,
        "latency_ms": latency_ms,
        "guard_leaks": 0,
        "guard_words": 0,
        "naive_leaks": 0,
        "naive_words": 0,
        "unconfirmed_stops": 0,
        "fail_closed": 0,
    }
    strategies = [("guard", True)] + ([("naive", False)] if naive else [])
    for seed in range(calls):
        for name, confirm in strategies:
            result = run_scenario(
                Scenario(
                    call, namespace, Plan("guard"), faults=faults, seed=seed, confirm_stop=confirm
                )
            )
            words = result.leaks["pci_words_transcribed"]
            row[f"{name}_words"] += words
            row[f"{name}_leaks"] += bool(words)
            if confirm:
                row["unconfirmed_stops"] += sum(
                    1 for a in result.actions if a.action == "stop" and not a.confirmed
                )
                row["fail_closed"] += sum(1 for a in result.actions if a.masked_until_ms)
    return row
