"""Play a call over real sockets to a running ``mgsim serve``, with timed control actions.

:func:`play_over_sockets` is the socket twin of :func:`mgsim.sim.play.play`: the same
wires, the same ``{ms: action}`` schedule and the same ordering rule (an action at ``t``
runs, and is awaited, before any wire with ``at_ms >= t``). With ``realtime=True`` each
wire is sent when its ``at_ms`` comes (actions and SIP responses that take time only delay
the messages behind them, which catch up); with ``realtime=False`` everything goes as fast
as possible and, before each action, playback waits until the server has accounted for
every media message sent so far (``GET /_sim/v1/media/calls/{guid}``), so what was
streamed is exactly what the same schedule streams in-process.

Actions are callables returning a value or an awaitable — typically
:class:`mgsim.AsyncClient` calls pointed at the same server. ``on_open`` runs once the
server has opened the call. For example (a running server, inside a coroutine)::

    async with AsyncClient("http://127.0.0.1:8080") as client:
        result = await play_over_sockets(
            Endpoints("http://127.0.0.1:8080", sip=("127.0.0.1", 5060)),
            "twilio",
            twilio.encode(call, guid=guid),
            {1000: lambda: client.start_streaming("twilio", guid, "c", "a"),
             2000: lambda: client.stop_streaming("twilio", guid)},
            client=client,
        )
        assert result.balanced()
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mgsim.client import AsyncClient
from mgsim.errors import ConfigError, TransportError
from mgsim.gateway.mapping import ROLES, Role
from mgsim.gateway.sessions import is_media
from mgsim.media._base import Wire
from mgsim.server.app import TWILIO_WS_PREFIX
from mgsim.server.config import DEFAULT_AUDIOHOOK_API_KEY, DEFAULT_AUDIOHOOK_CLIENT_SECRET
from mgsim.sim.play import ActionOutcome, PlayResult
from mgsim.transports.senders import (
    AudioHookSender,
    KvsSender,
    Sender,
    SiprecSender,
    TwilioSender,
    prepare_wires,
)
from mgsim.transports.websocket import AUDIOHOOK_PATH

__all__ = [
    "Endpoints",
    "SocketPlayResult",
    "collect",
    "opens_session",
    "play_over_sockets",
    "settle",
]

Schedule = Mapping[float, Callable[[], Any]] | Iterable[tuple[float, Callable[[], Any]]]
_POLL_S = 0.005


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a gateway listens: its base URL, its SIP ``(host, port)`` and the AudioHook key
    and secret it checks signatures with; ``audiohook_url`` when AudioHook is not at the
    base URL's ``/audiohook/ws`` (a gateway that is not ``mgsim serve``)."""

    base_url: str
    sip: tuple[str, int] | None = None
    audiohook_api_key: str = field(default=DEFAULT_AUDIOHOOK_API_KEY, repr=False)
    audiohook_client_secret: str | None = field(default=DEFAULT_AUDIOHOOK_CLIENT_SECRET, repr=False)
    """None: the server takes unsigned AudioHook connections (the API key alone)."""
    audiohook_url: str | None = None

    @property
    def ws_base(self) -> str:
        base = self.base_url.rstrip("/")
        return "ws" + base[4:] if base.startswith("http") else base


@dataclass(slots=True)
class SocketPlayResult:
    """What :func:`play_over_sockets` saw: ``sent`` media messages (of ``messages`` in
    all), the server's ``replies``, the WebSocket ``close_code``, action outcomes, the
    call's media ``accounting`` as the server reports it at the end, and
    ``send_lateness_ms``: how late each wire left the sender (0 when not real-time)."""

    namespace: str
    guid: str | None
    sent: int = 0
    messages: int = 0
    replies: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    actions: list[ActionOutcome] = field(default_factory=list)
    accounting: dict[str, Any] = field(default_factory=dict)
    send_lateness_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def balanced(self) -> bool:
        """Whether the server accounted for every media message sent."""
        return int(self.accounting.get("total", -1)) == self.sent


def _guid_of(namespace: str, first: Wire | None, wires: list[Wire]) -> str | None:
    try:
        if namespace == "twilio":
            for wire in wires[:3]:
                msg = json.loads(wire.data)
                if msg.get("event") == "start":
                    return str(msg["start"]["callSid"])
        elif namespace == "genesysaudiohook" and first is not None:
            return str(json.loads(first.data)["parameters"]["conversationId"])
        elif namespace == "amazonconnect" and first is not None:
            from mgsim.media.kvs import parse_fragment

            data = first.data if isinstance(first.data, bytes) else b""
            return parse_fragment(data).contact_id
    except (ValueError, KeyError, TypeError):
        return None
    return None


def opens_session(namespace: str, wire: Wire) -> bool:
    data = wire.data
    if namespace == "twilio":
        return isinstance(data, str) and '"start"' in data[:40]
    if namespace == "genesysaudiohook":
        return isinstance(data, str) and '"open"' in data
    if namespace == "siprec":
        raw = data if isinstance(data, bytes) else data.encode()
        return wire.channel == "sip" and raw.startswith(b"INVITE")
    return wire.channel == "kvs"


async def _sender_for(
    endpoints: Endpoints,
    namespace: str,
    client: AsyncClient,
    *,
    stream_arn: str | None,
    sip_transport: str,
    sender_options: Mapping[str, Any],
) -> Sender:
    if namespace == "twilio":
        url = await client.twilio_media_stream_url()
        if TWILIO_WS_PREFIX not in url:
            raise TransportError(f"unexpected media stream URL {url}")
        return TwilioSender(url, **sender_options)
    if namespace == "genesysaudiohook":
        return AudioHookSender(
            endpoints.audiohook_url or endpoints.ws_base + AUDIOHOOK_PATH,
            api_key=endpoints.audiohook_api_key,
            client_secret=endpoints.audiohook_client_secret or "",
            sign=endpoints.audiohook_client_secret is not None,
            **sender_options,
        )
    if namespace == "siprec":
        if endpoints.sip is None:
            raise ConfigError("SIPREC over sockets needs Endpoints.sip (the server's SIP port)")
        host, port = endpoints.sip
        return SiprecSender(host, port, transport=sip_transport, **sender_options)
    if namespace == "amazonconnect":
        if stream_arn is None:
            raise ConfigError("Amazon Connect over sockets needs stream_arn")
        return KvsSender(endpoints.base_url, stream_arn, **sender_options)
    raise ConfigError(f"unknown namespace {namespace!r}")


async def _call_view(client: AsyncClient, guid: str) -> dict[str, Any] | None:
    response = await client.request("GET", f"/_sim/v1/media/calls/{guid}")
    if response.status_code != 200:
        return None
    view: dict[str, Any] = response.json()
    return view


async def settle(
    client: AsyncClient, guid: str, sent: int, timeout_s: float, *, closed: bool = False
) -> dict[str, Any] | None:
    """Wait until the server accounted for ``sent`` media messages (and, with ``closed``,
    hung the call up); return the call's view (None if it never appeared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        view = await _call_view(client, guid)
        done = view is not None and int(view["total"]) >= sent
        if done and closed:
            done = view is not None and not view["open"]
        if done or loop.time() > deadline:
            return view
        await asyncio.sleep(_POLL_S)


async def _settled(client: AsyncClient, guid: str, sent: int, timeout_s: float) -> None:
    """:func:`settle`, where a call that never appeared is an error rather than a wait
    of ``timeout_s`` before every later message."""
    if await settle(client, guid, sent, timeout_s) is None:
        raise TransportError(
            f"the server never opened call {guid} ({sent} media messages sent): it took "
            "the media for another call, or refused it"
        )


async def _run_action(
    fn: Callable[[], Any], at_ms: float, outcomes: list[ActionOutcome], strict: bool
) -> None:
    try:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        outcomes.append(ActionOutcome(at_ms, value))
    except Exception as exc:
        if strict:
            raise
        outcomes.append(ActionOutcome(at_ms, error=exc))


async def play_over_sockets(
    endpoints: Endpoints | str,
    namespace: str,
    wires: Iterable[Wire],
    actions: Schedule | None = None,
    *,
    client: AsyncClient | None = None,
    guid: str | None = None,
    realtime: bool = True,
    stream_arn: str | None = None,
    sip_transport: str = "udp",
    on_open: Callable[[], Any] | None = None,
    strict: bool = True,
    settle_s: float = 10.0,
    sender_options: Mapping[str, Any] | None = None,
    prepared: Sequence[Any] | None = None,
    concurrent_actions: bool = False,
    transform: Callable[[Wire], Wire] | None = None,
    probe: bool = True,
    on_sent: Callable[[Wire, Sender], None] | None = None,
) -> SocketPlayResult:
    """Send ``wires`` of ``namespace`` to the server over its real transport.

    ``client`` (an :class:`~mgsim.AsyncClient` on the same server) fetches the Twilio URL
    and follows the call's accounting; one is made for ``endpoints.base_url`` if omitted.
    ``guid`` is read from the wires when it can be (Twilio, AudioHook, Amazon Connect);
    SIPREC needs it for ``on_open``, settling and the final accounting. ``prepared``
    (from :func:`~mgsim.transports.senders.prepare_wires`, one per wire) saves encoding
    the messages when the call starts.

    With ``concurrent_actions`` (real time only) each action starts at its time and runs
    beside the media instead of holding it: a slow or retried stop lets media through
    meanwhile, as it would on a real call. ``transform`` rewrites each wire just before
    it is sent (an integration masking audio at the source). ``on_sent`` sees each wire
    as it went out, with the sender (a capture recorder).

    ``probe=False`` is for a gateway that is not ``mgsim serve``: it has no
    ``/_sim/v1/media/calls`` to follow, so nothing settles and ``accounting`` stays empty
    (real time only: fast mode needs the probes).
    """
    if not probe and not realtime:
        raise ConfigError("fast playback follows the server's accounting: probe=False needs "
                          "realtime=True")  # fmt: skip

    if concurrent_actions and not realtime:
        raise ConfigError("concurrent_actions needs realtime=True: fast mode has no clock")
    if isinstance(endpoints, str):
        endpoints = Endpoints(endpoints)
    items = actions.items() if isinstance(actions, Mapping) else (actions or ())
    schedule = sorted(((float(t), i, fn) for i, (t, fn) in enumerate(items)), key=lambda a: a[:2])
    wire_list = list(wires)
    first = wire_list[0] if wire_list else None
    guid = guid or _guid_of(namespace, first, wire_list)
    follow = guid if probe else None  # the guid whose accounting is followed, if any
    own_client = client is None
    client = client or AsyncClient(endpoints.base_url)
    loop = asyncio.get_running_loop()
    result = SocketPlayResult(namespace, guid)
    try:
        sender = await _sender_for(
            endpoints,
            namespace,
            client,
            stream_arn=stream_arn,
            sip_transport=sip_transport,
            sender_options=sender_options or {},
        )
        from mgsim.capture.live import sender_capture

        sender.capture = sender_capture(namespace)  # inside mgsim.capture.live.recording()
        # Encoded before the clock starts: in the paced loop a message is only written.
        packets = list(prepared) if prepared is not None else prepare_wires(namespace, wire_list)
        if len(packets) != len(wire_list):
            raise ConfigError(f"{len(packets)} prepared messages for {len(wire_list)} wires")
        media = [is_media(namespace, wire) for wire in wire_list]
        t0 = loop.time()
        pending = 0
        if first is not None:
            await sender.open(first)
            t0 = loop.time()  # media time starts once connected, as a platform's does

        running: list[asyncio.Task[None]] = []

        async def timed(fn: Callable[[], Any], at_ms: float) -> None:
            await asyncio.sleep(max(0.0, t0 + at_ms / 1000.0 - loop.time()))
            await _run_action(fn, at_ms, result.actions, strict)

        async def run_due(until_ms: float) -> None:
            nonlocal pending
            while pending < len(schedule) and schedule[pending][0] <= until_ms:
                at_ms, _, fn = schedule[pending]
                pending += 1
                if concurrent_actions:
                    running.append(asyncio.ensure_future(timed(fn, at_ms)))
                    continue
                if realtime:
                    await asyncio.sleep(max(0.0, t0 + at_ms / 1000.0 - loop.time()))
                elif follow is not None and result.sent:
                    await _settled(client, follow, result.sent, settle_s)
                await _run_action(fn, at_ms, result.actions, strict)

        lateness = result.send_lateness_ms
        for i, wire in enumerate(wire_list):
            if pending < len(schedule) and schedule[pending][0] <= wire.at_ms:
                await run_due(wire.at_ms)
            if realtime:
                delay = t0 + wire.at_ms / 1000.0 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    lateness.append(0.0)
                else:
                    lateness.append(max(0.0, -delay * 1000.0))
            elif wire.channel == "sip" and result.sent and follow is not None:
                # SIP and RTP arrive on different sockets: let RTP land before a BYE or a
                # re-INVITE overtakes it.
                await _settled(client, follow, result.sent, settle_s)
            packet = packets[i]
            if transform is not None:
                sent = transform(wire)
                if sent is not wire:
                    wire, packet = sent, prepare_wires(namespace, [sent])[0]
            if packet is None:
                await sender.send(wire)
            else:
                sender.write(packet)
            result.messages += 1
            result.sent += media[i]
            if on_sent is not None:
                on_sent(wire, sender)
            if on_open is not None and opens_session(namespace, wire) and guid is not None:
                if follow is not None:
                    await settle(client, follow, 0, settle_s)
                await _run_action(on_open, wire.at_ms, result.actions, strict)
                on_open = None
        if follow is not None and not realtime:
            await settle(client, follow, result.sent, settle_s)
        await run_due(wire_list[-1].at_ms if wire_list else 0.0)
        await sender.finish()
        await run_due(float("inf"))
        if running:
            await asyncio.gather(*running)
        if follow is not None:
            view = await settle(client, follow, result.sent, settle_s, closed=True)
            result.accounting = dict(view["accounting"], total=view["total"]) if view else {}
        result.replies = list(sender.replies)
        result.close_code = sender.close_code
        result.elapsed_s = loop.time() - t0
        return result
    finally:
        if own_client:
            await client.aclose()


def collect(gateway_owner: Any, result: SocketPlayResult) -> PlayResult:
    """The :class:`~mgsim.sim.play.PlayResult` of a socket playback, read from an
    in-process server (a :class:`~mgsim.Simulator` or its app) — the same record
    :func:`~mgsim.sim.play.play` returns, so one test can check both."""
    app = getattr(gateway_owner, "app", gateway_owner)
    hub = app.state.media
    gateway = hub.gateway
    if result.guid is None:
        raise ConfigError("the playback's guid is unknown")
    session = hub.sessions.get(result.guid)
    call = gateway.calls.get(result.guid) or gateway.ended.get(result.guid)
    if session is None:
        raise ConfigError(f"no media session for {result.guid}")
    play = PlayResult(result.namespace, session, call, result.sent, [], list(result.actions))
    if call is not None:
        roles: dict[str, Role] = call.roles
        for role in ROLES:
            timeline = call.timeline(call.channel_of(role, roles))
            play.audio[role] = timeline.audio()
            play.received[role] = timeline.received_mask()
            play.streamed[role] = timeline.streamed_mask()
    else:
        for role in ROLES:
            play.audio[role] = np.zeros(0, np.int16)
    return play
