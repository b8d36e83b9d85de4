"""Media connections that die mid-call, without the platform's closing handshake.

In-process, :meth:`MediaSession.drop` injects the drop; over real loopback sockets the
sender's TCP connection is cut (Twilio, AudioHook) or its RTP just stops with no BYE
(SIPREC, ended by the SIP server's media timeout). Either way the call ends as dropped,
with its reason in the accounting, the open segment closes and transcribes, every media
message that arrived before the drop is accounted for, a later stop-streaming answers as
for an ended call, and another call running at the same time is undisturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from test_media_roundtrip import GUIDS, body_for, encode, session_options

from mgsim.client import AsyncClient
from mgsim.clock import VirtualClock
from mgsim.contract import Problem
from mgsim.errors import BadRequestError
from mgsim.gateway import Gateway, StartParams
from mgsim.gateway.sessions import is_media, open_media_session
from mgsim.media import audiohook, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator
from mgsim.speech.engine import TimedWord, Utterance
from mgsim.transports.playback import opens_session, play_over_sockets, settle
from mgsim.transports.senders import AudioHookSender, Sender, SiprecSender, TwilioSender
from mgsim.transports.serve import ServerThread
from mgsim.transports.websocket import AUDIOHOOK_PATH

NAMESPACES = ["siprec", "twilio", "genesysaudiohook", "amazonconnect"]
N = 16000  # 2 s
KEEP = 40  # media messages sent before the connection dies
NO_HANDSHAKE = {
    "twilio": ("drop", "no-stop"),
    "genesysaudiohook": ("drop", "no-close"),
    "siprec": ("drop", "no-bye"),
    "amazonconnect": ("platform", "end-of-stream"),  # ending the stream is Connect's end
}
PLATFORM_END = {
    "twilio": "stop",
    "genesysaudiohook": "end",
    "siprec": "bye",
    "amazonconnect": "end-of-stream",
}


@pytest.fixture(scope="module")
def call() -> StereoCall:
    rng = np.random.default_rng(99)
    t = np.arange(N) / 8000.0
    customer = 6000 * np.sin(2 * np.pi * 400 * t) + rng.normal(0, 300, N)
    agent = 4000 * np.sin(2 * np.pi * 950 * t) + rng.normal(0, 300, N)
    return StereoCall(customer.astype(np.int16), agent.astype(np.int16))


class StreamedEngine:
    """Says "streamed" once per participant who had any streamed audio."""

    def transcribe(
        self,
        role: str,
        pcm: npt.NDArray[np.int16],
        streamed: npt.NDArray[np.bool_],
        *,
        offset_ms: float = 0.0,
    ) -> list[Utterance]:
        if not streamed.any():
            return []
        end = offset_ms + len(pcm) / 8.0
        return [Utterance(role, offset_ms, end, (TimedWord("streamed", offset_ms, end),))]


def cut(namespace: str, wires: list[Wire], keep: int) -> list[Wire]:
    """``wires`` up to and including the ``keep``-th media message."""
    out: list[Wire] = []
    seen = 0
    for wire in wires:
        out.append(wire)
        seen += is_media(namespace, wire)
        if seen == keep:
            break
    return out


# --------------------------------------------------------------------------- in-process


def feed_part(namespace: str, call: StereoCall, keep: int) -> tuple[Gateway, Any, int]:
    """Open a session, stream from the start, feed ``keep`` media messages."""
    gw = Gateway(VirtualClock())
    guid = GUIDS[namespace]
    gw.transcription.attach(guid, StreamedEngine())
    session = open_media_session(gw, namespace, **session_options(namespace))
    fed = 0
    for wire in cut(namespace, list(encode(namespace, call)), keep):
        session.feed(wire)
        fed += is_media(namespace, wire)
        if guid in gw.calls and not gw.calls[guid].segments:
            gw.start(namespace, guid, StartParams("c", "a", body=body_for(namespace)))
    return gw, session, fed


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_an_injected_drop_ends_the_call_and_keeps_every_frame(
    namespace: str, call: StereoCall
) -> None:
    gw, session, fed = feed_part(namespace, call, KEEP)
    guid = GUIDS[namespace]
    assert guid in gw.calls and gw.calls[guid].streaming
    session.drop("connection-lost")
    assert guid not in gw.calls and guid in gw.ended
    ended = gw.ended[guid]
    acc = ended.accounting
    assert (acc.ended_by, acc.end_reason) == ("drop", "connection-lost")
    assert acc.total == acc.received == fed
    assert acc.as_dict()["ended_by"] == "drop"
    seg = ended.segments[0]
    assert seg.stopped_at is not None and seg.samples["customer"] > 0
    assert [m for m in gw.messages[guid]], "what was streamed is transcribed and delivered"
    with pytest.raises(Problem) as info:
        gw.stop(namespace, guid)
    assert info.value.code == "400-203"
    # A straggler after the drop is counted, not lost; dropping again changes nothing.
    late = [w for w in encode(namespace, call) if is_media(namespace, w)][KEEP]
    session.feed(late)
    assert acc.total == fed + 1 and acc.dropped["after-close"] == 1
    assert session.drop("again") == [] and acc.end_reason == "connection-lost"


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_closing_without_the_handshake_is_a_drop(namespace: str, call: StereoCall) -> None:
    gw, session, fed = feed_part(namespace, call, KEEP)
    session.close()
    acc = gw.ended[GUIDS[namespace]].accounting
    assert (acc.ended_by, acc.end_reason) == NO_HANDSHAKE[namespace]
    assert acc.total == fed


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_the_platforms_own_end_is_not_a_drop(namespace: str, call: StereoCall) -> None:
    gw, session, fed = feed_part(namespace, call, 10**6)
    session.close()
    assert session.drop("late") == []
    acc = gw.ended[GUIDS[namespace]].accounting
    assert (acc.ended_by, acc.end_reason) == ("platform", PLATFORM_END[namespace])
    assert acc.total == fed


def test_a_protocol_error_ends_the_call_as_an_error(call: StereoCall) -> None:
    gw, session, _ = feed_part("twilio", call, 5)
    session.feed(Wire(0.0, "ws", "{not json"))
    acc = gw.ended[GUIDS["twilio"]].accounting
    assert (acc.ended_by, acc.end_reason) == ("error", "bad-json")


def test_a_drop_before_the_call_opens_records_nothing() -> None:
    gw = Gateway(VirtualClock())
    session = open_media_session(gw, "twilio")
    assert session.drop() == [] and session.call is None and not gw.ended


def test_siprec_drop_counts_the_loss_it_can_still_see(call: StereoCall) -> None:
    wires = list(encode("siprec", call))
    rtp = [i for i, w in enumerate(wires) if w.channel == "rtp:0"]
    del wires[rtp[5]]  # one packet lost before the drop
    gw = Gateway(VirtualClock())
    session = open_media_session(gw, "siprec")
    fed = 0
    for wire in cut("siprec", wires, KEEP):
        session.feed(wire)
        fed += is_media("siprec", wire)
    session.drop("media-timeout")
    acc = gw.ended[GUIDS["siprec"]].accounting
    assert acc.lost == 1 and acc.total == fed + 1
    assert (acc.ended_by, acc.end_reason) == ("drop", "media-timeout")


# --------------------------------------------------------------------------- sockets


@pytest.fixture
def server() -> Iterator[ServerThread]:
    config = SimulatorConfig(seed=11, sip_port=0, spike_arrest_per_s=None, daily_quota=None)
    with Simulator(config) as sim, ServerThread(sim) as running:
        yield running


def hub_of(server: ServerThread) -> Any:
    return server.sim.app.state.media


async def cut_connection(sender: Sender) -> None:
    """Kill a WebSocket sender's TCP connection: no close frame, no handshake."""
    ws = getattr(sender, "ws", None)
    assert ws is not None
    ws.transport.abort()
    reader = getattr(sender, "_reader", None)
    if reader is not None:
        await asyncio.wait_for(reader, 5)


async def send_part(
    client: AsyncClient,
    sender: Sender,
    namespace: str,
    guid: str,
    wires: list[Wire],
) -> int:
    """Send ``wires``, start streaming once the call exists; return media messages sent."""
    await sender.open(wires[0])
    sent = 0
    for wire in wires:
        await sender.send(wire)
        sent += is_media(namespace, wire)
        if opens_session(namespace, wire):
            await settle(client, guid, 0, 5.0)
            await client.start_streaming(namespace, guid, "c", "a")
    view = await settle(client, guid, sent, 5.0)
    assert view is not None and view["total"] == sent
    return sent


async def check_dropped(
    client: AsyncClient, namespace: str, guid: str, sent: int, reason: str
) -> dict[str, Any]:
    view = await settle(client, guid, sent, 10.0, closed=True)
    assert view is not None and view["open"] is False
    acc = view["accounting"]
    assert (acc["ended_by"], acc["end_reason"]) == ("drop", reason)
    assert view["total"] == acc["received"] == sent
    with pytest.raises(BadRequestError) as info:
        await client.stop_streaming(namespace, guid)
    assert info.value.code == "400-203"
    return view


async def other_call(server: ServerThread, client: AsyncClient, namespace: str, wires: Any) -> Any:
    return await play_over_sockets(
        server.endpoints, namespace, wires, client=client, realtime=False, guid=None
    )


@pytest.mark.socket
@pytest.mark.timeout(60)
@pytest.mark.parametrize("clean_close", [False, True])
def test_twilio_connection_dies_mid_call(
    clean_close: bool, call: StereoCall, server: ServerThread
) -> None:
    guid, other = "CA" + "d1" * 16, "CA" + "d2" * 16

    async def scenario() -> None:
        async with AsyncClient(server.base_url) as client:
            url = await client.twilio_media_stream_url()
            wires = cut("twilio", list(twilio.encode(call, guid=guid)), KEEP)
            sender = TwilioSender(url)
            concurrent = asyncio.create_task(
                other_call(server, client, "twilio", twilio.encode(call, guid=other))
            )
            sent = await send_part(client, sender, "twilio", guid, wires)
            if clean_close:
                await sender.finish()
            else:
                await cut_connection(sender)
            reason = "no-stop" if clean_close else "connection-lost"
            await check_dropped(client, "twilio", guid, sent, reason)
            result = await concurrent
            assert result.balanced() and result.accounting["received"] == result.sent
            assert (result.accounting["ended_by"], result.accounting["end_reason"]) == (
                "platform",
                "stop",
            )

    asyncio.run(scenario())
    ended = server.sim.gateway.ended[guid]
    assert ended.segments[0].stopped_at is not None
    assert ended.segments[0].samples["customer"] == KEEP // 2 * 160
    reason = "no-stop" if clean_close else "connection-lost"
    assert hub_of(server).media_counters()[f"media.twilio.drop.{reason}"] == 1


@pytest.mark.socket
@pytest.mark.timeout(60)
def test_audiohook_connection_dies_mid_call(call: StereoCall, server: ServerThread) -> None:
    guid = "5d0c1a52-7b7e-4f0e-9d2a-3f1f00000001"
    other = "5d0c1a52-7b7e-4f0e-9d2a-3f1f00000002"

    async def scenario() -> None:
        async with AsyncClient(server.base_url) as client:
            wires = cut(
                "genesysaudiohook",
                list(audiohook.encode(call, guid=guid, frame_ms=20)),
                KEEP,
            )
            endpoints = server.endpoints
            sender = AudioHookSender(
                endpoints.ws_base + AUDIOHOOK_PATH,
                api_key=endpoints.audiohook_api_key,
                client_secret=endpoints.audiohook_client_secret,
            )
            concurrent = asyncio.create_task(
                other_call(
                    server,
                    client,
                    "genesysaudiohook",
                    audiohook.encode(call, guid=other, frame_ms=20),
                )
            )
            sent = await send_part(client, sender, "genesysaudiohook", guid, wires)
            assert "opened" in sender.reply_types()
            await cut_connection(sender)
            await check_dropped(client, "genesysaudiohook", guid, sent, "connection-lost")
            result = await concurrent
            assert result.balanced() and result.accounting["received"] == result.sent
            assert result.accounting["ended_by"] == "platform"

    asyncio.run(scenario())
    segment = server.sim.gateway.ended[guid].segments[0]
    assert segment.stopped_at is not None and segment.samples["customer"] > 0


@pytest.mark.socket
@pytest.mark.timeout(60)
def test_siprec_rtp_stops_without_bye_and_times_out(call: StereoCall, server: ServerThread) -> None:
    guid, other = "00002542391662063101", "00002542391662063102"
    sip = hub_of(server).sip
    assert sip is not None and sip.media_timeout_s == 30.0  # the default
    sip.media_timeout_s = 0.5
    assert server.endpoints.sip is not None
    host, port = server.endpoints.sip

    async def scenario() -> None:
        async with AsyncClient(server.base_url) as client:
            wires = list(siprec.encode(call, guid=guid))
            bye = wires[-1]
            assert isinstance(bye.data, bytes) and bye.data.startswith(b"BYE")
            sender = SiprecSender(host, port)
            concurrent = asyncio.create_task(
                play_over_sockets(
                    server.endpoints,
                    "siprec",
                    siprec.encode(call, guid=other, seed=1),
                    client=client,
                    guid=other,
                    realtime=False,
                )
            )
            sent = await send_part(client, sender, "siprec", guid, cut("siprec", wires, KEEP))
            await sender.finish()  # RTP stops; no BYE ever comes
            await check_dropped(client, "siprec", guid, sent, "media-timeout")
            late = SiprecSender(host, port)
            await late.open(bye)
            response = await late.request(bye.data)
            await late.finish()
            assert response is not None and response.status == 481
            result = await concurrent
            assert result.balanced() and result.accounting["received"] == result.sent
            assert (result.accounting["ended_by"], result.accounting["end_reason"]) == (
                "platform",
                "bye",
            )

    asyncio.run(scenario())
    segment = server.sim.gateway.ended[guid].segments[0]
    assert segment.stopped_at is not None and segment.samples["customer"] > 0
    assert hub_of(server).media_counters()["media.siprec.drop.media-timeout"] == 1
