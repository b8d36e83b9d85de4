"""Impairments (:mod:`mgsim.media.impair`) and the gateway's accounting of them.

For every namespace and several seeds, the impaired call goes through the in-process
gateway; its accounting must match exactly what :func:`impair` reports it did, and the
recovered audio must equal the original except on the frames that were lost (silence and
not-received there).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_media_roundtrip import GUIDS, encode, heard, session_options

from mgsim.clock import VirtualClock
from mgsim.errors import ConfigError, MgsimError
from mgsim.gateway import Gateway
from mgsim.gateway.mapping import ROLES, Role
from mgsim.media._base import StereoCall, Wire
from mgsim.media.impair import ALLOWED, MAX_JITTER_MS, Impaired, Impairment, impair
from mgsim.sim.play import PlayResult, play

NAMESPACES = ["siprec", "twilio", "genesysaudiohook", "amazonconnect"]
FRAME = 160
N = 16000  # 2 s: 100 frames per stream
SEEDS = [0, 1, 2, 7]

# The heaviest impairment each transport can have.
HEAVY: dict[str, dict[str, Any]] = {
    "siprec": {"loss": 0.1, "duplicate": 0.05, "reorder": 0.1, "jitter_ms": 60.0, "burst": 0.02},
    "twilio": {"loss": 0.1, "jitter_ms": 60.0, "burst": 0.02},
    "genesysaudiohook": {"jitter_ms": 60.0, "burst": 0.02},
    "amazonconnect": {"jitter_ms": 60.0, "burst": 0.02},
}
# Stream (as the report names it) -> role, with each encoder's defaults.
ROLE_OF: dict[str, dict[str, Role]] = {
    "siprec": {"rtp:0": "customer", "rtp:1": "agent"},
    "twilio": {"inbound": "customer", "outbound": "agent"},
}


@pytest.fixture(scope="module")
def call() -> StereoCall:
    rng = np.random.default_rng(20260301)
    t = np.arange(N) / 8000.0
    customer = 6000 * np.sin(2 * np.pi * 330 * t) + rng.normal(0, 300, N)
    agent = 4000 * np.sin(2 * np.pi * 870 * t) + rng.normal(0, 300, N)
    return StereoCall(customer.astype(np.int16), agent.astype(np.int16))


def through_gateway(namespace: str, wires: Any) -> PlayResult:
    return play(
        Gateway(VirtualClock()), namespace, wires, session_options=session_options(namespace)
    )


def expected_audio(
    namespace: str, pcm: npt.NDArray[np.int16], lost: tuple[int, ...]
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.bool_]]:
    audio = heard(namespace, pcm).copy()
    mask = np.ones(len(audio), np.bool_)
    for frame in lost:
        audio[frame * FRAME : (frame + 1) * FRAME] = 0
        mask[frame * FRAME : (frame + 1) * FRAME] = False
    return audio, mask


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_gateway_accounts_for_exactly_what_was_done(
    namespace: str, seed: int, call: StereoCall
) -> None:
    impaired = impair(encode(namespace, call), namespace, seed=seed, **HEAVY[namespace])
    report = impaired.report
    result = through_gateway(namespace, impaired)
    acc = result.accounting
    expected = report.expected_accounting()
    assert acc.received == expected["received"]
    assert acc.lost == expected["lost"] == report.dropped  # edges kept: every loss is seen
    assert dict(acc.dropped) == expected["dropped"]
    for kind, count in expected["anomalies"].items():
        assert acc.anomalies[kind] == count, kind
    assert acc.total == report.accountable == result.sent + report.dropped
    assert acc.ended_by == "platform"
    if namespace in ROLE_OF:
        assert report.dropped > 0  # the seeds do exercise loss
        for stream, role in ROLE_OF[namespace].items():
            lost = report.streams[stream].dropped_frames
            audio, mask = expected_audio(namespace, getattr(call, role), lost)
            np.testing.assert_array_equal(result.audio[role], audio)
            np.testing.assert_array_equal(result.received[role], mask)
    else:
        for role in ROLES:
            np.testing.assert_array_equal(result.audio[role], heard(namespace, getattr(call, role)))


@pytest.mark.parametrize("seed", SEEDS)
def test_rtp_reorder_and_duplicates_are_reported_as_anomalies(seed: int, call: StereoCall) -> None:
    impaired = impair(
        encode("siprec", call), "siprec", duplicate=0.1, reorder=0.2, jitter_ms=45.0, seed=seed
    )
    report = impaired.report
    assert report.reordered > 0 and report.duplicated > 0 and report.dropped == 0
    result = through_gateway("siprec", impaired)
    acc = result.accounting
    assert acc.anomalies["reorder"] == report.reordered
    assert acc.anomalies["duplicate"] == acc.dropped["duplicate"] == report.duplicated
    assert acc.received == report.sent and acc.lost == 0
    for role in ("customer", "agent"):
        np.testing.assert_array_equal(result.audio[role], heard("siprec", getattr(call, role)))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_no_impairment_changes_nothing(namespace: str, call: StereoCall) -> None:
    wires = list(encode(namespace, call))
    impaired = impair(wires, namespace, seed=3)
    assert list(impaired) == wires and len(impaired) == len(wires)
    assert impaired.report.sent == sum(s.sent for s in impaired.report.streams.values())
    assert impaired.report.delivered == impaired.report.sent
    assert impaired.report.dropped == impaired.report.delayed == 0


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_same_seed_same_result_other_seed_other(namespace: str, call: StereoCall) -> None:
    wires = list(encode(namespace, call))
    a = impair(wires, namespace, seed=5, **HEAVY[namespace])
    b = impair(wires, namespace, seed=5, **HEAVY[namespace])
    c = impair(wires, namespace, seed=6, **HEAVY[namespace])
    assert a.wires == b.wires and a.report == b.report
    assert a.wires != c.wires


@pytest.mark.parametrize(
    ("namespace", "option"),
    [
        ("genesysaudiohook", "loss"),
        ("amazonconnect", "loss"),
        ("twilio", "duplicate"),
        ("twilio", "reorder"),
        ("genesysaudiohook", "reorder"),
        ("amazonconnect", "duplicate"),
    ],
)
def test_a_transport_cannot_have_what_tcp_prevents(namespace: str, option: str) -> None:
    with pytest.raises(ConfigError, match=f"cannot have {option}"):
        options: dict[str, Any] = {option: 0.1}
        Impairment(**options).check(namespace)


@pytest.mark.parametrize(
    "options",
    [
        {"loss": 1.0},
        {"loss": -0.1},
        {"reorder": 2},
        {"jitter_ms": MAX_JITTER_MS + 1},
        {"jitter_ms": -1.0},
        {"burst_ms": -5.0},
        {"seed": -1},
    ],
)
def test_bad_values_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Impairment(**options)


def test_unknown_namespace_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown namespace"):
        impair([], "zoom")


@pytest.mark.parametrize("namespace", ["twilio", "genesysaudiohook", "amazonconnect"])
def test_ordered_transports_keep_order_and_only_move_arrival_later(
    namespace: str, call: StereoCall
) -> None:
    wires = list(encode(namespace, call))
    impaired = impair(wires, namespace, jitter_ms=80.0, burst=0.05, burst_ms=300.0, seed=1)
    out = impaired.wires
    assert [w.data for w in out] == [w.data for w in wires]
    times = [w.at_ms for w in out]
    assert times == sorted(times)
    assert all(o.at_ms >= w.at_ms for o, w in zip(out, wires, strict=True))
    assert impaired.report.delayed > 0
    # A burst delivers several messages at the same instant.
    assert max(np.unique(times, return_counts=True)[1]) > 4


def test_twilio_loss_leaves_a_chunk_gap_and_consecutive_sequence_numbers(
    call: StereoCall,
) -> None:
    impaired = impair(encode("twilio", call), "twilio", loss=0.2, seed=2)
    messages = [json.loads(w.data) for w in impaired]
    assert [m["event"] for m in messages[:2]] == ["connected", "start"]
    assert messages[-1]["event"] == "stop"
    numbers = [int(m["sequenceNumber"]) for m in messages[1:]]
    assert numbers == list(range(1, len(numbers) + 1))
    for track, stream in impaired.report.streams.items():
        chunks = [
            int(m["media"]["chunk"]) for m in messages if m.get("media", {}).get("track") == track
        ]
        missing = sorted(set(range(1, stream.sent + 1)) - set(chunks))
        assert [c - 1 for c in missing] == list(stream.dropped_frames)
        stamps = [
            int(m["media"]["timestamp"])
            for m in messages
            if m.get("media", {}).get("track") == track
        ]
        assert stamps == [(c - 1) * 20 for c in chunks]


def test_rtp_impairment_never_touches_sip_or_the_first_packets(call: StereoCall) -> None:
    wires = list(siprec_with_pause(call))
    impaired = impair(wires, "siprec", **HEAVY["siprec"], seed=4)
    sip_in = [w for w in wires if w.channel == "sip"]
    sip_out = [w for w in impaired if w.channel == "sip"]
    assert sip_out == sip_in
    # Media never crosses a SIP message: the packets between two SIP messages stay there.
    assert segments(impaired.wires) == [sorted(s) for s in segments(wires, dropped=impaired)]
    for channel in ("rtp:0", "rtp:1"):
        first_in = next(w for w in wires if w.channel == channel)
        first_out = next(w for w in impaired if w.channel == channel)
        assert first_out == first_in
    times = [w.at_ms for w in impaired]
    assert times == sorted(times)
    result = through_gateway("siprec", impaired)
    assert result.accounting.total == impaired.report.accountable
    assert result.accounting.lost == impaired.report.dropped


def siprec_with_pause(call: StereoCall) -> list[Wire]:
    return list(encode("siprec", call, pauses=[(0.8, 1.2)]))


def raw(wire: Wire) -> bytes:
    return wire.data if isinstance(wire.data, bytes) else wire.data.encode()


def segments(
    wires: tuple[Wire, ...] | list[Wire], dropped: Impaired | None = None
) -> list[list[bytes]]:
    """The RTP payloads between consecutive SIP messages (as sets, sorted)."""
    keep = None if dropped is None else {raw(w) for w in dropped if w.channel != "sip"}
    out: list[list[bytes]] = [[]]
    for wire in wires:
        if wire.channel == "sip":
            out.append([])
        elif keep is None or raw(wire) in keep:
            out[-1].append(raw(wire))
    return [sorted(set(s)) for s in out]


def test_losses_at_the_edges_are_unseen(call: StereoCall) -> None:
    short = StereoCall(call.customer[:1600], call.agent[:1600])
    for seed in range(40):
        impaired = impair(encode("twilio", short), "twilio", loss=0.5, keep_edges=False, seed=seed)
        report = impaired.report
        if report.unseen:
            result = through_gateway("twilio", impaired)
            assert result.accounting.lost == report.dropped - report.unseen
            assert result.accounting.total == report.accountable
            return
    pytest.fail("no seed lost a track's last chunk")


# --------------------------------------------------------------------------- property


_PROBABILITY = st.floats(min_value=0.0, max_value=0.5)


@st.composite
def impairments(draw: st.DrawFn, namespace: str) -> Impairment:
    allowed = ALLOWED[namespace]
    options: dict[str, Any] = {
        "seed": draw(st.integers(0, 2**32)),
        "keep_edges": draw(st.booleans()),
        "burst_ms": draw(st.floats(0.0, 500.0)),
    }
    for name in ("loss", "duplicate", "reorder", "burst"):
        if name in allowed:
            options[name] = draw(_PROBABILITY)
    if "jitter_ms" in allowed:
        options["jitter_ms"] = draw(st.floats(0.0, MAX_JITTER_MS))
    return Impairment(**options)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, Impairment, int]:
    namespace = draw(st.sampled_from(NAMESPACES))
    return namespace, draw(impairments(namespace)), draw(st.integers(1, 60)) * 80


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_impair_then_decode_always_balances(case: tuple[str, Impairment, int]) -> None:
    namespace, spec, n = case
    rng = np.random.default_rng(n)
    pcm = (rng.normal(0, 3000, n)).astype(np.int16)
    stereo = StereoCall(pcm, pcm[::-1].copy())
    try:
        impaired = spec.apply(encode(namespace, stereo), namespace)
        result = through_gateway(namespace, impaired)
    except MgsimError:
        return  # the module's own errors are allowed; anything else fails the test
    report = impaired.report
    acc = result.accounting
    assert result.sent == report.delivered
    assert acc.total == report.accountable
    assert acc.lost == report.dropped - report.unseen
    assert acc.received + sum(acc.dropped.values()) == report.delivered
    assert result.call is not None and result.call.closed_at is not None
    assert acc.ended_by == "platform"


def test_guid_is_kept(call: StereoCall) -> None:
    impaired = impair(encode("twilio", call), "twilio", loss=0.1, seed=1)
    result = through_gateway("twilio", impaired)
    assert result.call is not None and result.call.guid == GUIDS["twilio"]
    assert re.search(r'"callSid"\s*:\s*"CA', str(impaired.wires[1].data))
