"""The four-namespace round trip over real loopback sockets, against the same expectations
as the in-process one (:mod:`test_media_roundtrip`): each participant's audio comes back
exactly (after µ-law where used), mapped to the right role, start/stop windows stream
exactly the frames delivered inside them, and every media message is accounted for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from test_media_roundtrip import ARN, FRAME, GUIDS, LAG_FRAMES, N, encode, heard, run

from mgsim.client import AsyncClient
from mgsim.contract.models import AmazonConnectParams, SiprecParams, TwilioParams
from mgsim.media._base import StereoCall
from mgsim.server.config import SimulatorConfig
from mgsim.sim.play import PlayResult
from mgsim.simulator import Simulator
from mgsim.transports.playback import collect, play_over_sockets
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]

NAMESPACES = ["siprec", "twilio", "genesysaudiohook", "amazonconnect"]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    config = SimulatorConfig(seed=7, sip_port=0, spike_arrest_per_s=None, daily_quota=None)
    with Simulator(config) as sim, ServerThread(sim) as running:
        yield running


@pytest.fixture(scope="module")
def call() -> StereoCall:
    rng = np.random.default_rng(20260105)
    t = np.arange(N) / 8000.0
    customer = 7000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 400, N)
    agent = 5000 * np.sin(2 * np.pi * 1010 * t) + rng.normal(0, 400, N)
    return StereoCall(customer.astype(np.int16), agent.astype(np.int16))


def params_for(namespace: str, body: dict[str, Any] | None = None) -> Any:
    body = body or {}
    if namespace == "amazonconnect":
        return AmazonConnectParams(ARN)
    if namespace == "twilio":
        return TwilioParams(**body) if body else None
    if namespace == "siprec":
        return SiprecParams(**body) if body else None
    return None


async def over_sockets(
    server: ServerThread,
    namespace: str,
    wires: Any,
    *,
    start_ms: float,
    stop_ms: float,
    realtime: bool = False,
    params: Any = None,
    sip_transport: str = "udp",
) -> tuple[PlayResult, Any, Any]:
    guid = GUIDS[namespace]
    stops: list[Any] = []
    async with AsyncClient(server.base_url) as client:

        async def stop() -> None:
            stops.append(await client.stop_streaming(namespace, guid))

        result = await play_over_sockets(
            server.endpoints,
            namespace,
            wires,
            {
                start_ms: lambda: client.start_streaming(namespace, guid, "c", "a", params=params),
                stop_ms: stop,
            },
            client=client,
            guid=guid,
            realtime=realtime,
            stream_arn=ARN,
            sip_transport=sip_transport,
        )
    return collect(server.sim, result), result, stops[0] if stops else None


@pytest.mark.parametrize("transport", ["inprocess", "socket"])
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_start_at_one_second_stop_at_two_streams_exactly_that(
    namespace: str, transport: str, call: StereoCall, server: ServerThread
) -> None:
    if transport == "inprocess":
        _, result = run(namespace, call, start_ms=1000.0, stop_ms=2000.0)
    else:
        result, sent, summary = asyncio.run(
            over_sockets(
                server,
                namespace,
                encode(namespace, call),
                start_ms=1000.0,
                stop_ms=2000.0,
                params=params_for(namespace),
            )
        )
        assert sent.balanced() and sent.accounting["received"] == sent.sent
        assert summary.customer.summary.total_audio_bytes == 16000
    assert result.call is not None and result.call.closed_at is not None
    lag = LAG_FRAMES[namespace] * FRAME
    for role in ("customer", "agent"):
        np.testing.assert_array_equal(result.audio[role], heard(namespace, getattr(call, role)))
        assert result.received[role].all()
        assert result.streamed_ranges(role) == [(8000 - lag, 16000 - lag)]
        assert result.call.segments[0].summary(role)["totalAudioBytes"] == 16000
    assert result.balanced() and result.accounting.received == result.sent


@pytest.mark.parametrize(
    ("namespace", "encode_options", "body", "swapped"),
    [
        ("twilio", {"customer_track": "outbound"}, {}, True),
        (
            "twilio",
            {"customer_track": "outbound"},
            {"inbound": "agent", "outbound": "customer"},
            False,
        ),
        ("siprec", {"media_line_order": "AGENT_FIRST"}, {"media_line_order": "AGENT_FIRST"}, False),
        ("siprec", {"media_line_order": "AGENT_FIRST"}, {}, True),
        ("genesysaudiohook", {}, {}, False),
    ],
)
def test_participant_mapping_over_sockets(
    namespace: str,
    encode_options: dict[str, Any],
    body: dict[str, Any],
    swapped: bool,
    call: StereoCall,
    server: ServerThread,
) -> None:
    result, sent, _ = asyncio.run(
        over_sockets(
            server,
            namespace,
            encode(namespace, call, **encode_options),
            start_ms=500.0,
            stop_ms=2500.0,
            params=params_for(namespace, body),
        )
    )
    customer, agent = heard(namespace, call.customer), heard(namespace, call.agent)
    if swapped:
        customer, agent = agent, customer
    np.testing.assert_array_equal(result.audio["customer"], customer)
    np.testing.assert_array_equal(result.audio["agent"], agent)
    assert sent.balanced()


def test_siprec_over_tcp(call: StereoCall, server: ServerThread) -> None:
    result, sent, _ = asyncio.run(
        over_sockets(
            server,
            "siprec",
            encode("siprec", call),
            start_ms=1000.0,
            stop_ms=2000.0,
            sip_transport="tcp",
        )
    )
    np.testing.assert_array_equal(result.audio["customer"], heard("siprec", call.customer))
    assert result.streamed_ranges("agent") == [(8000, 16000)]
    assert sent.balanced() and result.call is not None
    answer_ports = result.call.info["answer_ports"]
    assert answer_ports == result.session.decoder.ports  # type: ignore[attr-defined]


def test_all_four_at_once_in_real_time(call: StereoCall, server: ServerThread) -> None:
    """Paced by media time, concurrently: the same exact audio and windows."""
    short = StereoCall(call.customer[:8000], call.agent[:8000])

    async def all_four() -> list[tuple[PlayResult, Any, Any]]:
        return await asyncio.gather(
            *(
                over_sockets(
                    server,
                    ns,
                    encode(ns, short),
                    start_ms=200.0,
                    stop_ms=600.0,
                    realtime=True,
                    params=params_for(ns),
                )
                for ns in NAMESPACES
            )
        )

    for ns, (result, sent, _) in zip(NAMESPACES, asyncio.run(all_four()), strict=True):
        lag = LAG_FRAMES[ns] * FRAME
        for role in ("customer", "agent"):
            np.testing.assert_array_equal(result.audio[role], heard(ns, getattr(short, role)))
            assert result.streamed_ranges(role) == [(1600 - lag, 4800 - lag)], ns
        assert sent.balanced(), ns
        assert 0.9 < sent.elapsed_s < 5.0
    stats = server.sim.app.state.media.stats()
    assert stats["lateness"]["count"] > 0 and stats["open_sessions"] == 0
