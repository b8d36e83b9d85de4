"""Fail-closed masking: silent wires stay valid, and a dead control plane leaks nothing."""

from __future__ import annotations

import numpy as np
import pytest

from mgsim.gateway.transcription import audible
from mgsim.server.config import Faults
from mgsim.sim.call import load_sample
from mgsim.sim.masking import silence
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_silenced_call_decodes_to_digital_silence(namespace: str) -> None:
    call = load_sample("ivr_hold").truncated(3000)
    sc = Scenario(call, namespace, Plan("whole"))  # type: ignore[arg-type]
    from mgsim.clock import VirtualClock
    from mgsim.gateway import Gateway
    from mgsim.sim.play import play

    options = {}
    params = sc.start_params()
    if params is not None and namespace == "amazonconnect":
        options = {"stream_arn": params.stream_arn}  # type: ignore[union-attr]
    wires = [silence(namespace, w) for w in sc.wires()]
    result = play(Gateway(VirtualClock()), namespace, wires, {}, session_options=options)
    assert result.balanced() and result.sent > 0
    for role in ("customer", "agent"):
        assert result.received[role].any()
        assert not result.audio[role].any()  # every received sample is silence


def test_audible_marks_silent_frames_only() -> None:
    pcm = np.ones(800, dtype=np.int16)
    pcm[160:480] = 0
    mask = audible(pcm)
    assert mask[:160].all() and not mask[160:480].any() and mask[480:].all()
    assert len(audible(np.zeros(5, dtype=np.int16))) == 5


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_control_plane_that_always_fails_still_leaks_nothing(namespace: str) -> None:
    sc = Scenario(
        load_sample("card_payment"),
        namespace,
        Plan("guard"),  # type: ignore[arg-type]
        faults=Faults(rate_503=1.0),
    )
    result = run_scenario(sc)
    stops = [a for a in result.actions if a.action == "stop" and a.reason.startswith("PCI")]
    assert stops and all(not a.confirmed and a.masked_until_ms for a in stops)
    assert result.leaks["pci_words_transcribed"] == 0
    naive = run_scenario(
        Scenario(
            load_sample("card_payment"),
            namespace,
            Plan("guard"),  # type: ignore[arg-type]
            faults=Faults(rate_503=1.0),
            confirm_stop=False,
        )
    )
    assert naive.leaks["pci_words_transcribed"] == 0  # start never succeeded either


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_gateway_too_slow_to_stop_in_time_is_masked_not_leaked(namespace: str) -> None:
    slow = Faults(latency_ms=5000)
    call = load_sample("card_payment")
    safe = run_scenario(Scenario(call, namespace, Plan("guard"), faults=slow))  # type: ignore[arg-type]
    naive = run_scenario(
        Scenario(
            call,
            namespace,
            Plan("guard"),
            faults=slow,  # type: ignore[arg-type]
            confirm_stop=False,
        )
    )
    assert any(a.masked_until_ms for a in safe.actions)
    assert safe.leaks["pci_words_transcribed"] == 0
    assert safe.utterances  # the call outside the masked windows was still transcribed
    assert naive.leaks["pci_words_transcribed"] > 0
