"""Scenarios over real loopback sockets give the in-process outcome: the guard plan keeps
every sensitive word out of the transcript, the whole plan transcribes all of them, and
the utterances are the same."""

from __future__ import annotations

import pytest

from mgsim.errors import ConfigError
from mgsim.server.config import Faults
from mgsim.sim.call import Call, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario
from mgsim.sim.socket_scenario import check_socket_scenario, run_scenario_over_sockets

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def call() -> Call:
    return load_sample("card_payment")


@pytest.mark.parametrize("plan", ["guard", "whole"])
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_socket_run_matches_the_in_process_run(namespace: str, plan: str, call: Call) -> None:
    scenario = Scenario(call, namespace, Plan(plan))  # type: ignore[arg-type]
    result = run_scenario_over_sockets(scenario)
    reference = run_scenario(scenario)
    leaks = result.leaks
    assert leaks["pci_words"] > 0
    expected = 0 if plan == "guard" else leaks["pci_words"]
    assert leaks["pci_words_transcribed"] == expected
    assert leaks["pci_words_transcribed"] == reference.leaks["pci_words_transcribed"]
    assert len(result.utterances) == len(reference.utterances) > 0
    assert [u["text"] for u in result.utterance_rows()] == [
        u["text"] for u in reference.utterance_rows()
    ]
    assert all(a.confirmed for a in result.actions)
    assert [e.endpoint for e in result.journal.entries] == [
        e.endpoint for e in reference.journal.entries
    ]
    assert result.call is not None and result.call.closed_at is not None
    assert result.to_json().keys() == reference.to_json().keys()


def test_naive_stop_over_sockets(call: Call) -> None:
    short = call.truncated(30_000)
    scenario = Scenario(short, "genesysaudiohook", Plan("guard"), confirm_stop=False)
    result = run_scenario_over_sockets(scenario)
    assert result.leaks["pci_words_transcribed"] == 0
    assert next(a.detail for a in result.actions if a.action == "stop") == "stopped"


@pytest.mark.parametrize(
    "options",
    [
        {"control_latency_ms": 400.0},
        {"control_jitter_ms": 50.0},
        {"faults": Faults(rate_503=0.5)},
        {"faults": Faults(latency_ms=10.0)},
    ],
)
def test_latency_and_faults_need_real_time(options: dict[str, object], call: Call) -> None:
    scenario = Scenario(call, "twilio", Plan("guard"), **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="need real time"):
        check_socket_scenario(scenario)
    with pytest.raises(ConfigError, match="need real time"):
        run_scenario_over_sockets(scenario)
    check_socket_scenario(Scenario(call, "twilio", Plan("guard"), realtime=True, **options))  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("confirm_stop", [False, True], ids=["naive", "fail-closed"])
def test_a_slow_stop_over_sockets_in_real_time(call: Call, confirm_stop: bool) -> None:
    """400 ms of control latency and a guard with no margin, on a real server in real time:
    media keeps flowing while the stop is slow. The naive stop lets the start of the card
    number through; the PCI-safe stop's deadline passes unconfirmed, so the audio is masked
    at the source and nothing leaks, as in process."""
    short = call.truncated(27_000)  # the card number (20.7-26.6 s) and no more
    scenario = Scenario(
        short, "twilio", Plan("guard", margin_before_ms=0), control_latency_ms=400,
        confirm_stop=confirm_stop, realtime=True, redaction_output="unredacted",
    )  # fmt: skip
    result = run_scenario_over_sockets(scenario)
    reference = run_scenario(scenario)
    stop = next(a for a in result.actions if a.action == "stop")
    assert stop.done_ms >= stop.at_ms + 350  # the latency was spent while media went on
    if confirm_stop:
        assert stop.masked_until_ms is not None and not stop.confirmed
        assert result.leaks["pci_words_transcribed"] == 0
    else:
        assert result.leaks["pci_words_transcribed"] > 0
        assert result.leaks["pci_ms_transcribed"] > 0
    assert result.leaks["pci_words_transcribed"] == reference.leaks["pci_words_transcribed"]


def test_plain_faults_are_accepted(call: Call) -> None:
    check_socket_scenario(Scenario(call, "twilio", faults=Faults()))
