"""SIPREC over real sockets: SIP on UDP and TCP, RTP on UDP, on the app's event loop.

:class:`SipServer` listens for SIP on one port number over both UDP and TCP (TCP messages
are framed by ``Content-Length`` with :class:`~mgsim.media.sip.SipStreamParser`). Each new
INVITE the session accepts gets two freshly bound RTP ports (the session asks for them once
it has validated the INVITE, so a refused one binds nothing), and the SDP answer names
them, so it always carries the ports the server really listens on; the 200 OK goes out
once they listen. A datagram on
one of those ports belongs to that call's m-line by its port alone; the session's RTP
receiver then checks its SSRC and payload type.

Answers: whatever the session replies (``200 OK``, or the SIP error response for a request
it refuses) goes back where the request came from — the UDP source address or the TCP
connection. A message that cannot be parsed far enough to answer is counted and dropped,
as RFC 3261 asks. An in-dialog request for an unknown Call-ID gets ``481``.

A BYE hangs the call up at once; the call's RTP ports stay bound for
:data:`RTP_LINGER_S` so that stray packets are still counted (as ``after-close``) rather
than vanishing, then they are closed. SIP messages are handled one at a time, in arrival
order, by one worker task (binding RTP ports is asynchronous); RTP is fed as it arrives.
Every INVITE is answered ``100 Trying`` at once (RFC 3261 17.2.1), and the session's 200 OK
names this server's host, port and the transport the INVITE came on in its Contact.

**RTP and RTCP ports.** Each m-line gets an even RTP port P and its RTCP port P + 1, as
RFC 3550 section 11 expects (an SBC sends RTCP to the RTP port + 1 unless SDP says
otherwise); with ``rtp_ports`` they come from that range in pairs. RTCP is received on its
own socket and counted (``media.siprec.rtcp``); RTCP multiplexed on an RTP port (RFC 5761)
is counted in the session's ``rtcp``; neither is a media message nor an error.

**Media timeout.** An SBC that dies (or loses its network) mid-call sends no BYE: its RTP
just stops. As real recording servers and media gateways do, a call whose RTP has been
silent for ``media_timeout_s`` (default :data:`DEFAULT_MEDIA_TIMEOUT_S`, 30 s) is ended as
a drop: the session is dropped with reason ``"media-timeout"`` (its open segment closes,
what it streamed is transcribed, ``accounting.ended_by == "drop"``), the counter
``media.siprec.drop.media-timeout`` goes up, and the dialog ends, so a late BYE gets
``481`` and stray RTP is counted ``after-close`` during the linger. The timer counts from
the INVITE until the first packet, and is suspended while the SBC has paused the recording
(``a=inactive``): no RTP is expected then. Calls still open when the server stops are
dropped with reason ``"gateway-shutdown"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from mgsim.errors import ConfigError
from mgsim.media.sip import SipError, SipMessage, SipStreamParser, parse_message, response_to
from mgsim.media.siprec_server import ALLOW as _ALLOW
from mgsim.transports.hub import MediaHub
from mgsim.transports.sip_dialog import (
    Dialog,
    Link,
    RtpProtocol,
    Send,
    ServerByes,
    address,
    listen,
    recorded,
    udp_socket,
)

if TYPE_CHECKING:
    from mgsim.capture.live import CaptureDir, PacketCapture

__all__ = ["ANSWER_KEPT_S", "DEFAULT_MEDIA_TIMEOUT_S", "FRAME_MS", "RTP_LINGER_S", "SipServer"]

RTP_LINGER_S = 2.0
"""How long a finished call's RTP ports stay bound, counting late packets."""
DEFAULT_MEDIA_TIMEOUT_S = 30.0
"""RTP silence after which a SIPREC call counts as dropped (a common SBC/gateway default)."""
FRAME_MS = 20.0
"""The grid a SIPREC call's media clock is stamped on (the packet time), from its first RTP
packet (see :class:`~mgsim.transports.hub.Feeder`)."""
_ANSWERED_KEPT = 4096  # final responses kept for retransmitted requests, at most
ANSWER_KEPT_S = 32.0
"""How long a final response is kept to answer retransmissions of its request: 64*T1, the
longest a server transaction lasts (RFC 3261 17.2, Timer J; also how long a UAS resends a
2xx awaiting its ACK, 13.3.1.4)."""


class _SipUdp(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports do not subclass asyncio's

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return

        def send(payload: bytes) -> None:
            transport.sendto(payload, addr)

        local = address(transport.get_extra_info("sockname"))
        self.server.submit(data, send, "udp", Link("udp", address(addr), local, send))


class _SipTcp(asyncio.Protocol):
    def __init__(self, server: SipServer) -> None:
        self.server = server
        self.parser = SipStreamParser()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return

        def send(payload: bytes) -> None:
            if not transport.is_closing():
                transport.write(payload)

        link = Link(
            "tcp",
            address(transport.get_extra_info("peername")),
            address(transport.get_extra_info("sockname")),
            send,
        )
        for item in self.parser.feed(data):
            if isinstance(item, SipMessage):
                self.server.submit(item.to_bytes(), send, "tcp", link)
            else:
                self.server.refuse(item, send)


class SipServer:
    """SIP (UDP + TCP) and per-call RTP listeners feeding SIPREC sessions of ``hub``.

    ``port`` 0 picks a free port (TCP then uses the same number as UDP). ``rtp_ports`` is an
    inclusive range to take RTP ports from, or None for any free ports.
    ``media_timeout_s`` is the RTP silence that ends a call as dropped (see the module
    docstring); None takes the app config's ``rtp_timeout_s`` when it has one, else
    :data:`DEFAULT_MEDIA_TIMEOUT_S`; ``math.inf`` switches it off. The attribute may be
    changed while running: it applies from each call's next check.
    """

    def __init__(
        self,
        hub: MediaHub,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rtp_ports: tuple[int, int] | None = None,
        media_timeout_s: float | None = None,
    ) -> None:
        if media_timeout_s is None:
            config = getattr(getattr(hub, "state", None), "config", None)
            media_timeout_s = getattr(config, "rtp_timeout_s", None) or DEFAULT_MEDIA_TIMEOUT_S
        if not media_timeout_s > 0:
            raise ConfigError(f"media_timeout_s must be > 0, got {media_timeout_s!r}")
        self.media_timeout_s = float(media_timeout_s)
        self.hub = hub
        self.host = host
        self.port = port
        self.rtp_ports = rtp_ports
        self.dialogs: dict[str, Dialog] = {}
        # Final responses by (Call-ID, CSeq number, method), oldest first, with the
        # monotonic time each was sent: kept ANSWER_KEPT_S, and never more than _ANSWERED_KEPT.
        self._answered: OrderedDict[tuple[str, int, str], tuple[float, bytes]] = OrderedDict()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._queue: asyncio.Queue[tuple[bytes, Send, str, Link | None]] = asyncio.Queue()
        self.captures: CaptureDir | None = getattr(hub, "captures", None)
        self._captures: dict[str, PacketCapture] = {}  # by Call-ID, until the dialog goes
        self._byes = ServerByes()  # the server's own BYEs awaiting their answer
        self._worker: asyncio.Task[None] | None = None
        self._next_rtp = rtp_ports[0] + rtp_ports[0] % 2 if rtp_ports else 0  # even
        self._lingering: set[asyncio.TimerHandle] = set()

    # -- life cycle

    async def start(self) -> None:
        """Bind the SIP sockets and start the worker.

        With port 0 the UDP socket takes a free port and TCP the same number; when that
        number is taken for TCP, both are tried again on another one.
        """
        loop = asyncio.get_running_loop()
        for attempt in range(20):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _SipUdp(self), local_addr=(self.host, self.port)
            )
            port = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await loop.create_server(lambda: _SipTcp(self), self.host, port)
            except OSError:
                udp.close()
                if self.port or attempt == 19:
                    raise
                continue
            self._udp, self.port = udp, port
            break
        self._worker = loop.create_task(self._work(), name="mgsim-sip")

    async def stop(self) -> None:
        """Close every socket; calls still open hang up."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for handle in self._lingering:
            handle.cancel()
        for dialog in list(self.dialogs.values()):
            if not dialog.ended:
                self._drop(dialog, "gateway-shutdown")
            self._release(dialog)
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    def describe(self) -> dict[str, Any]:
        """Where SIP listens and how many dialogs are open (JSON)."""
        return {
            "host": self.host,
            "udp": self.port,
            "tcp": self.port,
            "dialogs": sum(not d.ended for d in self.dialogs.values()),
        }

    # -- SIP

    def submit(
        self, data: bytes, send: Send, transport: str = "udp", link: Link | None = None
    ) -> None:
        """Queue one SIP message that came over ``transport`` (handled in arrival order);
        ``link`` says between which addresses (for captures and the server's own BYE)."""
        self._queue.put_nowait((data, send, transport, link))

    def refuse(self, exc: SipError, send: Send) -> None:
        """Count a message that could not be accepted and answer it if possible."""
        self.hub.count(f"media.siprec.error.{exc.reason}")
        response = exc.to_response()
        if response is not None:
            send(response.to_bytes())

    async def _work(self) -> None:
        while True:
            data, send, transport, link = await self._queue.get()
            try:
                await self._handle(data, send, transport, link)
            except Exception as exc:  # one bad message must not stop SIP for every call
                self.hub.count("media.siprec.error.internal")
                with contextlib.suppress(Exception):
                    msg = parse_message(data)
                    send(response_to(msg, 500, reason=type(exc).__name__).to_bytes())

    async def _handle(
        self, data: bytes, send: Send, transport: str = "udp", link: Link | None = None
    ) -> None:
        try:
            msg = parse_message(data)
        except SipError as exc:
            self.refuse(exc, send)
            return
        capture = self._capture_for(msg, link)
        if capture is not None and link is not None:
            capture.packet(link.proto, link.peer, link.local, data)  # type: ignore[arg-type]
            send = recorded(send, capture, link)
        if not msg.is_request and self._byes.answered(msg):
            return
        key = None
        if msg.is_request and msg.method != "ACK":
            # A retransmitted request (the client's 200 OK came late, over UDP) is the same
            # transaction: it gets the same final answer again and is not processed twice
            # (RFC 3261 17.2), so a BYE resent after its dialog ended is not a 481.
            key = (msg.call_id, *msg.cseq)
            self._expire_answers(time.monotonic())
            answered = self._answered.get(key)
            if answered is not None:
                self.hub.count("media.siprec.retransmission")
                send(answered[1])
                return
            if msg.method == "INVITE":
                # Stops the SBC's INVITE retransmissions while the dialog is set up.
                send(response_to(msg, 100).to_bytes())
            send = self._remembering(key, send)
        dialog = self.dialogs.get(msg.call_id)
        if dialog is None or dialog.ended:
            if msg.is_request and msg.method == "INVITE" and dialog is None:
                await self._invite(msg, data, send, transport, link)
            else:
                self._no_dialog(msg, send)
            return
        for reply in dialog.feeder.feed("sip", data):
            send(bytes(reply.data) if isinstance(reply.data, bytes) else reply.data.encode())
        if dialog.feeder.session.call is not None and getattr(
            dialog.feeder.session, "bye_in_progress", False
        ):
            self._finish(dialog)

    def _remembering(self, key: tuple[str, int, str], send: Send) -> Send:
        """``send``, keeping the last final response for ``key`` (bounded)."""

        def remember(payload: bytes) -> None:
            if payload[8:9] in (b"2", b"3", b"4", b"5", b"6"):  # "SIP/2.0 NNN": final
                now = time.monotonic()
                self._answered[key] = (now, payload)
                self._answered.move_to_end(key)
                self._expire_answers(now)
                while len(self._answered) > _ANSWERED_KEPT:
                    self._answered.popitem(last=False)
            send(payload)

        return remember

    def _expire_answers(self, now: float) -> None:
        """Forget final responses whose transaction is over (older than ANSWER_KEPT_S)."""
        answered = self._answered
        while answered:
            key = next(iter(answered))
            if now - answered[key][0] < ANSWER_KEPT_S:
                break
            del answered[key]

    @property
    def answers_kept(self) -> int:
        """How many final responses are kept for retransmissions."""
        return len(self._answered)

    def _no_dialog(self, msg: SipMessage, send: Send) -> None:
        if not msg.is_request or msg.method == "ACK":
            return
        if msg.method == "OPTIONS":
            send(response_to(msg, 200, headers=[("Allow", _ALLOW)]).to_bytes())
            return
        self.hub.count("media.siprec.error.no-dialog")
        send(response_to(msg, 481).to_bytes())

    def _capture_for(self, msg: SipMessage, link: Link | None) -> PacketCapture | None:
        """The capture of ``msg``'s call: a new INVITE starts one (``--capture``)."""
        capture = self._captures.get(msg.call_id)
        if (
            capture is None
            and self.captures is not None
            and link is not None
            and msg.method == "INVITE"
            and msg.call_id not in self.dialogs
        ):
            capture = self._captures[msg.call_id] = self.captures.packets()
        return capture

    async def _invite(
        self, msg: SipMessage, data: bytes, send: Send, transport: str, link: Link | None = None
    ) -> None:
        call_id = msg.call_id
        socks: list[socket.socket] = []

        def allocate() -> tuple[int, int]:
            # Asked by the session once it accepts the INVITE: a refused one binds nothing.
            try:
                for _ in (0, 1):
                    socks.extend(self._rtp_rtcp_sockets())
            except ConfigError:
                for sock in socks:
                    sock.close()
                socks.clear()
                raise
            return int(socks[0].getsockname()[1]), int(socks[2].getsockname()[1])

        feeder = self.hub.open(
            "siprec",
            quantum_ms=FRAME_MS,
            clock_from_media=True,
            allocate=allocate,
            address=self.host,
            sip_port=self.port,
            sip_transport=transport,
        )
        replies = [
            bytes(r.data) if isinstance(r.data, bytes) else r.data.encode()
            for r in feeder.feed("sip", data)
        ]
        decoder = getattr(feeder.session, "decoder", None)
        if decoder is None or decoder.state == "idle" or feeder.session.failed:
            # Refused: the error response goes out; no dialog, and no RTP ports.
            for sock in socks:
                sock.close()
            feeder.close()
            for reply in replies:
                send(reply)
            capture = self._captures.pop(call_id, None)
            if capture is not None:
                capture.finish(None)  # no call: nothing to keep
            return
        protocols = [RtpProtocol(f"{kind}:{i}") for i in (0, 1) for kind in ("rtp", "rtcp")]
        if link is None:
            link = Link(transport, ("", 0), (self.host, self.port), send)
        dialog = Dialog(call_id, feeder, decoder.ports, link,
                         capture=self._captures.get(call_id))  # fmt: skip
        feeder.session.push = lambda _replies: self._gateway_bye(dialog)
        for protocol in protocols:
            protocol.dialog = dialog
        self.dialogs[call_id] = dialog
        # Listening before the 200 OK goes out: the SBC sends RTP as soon as it has it.
        dialog.transports = await listen(protocols, socks)
        for reply in replies:
            send(reply)
        dialog.last_rtp = time.monotonic()
        self._watch(dialog, self.media_timeout_s)

    # -- media timeout

    def _watch(self, dialog: Dialog, delay_s: float) -> None:
        if dialog.ended or math.isinf(self.media_timeout_s):
            dialog.watchdog = None
            return
        loop = asyncio.get_running_loop()
        dialog.watchdog = loop.call_later(max(delay_s, 0.001), self._check, dialog)

    def _check(self, dialog: Dialog) -> None:
        dialog.watchdog = None
        if dialog.ended:
            return
        now = time.monotonic()
        decoder = getattr(dialog.feeder.session, "decoder", None)
        if getattr(decoder, "state", None) == "paused":
            dialog.last_rtp = now  # on hold: no RTP is expected, the silence starts later
        idle = now - dialog.last_rtp
        if idle >= self.media_timeout_s:
            self._drop(dialog, "media-timeout")
            return
        self._watch(dialog, self.media_timeout_s - idle)

    def _drop(self, dialog: Dialog, reason: str) -> None:
        """End ``dialog``'s call as dropped (no BYE came)."""
        session = dialog.feeder.session
        session.drop(reason)
        call = session.call
        if call is not None and call.accounting.ended_by == "drop":
            self.hub.count(f"media.siprec.drop.{reason}")
        self._finish(dialog)

    def _finish(self, dialog: Dialog) -> None:
        """The call is over: close its session now, its RTP ports after the linger."""
        if dialog.ended:
            return
        dialog.ended = True
        if dialog.watchdog is not None:
            dialog.watchdog.cancel()
            dialog.watchdog = None
        dialog.feeder.close()
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def release() -> None:
            if handle is not None:
                self._lingering.discard(handle)
            self._release(dialog)

        handle = loop.call_later(RTP_LINGER_S, release)
        self._lingering.add(handle)

    def _release(self, dialog: Dialog) -> None:
        for transport in dialog.transports:
            transport.close()
        dialog.transports = []
        if self.dialogs.get(dialog.call_id) is dialog:
            del self.dialogs[dialog.call_id]
        self._byes.forget(dialog.call_id)
        capture = self._captures.pop(dialog.call_id, None)
        if capture is not None:
            call = dialog.feeder.session.call
            capture.finish(call.guid if call is not None else None)

    # -- the gateway ends the call

    def _gateway_bye(self, dialog: Dialog) -> None:
        """The gateway hung the call up (``DELETE /_sim/v1/calls/{guid}``): tell the SBC
        with a BYE (RFC 3261 15.1.1), then end the dialog."""
        if dialog.ended:
            return
        if self._byes.send(dialog, self.host, self.port):
            self.hub.count("media.siprec.gateway-bye")
        self._finish(dialog)

    # -- RTP ports

    def _rtp_rtcp_sockets(self) -> tuple[socket.socket, socket.socket]:
        """An RTP socket on an even port and the RTCP one on the next (RFC 3550 11)."""
        if self.rtp_ports is None:
            for _ in range(64):
                rtp = udp_socket(self.host, 0)
                port = int(rtp.getsockname()[1])
                if port % 2 == 0 and port < 65535:
                    with contextlib.suppress(OSError):
                        return rtp, udp_socket(self.host, port + 1)
                rtp.close()
            raise ConfigError("no free even/odd UDP port pair for RTP and RTCP")
        low, high = self.rtp_ports
        first = low + low % 2
        for _ in range((high + 1 - first) // 2):
            port = self._next_rtp
            self._next_rtp = first if port + 3 > high else port + 2
            try:
                rtp = udp_socket(self.host, port)
            except OSError:
                continue
            try:
                return rtp, udp_socket(self.host, port + 1)
            except OSError:
                rtp.close()
        raise ConfigError(f"no free RTP/RTCP port pair in {low}..{high}")
