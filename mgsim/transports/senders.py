"""Clients that put a call's wire messages on real sockets, as each platform does.

One sender per platform, all with the same shape: ``await open(first_wire)``, then
``await send(wire)`` for each message in order, then ``await finish()``. What the server
answered is kept in :attr:`Sender.replies`, a close code in :attr:`Sender.close_code`.

A real-time load generator can do the encoding before its clock starts:
``prepare(wire)`` turns a message into the exact bytes that go on the socket (a masked
WebSocket frame, an RTP datagram), or None when the message needs the awaited ``send``
(SIP requests, HTTP fragments); ``write(packet)`` then only writes them.

* :class:`TwilioSender`: a WebSocket client on the URL from
  ``GET /mg-autotranscribe/v1/twilio-media-stream-url``; text frames.
* :class:`AudioHookSender`: a WebSocket client whose upgrade carries the AudioHook headers
  and an HTTP message signature (:func:`~mgsim.media.audiohook_signature.sign_request`);
  text and binary frames; ``finish`` waits for ``closed``.
* :class:`SiprecSender`: SIP over UDP (or TCP) to the recording server and two RTP UDP
  streams to the addresses and ports its SDP answer names (``c=`` and ``m=``). Every SIP
  request but ACK waits for its final response before the next message, so a re-INVITE or
  BYE never overtakes RTP.
* :class:`KvsSender`: one ``PUT /putMedia`` per fragment, then ``DELETE /putMedia``.

Pacing and control actions live in :mod:`mgsim.transports.playback`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from mgsim.errors import TransportError
from mgsim.media._base import Wire
from mgsim.media.audiohook_signature import sign_request
from mgsim.media.sdp import parse_sdp
from mgsim.media.sip import (
    SipError,
    SipMessage,
    SipStreamParser,
    parse_content_type,
    parse_message,
    response_to,
)
from mgsim.server.config import DEFAULT_AUDIOHOOK_API_KEY, DEFAULT_AUDIOHOOK_CLIENT_SECRET

__all__ = [
    "AudioHookSender",
    "KvsSender",
    "Sender",
    "SiprecSender",
    "TwilioSender",
    "prepare_wires",
]

_MAX_WS = 1 << 20


class Sender:
    """The common interface (see the module docstring)."""

    namespace = ""

    def __init__(self) -> None:
        self.replies: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.capture: Any = None
        """A :class:`~mgsim.capture.live.PacketCapture` recording what this sender really
        sent and received, with the sockets' addresses (SIPREC), or None."""

    async def open(self, first: Wire) -> None:
        """Connect; ``first`` is the first message to be sent (some need its contents)."""

    async def send(self, wire: Wire) -> None:
        raise NotImplementedError

    @classmethod
    def prepare(cls, wire: Wire) -> Any:
        """The bytes (or whatever :meth:`write` takes) that carry ``wire``, encoded ahead
        of time (no connection needed); None when ``wire`` must go through :meth:`send`."""
        return None

    def write(self, packet: Any) -> None:
        """Put a message from :meth:`prepare` on the socket now (no waiting)."""
        raise NotImplementedError

    async def finish(self) -> None:
        """Everything was sent: end the connection as the platform does."""

    async def abort(self) -> None:
        """Drop the connection without ceremony (after an error)."""
        await self.finish()


class _WebSocketSender(Sender):
    def __init__(self) -> None:
        super().__init__()
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def _connect(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.ws = await connect(
            url,
            additional_headers=headers,
            max_size=_MAX_WS,
            compression=None,
            proxy=None,
            open_timeout=10,
            ping_interval=None,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self.replies.append(message)
                self._on_reply(message)
        except ConnectionClosed:
            pass
        finally:
            self._note_close(ws)

    def _on_reply(self, message: str | bytes) -> None:
        """Hook for protocol-specific reactions to a server message."""

    def _note_close(self, ws: ClientConnection) -> None:
        if ws.close_code is not None and self.close_code is None:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""

    async def send(self, wire: Wire) -> None:
        ws = self.ws
        if ws is None or self.close_code is not None:
            return  # the server closed: the rest is not delivered (the platform would stop)
        try:
            await ws.send(wire.data)
        except ConnectionClosed:
            self._note_close(ws)

    @classmethod
    def prepare(cls, wire: Wire) -> bytes:
        # A complete client frame, masked with its own random key as RFC 6455 asks; whole
        # frames written to the transport interleave safely with the library's own writes.
        data = wire.data
        if isinstance(data, str):
            frame = Frame(Opcode.TEXT, data.encode())
        else:
            frame = Frame(Opcode.BINARY, bytes(data))
        return frame.serialize(mask=True)

    def write(self, packet: Any) -> None:
        ws = self.ws
        if ws is None or self.close_code is not None or ws.protocol.state is not State.OPEN:
            return  # as in send: after the server closed, nothing more is delivered
        ws.transport.write(packet)

    async def _close(self, timeout: float = 5.0) -> None:
        ws = self.ws
        if ws is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), timeout)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, timeout)
        self._note_close(ws)


class TwilioSender(_WebSocketSender):
    """Twilio Media Streams to ``url`` (``ws://.../mg-twilio-autotranscribe/twilio-media/<token>``)."""

    namespace = "twilio"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    async def open(self, first: Wire) -> None:
        await self._connect(self.url)

    async def finish(self) -> None:
        await self._close()


class AudioHookSender(_WebSocketSender):
    """A Genesys AudioHook client for ``url`` (``ws://host:port/audiohook/ws``).

    The session id is the ``id`` of the first message (the ``open``); the upgrade is
    signed with ``api_key`` and ``client_secret`` (base64), or deliberately not when
    ``sign=False``.
    """

    namespace = "genesysaudiohook"

    def __init__(
        self,
        url: str,
        *,
        api_key: str = DEFAULT_AUDIOHOOK_API_KEY,
        client_secret: str = DEFAULT_AUDIOHOOK_CLIENT_SECRET,
        organization_id: str = "6a4b6f2e-8d0c-4b8e-9a55-0f3c2d1e7b10",
        sign: bool = True,
        close_wait_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.api_key = api_key
        self.client_secret = client_secret
        self.organization_id = organization_id
        self.sign = sign
        self.close_wait_s = close_wait_s
        self._closed = asyncio.Event()

    def headers_for(self, session_id: str) -> dict[str, str]:
        """The upgrade headers, signed as Genesys Cloud signs them."""
        parsed = urlparse(self.url)
        headers = {
            "Audiohook-Organization-Id": self.organization_id,
            "Audiohook-Correlation-Id": str(uuid.uuid4()),
            "Audiohook-Session-Id": session_id,
            "X-API-KEY": self.api_key,
        }
        if self.sign:
            target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
            now = int(time.time())
            headers.update(
                sign_request(
                    "GET",
                    target,
                    parsed.netloc,
                    headers,
                    client_secret_b64=self.client_secret,
                    key_id=self.api_key,
                    nonce=uuid.uuid4().hex,
                    created=now,
                    expires=now + 300,
                )
            )
        return headers

    async def open(self, first: Wire) -> None:
        session_id = str(json.loads(first.data)["id"]) if isinstance(first.data, str) else ""
        await self._connect(self.url, self.headers_for(session_id))

    def _on_reply(self, message: str | bytes) -> None:
        if isinstance(message, str) and '"closed"' in message:
            self._closed.set()

    async def finish(self) -> None:
        # The client's close was the last message: wait for "closed", then hang up.
        if self.close_code is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), self.close_wait_s)
        await self._close()

    def reply_types(self) -> list[str]:
        """The ``type`` of each JSON reply, in order."""
        out = []
        for r in self.replies:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                out.append(str(json.loads(r)["type"]))
        return out


def _address(value: Any) -> tuple[str, int]:
    if isinstance(value, tuple | list) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return "", 0


class _SipUdpClient(asyncio.DatagramProtocol):
    def __init__(self, sink: SiprecSender) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.sink._captured(data, inbound=True)
        try:
            self.sink._response(parse_message(data))
        except SipError:
            self.sink.replies.append(data)


class _SipTcpClient(asyncio.Protocol):
    def __init__(self, sink: SiprecSender) -> None:
        self.sink = sink
        self.parser = SipStreamParser()

    def data_received(self, data: bytes) -> None:
        for item in self.parser.feed(data):
            if isinstance(item, SipMessage):
                self.sink._captured(item.to_bytes(), inbound=True)
                self.sink._response(item)


class SiprecSender(Sender):
    """A SIPREC recording client (SBC) for the server at ``host``:``port``.

    ``transport`` is ``"udp"`` or ``"tcp"`` for SIP; RTP is always UDP, one socket per
    m-line, sent to the ports of the server's SDP answer. ``timeout_s`` bounds the wait for
    each SIP response (UDP requests are retransmitted at 0.5 s, 1 s, 2 s as RFC 3261's
    timer A does).
    """

    namespace = "siprec"

    def __init__(
        self, host: str, port: int, *, transport: str = "udp", timeout_s: float = 4.0
    ) -> None:
        super().__init__()
        if transport not in ("udp", "tcp"):
            raise ValueError("transport must be 'udp' or 'tcp'")
        self.host = host
        self.port = port
        self.transport = transport
        self.timeout_s = timeout_s
        self.responses: list[SipMessage] = []
        self.requests: list[SipMessage] = []
        """Requests the server sent (its BYE when the gateway ended the call)."""
        self.ended_by_server = False
        self.rtp_ports: tuple[int, int] | None = None
        self.rtp_addresses: tuple[tuple[str, int], ...] = ()
        """Where each m-line's RTP goes: the SDP answer's connection address and port."""
        self._sip: asyncio.BaseTransport | None = None
        self._rtp: dict[str, asyncio.DatagramTransport] = {}
        self._waiting: dict[tuple[str, int], asyncio.Future[SipMessage]] = {}

    def _response(self, msg: SipMessage) -> None:
        if msg.is_request:
            self._server_request(msg)
            return
        self.responses.append(msg)
        self.replies.append(msg.to_bytes())
        if msg.status < 200:
            return
        with contextlib.suppress(SipError, ValueError):
            number, method = msg.cseq
            future = self._waiting.pop((method, number), None)
            if future is not None and not future.done():
                future.set_result(msg)

    def _server_request(self, msg: SipMessage) -> None:
        """The recording server's own request: its BYE when the gateway ended the call
        gets 200 OK (RFC 3261 15.1.2), and the rest of the call is not sent."""
        self.requests.append(msg)
        if msg.method == "BYE":
            self.ended_by_server = True
            with contextlib.suppress(TransportError):
                self._write_sip(response_to(msg, 200).to_bytes())
        elif msg.method != "ACK":
            with contextlib.suppress(TransportError):
                self._write_sip(response_to(msg, 501).to_bytes())

    async def open(self, first: Wire) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            self._sip, _ = await loop.create_datagram_endpoint(
                lambda: _SipUdpClient(self), remote_addr=(self.host, self.port)
            )
        else:
            self._sip, _ = await loop.create_connection(
                lambda: _SipTcpClient(self), self.host, self.port
            )

    def _write_sip(self, data: bytes) -> None:
        sip: Any = self._sip  # uvloop's transports do not subclass asyncio's
        if sip is None:
            raise TransportError("the SIP connection is not open")
        self._captured(data, inbound=False)
        if self.transport == "udp":
            sip.sendto(data)
        else:
            sip.write(data)

    def _captured(self, data: bytes, *, inbound: bool, rtp: Any = None) -> None:
        """Record one SIP message (or an RTP datagram on ``rtp``) as it crossed the wire."""
        capture = self.capture
        if capture is None:
            return
        link: Any = rtp if rtp is not None else self._sip
        if link is None:
            return
        local = _address(link.get_extra_info("sockname"))
        remote = _address(link.get_extra_info("peername"))
        proto = "udp" if rtp is not None else self.transport
        src, dst = (remote, local) if inbound else (local, remote)
        capture.packet(proto, src, dst, data)

    async def request(self, data: bytes) -> SipMessage | None:
        """Send one SIP message; for a request other than ACK, return its final response."""
        try:
            msg = parse_message(data)
        except SipError:
            self._write_sip(data)  # deliberately malformed: nothing to wait for
            return None
        if not msg.is_request or msg.method == "ACK":
            self._write_sip(data)
            return None
        number, method = msg.cseq
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._waiting[(method, number)] = future
        deadline = time.monotonic() + self.timeout_s
        interval = 0.5
        while True:
            self._write_sip(data)
            wait = min(interval, deadline - time.monotonic())
            if wait <= 0:
                break
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(future), wait)
            if self.transport == "tcp":
                interval = self.timeout_s  # TCP is reliable: no retransmission
            else:
                interval *= 2
        self._waiting.pop((method, number), None)
        raise TransportError(f"no SIP response to {method} within {self.timeout_s} s")

    async def send(self, wire: Wire) -> None:
        if self.ended_by_server:
            return  # the server ended the dialog: nothing more is sent (an SBC stops)
        if wire.channel == "sip":
            data = wire.data.encode() if isinstance(wire.data, str) else wire.data
            response = await self.request(data)
            if response is not None and response.status == 200 and self.rtp_ports is None:
                await self._open_rtp(response)
            return
        self.write(self.prepare(wire))

    @classmethod
    def prepare(cls, wire: Wire) -> tuple[str, bytes] | None:
        if wire.channel == "sip":
            return None
        data = wire.data
        return wire.channel, data if isinstance(data, bytes) else data.encode()

    def write(self, packet: Any) -> None:
        channel, data = packet
        rtp = self._rtp.get(channel)
        if rtp is not None and not self.ended_by_server:
            if self.capture is not None:
                self._captured(data, inbound=False, rtp=rtp)
            rtp.sendto(data)

    async def _open_rtp(self, answer: SipMessage) -> None:
        media_type, _ = parse_content_type(answer.get("Content-Type") or "")
        if media_type != "application/sdp":
            return
        sdp = parse_sdp(answer.body)
        audio = [m for m in sdp.media if m.media == "audio"]
        if len(audio) < 2:
            raise TransportError(f"the SDP answer has {len(audio)} audio m-lines, expected 2")
        # RTP goes where the answer says (RFC 4566 5.7, RFC 3264 6: the m-line's c= line,
        # else the session's), which need not be the host SIP went to (a separate media
        # address, an SBC anchoring media elsewhere).
        self.rtp_addresses = tuple(
            (_connection_host(m.connection or sdp.connection) or self.host, m.port)
            for m in audio[:2]
        )
        self.rtp_ports = (audio[0].port, audio[1].port)
        loop = asyncio.get_running_loop()
        for i, address in enumerate(self.rtp_addresses):
            transport, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=address
            )
            self._rtp[f"rtp:{i}"] = transport

    async def finish(self) -> None:
        for transport in self._rtp.values():
            transport.close()
        self._rtp = {}
        if self._sip is not None:
            self._sip.close()
            self._sip = None


def _connection_host(connection: str | None) -> str | None:
    """The address of an SDP ``c=`` value (``IN IP4 192.0.2.20``; a multicast TTL dropped)."""
    if not connection:
        return None
    parts = connection.split()
    return parts[-1].split("/", 1)[0] if len(parts) == 3 else None


class KvsSender(Sender):
    """Amazon Connect writing stream ``stream_arn`` on the server at ``base_url``.

    ``http`` may be shared between many senders (a load generator does).
    """

    namespace = "amazonconnect"

    def __init__(
        self, base_url: str, stream_arn: str, *, http: httpx.AsyncClient | None = None
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.stream_arn = stream_arn
        self._own = http is None
        self.http = http or httpx.AsyncClient(timeout=10.0)
        self.statuses: list[int] = []
        self.acks: list[dict[str, Any]] = []

    @property
    def _headers(self) -> dict[str, str]:
        return {"x-amzn-stream-arn": self.stream_arn}

    async def send(self, wire: Wire) -> None:
        data = wire.data if isinstance(wire.data, bytes) else wire.data.encode()
        response = await self.http.put(
            f"{self.base_url}/putMedia", content=data, headers=self._headers
        )
        self.statuses.append(response.status_code)
        body = response.json()
        self.replies.append(response.text)
        self.acks.extend(body.get("Acks", []))

    async def finish(self) -> None:
        try:
            response = await self.http.delete(f"{self.base_url}/putMedia", headers=self._headers)
            self.statuses.append(response.status_code)
        finally:
            if self._own:
                await self.http.aclose()


_SENDERS: dict[str, type[Sender]] = {
    "twilio": TwilioSender,
    "genesysaudiohook": AudioHookSender,
    "siprec": SiprecSender,
    "amazonconnect": KvsSender,
}


def prepare_wires(namespace: str, wires: Iterable[Wire]) -> list[Any]:
    """:meth:`Sender.prepare` of each wire, for ``namespace``'s sender: what a load
    generator encodes before its clock starts and hands to
    :func:`~mgsim.transports.playback.play_over_sockets` as ``prepared``.

    >>> from mgsim.media._base import Wire
    >>> prepare_wires("siprec", [Wire(0.0, "rtp:0", b"\\x80")])
    [('rtp:0', b'\\x80')]
    """
    try:
        sender = _SENDERS[namespace]
    except KeyError:
        raise TransportError(f"unknown namespace {namespace!r}") from None
    return [sender.prepare(wire) for wire in wires]
