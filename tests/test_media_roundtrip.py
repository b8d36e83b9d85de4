"""A stereo call through each platform's wire format into the gateway and back out.

Streaming rule under test (see :mod:`mgsim.sim.play`): with 20 ms frames, a start at
``a`` ms and a stop at ``b`` ms stream the frames delivered in ``[a, b)``; a frame's
delivery time is its first sample for Twilio and RTP and its last sample for AudioHook and
Kinesis fragments, so the streamed samples are ``[8a, 8b)`` or ``[8a - 160, 8b - 160)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from mgsim.client import Client
from mgsim.clock import VirtualClock
from mgsim.contract.models import AmazonConnectParams, SiprecParams, TwilioParams
from mgsim.gateway import Gateway, StartParams
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.media.g711 import ulaw_decode, ulaw_encode
from mgsim.media.tones import two_tone_call
from mgsim.server.config import SimulatorConfig
from mgsim.sim.play import PlayResult, play
from mgsim.simulator import Simulator

NAMESPACES = ["siprec", "twilio", "genesysaudiohook", "amazonconnect"]
GUIDS = {
    "siprec": "0867617078-0032318833-2221801472-0002236962",
    "twilio": "CA" + "3f" * 16,
    "amazonconnect": "1117e864-690f-4e1e-9dcf-6fbfcc288e41",
    "genesysaudiohook": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
}
ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-connect-demo/1700000000000"
N = 24000  # 3 s
FRAME = 160
# Where a frame's Wire.at_ms lies: 0 = its first sample, 1 = one frame later (its end).
LAG_FRAMES = {"siprec": 0, "twilio": 0, "genesysaudiohook": 1, "amazonconnect": 1}


@pytest.fixture(scope="module")
def call() -> StereoCall:
    return two_tone_call(N / 8000, seed=20260105, tones=(440, 1010), levels=(7000, 5000), noise=400)


def heard(namespace: str, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """What the gateway can recover: µ-law quantized, except Kinesis (16-bit PCM)."""
    return pcm if namespace == "amazonconnect" else ulaw_decode(ulaw_encode(pcm))


def encode(namespace: str, call: StereoCall, **options: Any) -> Iterator[Wire]:
    guid = GUIDS[namespace]
    if namespace == "twilio":
        return twilio.encode(call, guid=guid, **options)
    if namespace == "genesysaudiohook":
        return audiohook.encode(call, guid=guid, frame_ms=20, **options)
    if namespace == "siprec":
        return siprec.encode(call, guid=guid, **options)
    return kvs.encode(call, guid=guid, stream_arn=ARN, fragment_ms=20, **options)


def session_options(namespace: str) -> dict[str, Any]:
    return {"stream_arn": ARN} if namespace == "amazonconnect" else {}


def body_for(namespace: str, **params: Any) -> dict[str, Any]:
    if namespace == "amazonconnect":
        return {"amazonConnectParams": {"streamArn": ARN, **params}}
    return dict(params)


def run(
    namespace: str,
    call: StereoCall,
    *,
    start_ms: float | None = 0.0,
    stop_ms: float | None = None,
    body: dict[str, Any] | None = None,
    **encode_options: Any,
) -> tuple[Gateway, PlayResult]:
    gw = Gateway(VirtualClock())
    guid = GUIDS[namespace]
    params = StartParams("cust", "agent", body=body if body is not None else body_for(namespace))
    actions: dict[float, Callable[[], object]] = {}
    if start_ms:
        actions[start_ms] = lambda: gw.start(namespace, guid, params)
    if stop_ms is not None:
        actions[stop_ms] = lambda: gw.stop(namespace, guid)
    wires = encode(namespace, call, **encode_options)
    on_open = None
    if start_ms == 0.0:  # as soon as the call exists, before its first audio
        on_open = lambda _call: gw.start(namespace, guid, params)  # noqa: E731
    result = play(
        gw, namespace, wires, actions, session_options=session_options(namespace), on_open=on_open
    )
    return gw, result


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_each_participant_is_recovered_exactly(namespace: str, call: StereoCall) -> None:
    # KVS audio reaches the timeline from the store even before any reader streams it.
    _, result = run(namespace, call, start_ms=None)
    assert result.call is not None and result.call.guid == GUIDS[namespace]
    for role in ("customer", "agent"):
        expected = heard(namespace, getattr(call, role))
        np.testing.assert_array_equal(result.audio[role], expected)
        assert result.received[role].all()
        assert not result.streamed[role].any()
    assert result.balanced() and result.accounting.received == result.sent


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_streaming_the_whole_call_streams_every_sample(namespace: str, call: StereoCall) -> None:
    gw, result = run(namespace, call, start_ms=0.0)
    assert result.call is not None
    # A Kinesis call opens with its first stored fragment, so a NOW reader started then
    # begins with the second one; every other platform streams from the first sample.
    skipped = 1 if namespace == "amazonconnect" else 0
    seg = result.call.segments[0]
    for role in ("customer", "agent"):
        assert result.streamed_ranges(role) == [(skipped * FRAME, N)]
        assert seg.summary(role)["totalAudioBytes"] == 2 * (N - skipped * FRAME)
    assert result.accounting.streamed == result.sent - skipped
    assert result.call.closed_at is not None and GUIDS[namespace] in gw.ended


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_start_at_one_second_stop_at_two_streams_exactly_that(
    namespace: str, call: StereoCall
) -> None:
    _, result = run(namespace, call, start_ms=1000.0, stop_ms=2000.0)
    assert result.call is not None
    lag = LAG_FRAMES[namespace] * FRAME
    expected = [(8000 - lag, 16000 - lag)]
    seg = result.call.segments[0]
    for role in ("customer", "agent"):
        assert result.streamed_ranges(role) == expected
        assert abs(expected[0][0] - 8000) <= FRAME
        summary = seg.summary(role)
        assert summary["totalAudioBytes"] == 2 * int(result.streamed[role].sum()) == 16000
        assert summary["audioDurationMs"] == 1000
        assert summary["streamingSeconds"] == 1
    assert result.accounting.streamed == 100 // (
        2 if namespace in ("genesysaudiohook", "amazonconnect") else 1
    )


@pytest.mark.parametrize(
    ("sent_order", "declared", "swapped"),
    [
        ("CUSTOMER_FIRST", "CUSTOMER_FIRST", False),
        ("AGENT_FIRST", "AGENT_FIRST", False),
        ("AGENT_FIRST", "CUSTOMER_FIRST", True),
        ("CUSTOMER_FIRST", "AGENT_FIRST", True),
    ],
)
def test_siprec_media_line_order(
    sent_order: str, declared: str, swapped: bool, call: StereoCall
) -> None:
    body = {"siprecParams": {"mediaLineOrder": declared}}
    _, result = run("siprec", call, body=body, media_line_order=sent_order)
    customer, agent = heard("siprec", call.customer), heard("siprec", call.agent)
    if swapped:
        customer, agent = agent, customer
    np.testing.assert_array_equal(result.audio["customer"], customer)
    np.testing.assert_array_equal(result.audio["agent"], agent)


@pytest.mark.parametrize(
    ("customer_track", "track_map", "swapped"),
    [
        ("inbound", None, False),
        ("outbound", {"inbound": "agent", "outbound": "customer"}, False),
        ("outbound", None, True),
        ("inbound", {"inbound": "agent", "outbound": "customer"}, True),
    ],
)
def test_twilio_track_map(
    customer_track: str, track_map: dict[str, str] | None, swapped: bool, call: StereoCall
) -> None:
    body = {"twilioParams": {"trackMap": track_map}} if track_map else {}
    _, result = run("twilio", call, body=body, customer_track=customer_track)
    customer, agent = heard("twilio", call.customer), heard("twilio", call.agent)
    if swapped:
        customer, agent = agent, customer
    np.testing.assert_array_equal(result.audio["customer"], customer)
    np.testing.assert_array_equal(result.audio["agent"], agent)
    assert result.streamed["customer"].all()


def test_audiohook_external_is_always_the_customer(call: StereoCall) -> None:
    _, result = run("genesysaudiohook", call, channels="external")
    np.testing.assert_array_equal(result.audio["customer"], heard("twilio", call.customer))
    assert len(result.audio["agent"]) == 0  # only the external channel was offered


@pytest.mark.parametrize("swap", [False, True])
def test_kvs_tracks_are_matched_by_name(swap: bool, call: StereoCall) -> None:
    _, result = run("amazonconnect", call, swap_track_numbers=swap)
    np.testing.assert_array_equal(result.audio["customer"], call.customer)
    np.testing.assert_array_equal(result.audio["agent"], call.agent)
    assert result.streamed_ranges("customer") == result.streamed_ranges("agent") == [(FRAME, N)]


@pytest.mark.parametrize(("selector", "first_streamed"), [("NOW", 7840), ("FRAGMENT_NUMBER", 3200)])
def test_kvs_start_selector(selector: str, first_streamed: int, call: StereoCall) -> None:
    gw = Gateway(VirtualClock())
    guid = GUIDS["amazonconnect"]

    def start() -> object:
        params: dict[str, Any] = {"streamArn": ARN, "startSelectorType": selector}
        if selector == "FRAGMENT_NUMBER":
            # The fragment covering 380..400 ms: reading starts right after it, at 400 ms.
            fragments = gw.kvs_media.stream(ARN).fragments
            params["afterFragmentNumber"] = fragments[19].number
        body = {"amazonConnectParams": params}
        return gw.start("amazonconnect", guid, StartParams("c", "a", body=body))

    wires = encode("amazonconnect", call)
    result = play(
        gw,
        "amazonconnect",
        wires,
        {1000.0: start, 2000.0: lambda: gw.stop("amazonconnect", guid)},
        session_options={"stream_arn": ARN},
    )
    assert result.call is not None
    for role in ("customer", "agent"):
        assert result.streamed_ranges(role) == [(first_streamed, 15840)]
        assert result.call.segments[0].samples[role] == 15840 - first_streamed
    np.testing.assert_array_equal(result.audio["customer"], call.customer)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_through_the_embedded_client(namespace: str, call: StereoCall) -> None:
    sim = Simulator(SimulatorConfig(seed=3, redaction_rules_configured=True), virtual=True)
    guid = GUIDS[namespace]
    params: Any = {
        "siprec": SiprecParams(),
        "twilio": TwilioParams(),
        "amazonconnect": AmazonConnectParams(ARN),
        "genesysaudiohook": None,
    }[namespace]
    stops: list[Any] = []
    with Client(simulator=sim) as client:
        result = play(
            client,
            namespace,
            encode(namespace, call),
            {
                1000.0: lambda: client.start_streaming(namespace, guid, "c", "a", params=params),
                2000.0: lambda: stops.append(client.stop_streaming(namespace, guid)),
            },
            session_options=session_options(namespace),
        )
    sim.close()
    lag = LAG_FRAMES[namespace] * FRAME
    assert result.streamed_ranges("customer") == [(8000 - lag, 16000 - lag)]
    summary = stops[0].customer.summary
    assert summary is not None and summary.total_audio_bytes == 16000
    assert summary.audio_duration_ms == 1000
