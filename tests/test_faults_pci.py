"""Issue 6's bar: with 30% injected 503s and 200 ms of control latency, the PCI-safe guard
leaks no sensitive word over 100 seeded calls per namespace."""

from __future__ import annotations

import pytest

from mgsim.sim.faultcheck import pci_fault_check
from mgsim.sim.scenario import NAMESPACES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_guard_with_confirmed_stops_never_leaks_under_faults(namespace: str) -> None:
    row = pci_fault_check(namespace, calls=100, naive=False)  # type: ignore[arg-type]
    assert row["guard_leaks"] == 0 and row["guard_words"] == 0
    # Some stops cannot be confirmed in time at this failure rate; each one failed closed.
    assert row["unconfirmed_stops"] > 0
    assert row["fail_closed"] == row["unconfirmed_stops"]


def test_the_naive_stop_leaks_under_the_same_faults() -> None:
    row = pci_fault_check("siprec", calls=20)
    assert row["guard_leaks"] == 0
    assert row["naive_leaks"] > 0
