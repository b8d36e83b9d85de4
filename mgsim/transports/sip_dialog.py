"""The pieces of a SIPREC dialog on real sockets (used by :mod:`mgsim.transports.sip`):
where a SIP message came from (:class:`Link`), the dialog's state (:class:`Dialog`) and
its RTP/RTCP receivers (:class:`RtpProtocol`), each recording what it carries when the
server captures calls (``mgsim serve --capture``), and the server's own BYEs
(:class:`ServerByes`)."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mgsim.errors import ConfigError
from mgsim.media.sip import SipError, SipMessage
from mgsim.transports.hub import Feeder

if TYPE_CHECKING:
    from mgsim.capture.live import PacketCapture

__all__ = ["Address", "Dialog", "Link", "RtpProtocol", "Send", "ServerByes", "address", "listen",
           "recorded", "udp_socket"]  # fmt: skip

T1_S = 0.5
"""RFC 3261 T1: the first retransmission interval of a request over UDP."""
T2_S = 4.0
"""RFC 3261 T2: the longest one."""

Send = Callable[[bytes], None]
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Link:
    """Where a SIP message came from: ``proto`` (``"udp"``/``"tcp"``), the peer's and our
    address, and ``send`` back to the peer (the UDP source, or the TCP connection)."""

    proto: str
    peer: Address
    local: Address
    send: Send


def address(value: Any) -> Address:
    """``(host, port)`` of a socket address (IPv6 ones have four parts)."""
    if isinstance(value, tuple | list) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return "", 0


class RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.rtcp = channel.startswith("rtcp:")
        self.dialog: Dialog | None = None
        self.local: Address = ("", 0)

    def connection_made(self, transport: Any) -> None:
        self.local = address(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        dialog = self.dialog
        if dialog is not None:
            if dialog.capture is not None:
                dialog.capture.packet("udp", address(addr), self.local, data)
            if self.rtcp:
                dialog.feeder.hub.count("media.siprec.rtcp")  # RTCP alone keeps no call alive
            else:
                dialog.last_rtp = time.monotonic()
            dialog.feeder.feed(self.channel, data)


@dataclass(eq=False)
class Dialog:
    call_id: str
    feeder: Feeder
    ports: tuple[int, int]
    link: Link
    """How the INVITE came: transport, the SBC's address, ours, and a way back to it."""
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    ended: bool = False
    last_rtp: float = field(default_factory=time.monotonic)  # for the media timeout
    watchdog: asyncio.TimerHandle | None = None
    capture: PacketCapture | None = None


async def listen(
    protocols: list[RtpProtocol], socks: list[socket.socket]
) -> list[asyncio.DatagramTransport]:
    """Receive on the bound RTP/RTCP sockets (what arrived meanwhile waits in them)."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.DatagramTransport] = []
    for protocol, sock in zip(protocols, socks, strict=True):
        transport, _ = await loop.create_datagram_endpoint(
            lambda p=protocol: p,  # type: ignore[misc]
            sock=sock,
        )
        transports.append(transport)
    return transports


def udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def recorded(send: Send, capture: PacketCapture, link: Link) -> Send:
    """``send``, recording each message in ``capture`` as sent from us to the peer."""

    def record(payload: bytes) -> None:
        capture.packet(link.proto, link.local, link.peer, payload)  # type: ignore[arg-type]
        send(payload)

    return record


class ServerByes:
    """The recording server's own BYEs (the gateway ended the call): each sent where the
    SBC's INVITE came from, resent over UDP until a final answer comes (RFC 3261 17.1.2.2:
    timer E from 500 ms doubling to 4 s, giving up after 64*T1, timer F)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int], asyncio.TimerHandle | None] = {}

    def send(self, dialog: Dialog, host: str, port: int) -> bool:
        """Send ``dialog``'s BYE; False when its session has no dialog to end."""
        decoder: Any = getattr(dialog.feeder.session, "decoder", None)
        link = dialog.link
        via = f"SIP/2.0/{link.proto.upper()} {host}:{port};branch=z9hG4bK{uuid.uuid4().hex}"
        try:
            data: bytes = decoder.bye(via)
        except ConfigError:
            return False
        # Where the SBC's INVITE came from (over TCP, its connection): the next hop that
        # reached us, whatever the Contact says behind a NAT or a proxy (the symmetric
        # signalling RFC 3581 gives responses; mgsim's own SBC names a documentation address).
        send = link.send
        if dialog.capture is not None:
            send = recorded(send, dialog.capture, link)
        key = (dialog.call_id, int(data.split(b"CSeq: ", 1)[1].split(b" ", 1)[0]))
        self._pending[key] = None
        send(data)
        if link.proto == "udp":
            self._resend(key, send, data, T1_S, time.monotonic() + 64 * T1_S)
        return True

    def _resend(self, key: tuple[str, int], send: Send, data: bytes, interval: float,
                until: float) -> None:  # fmt: skip
        def again() -> None:
            if key not in self._pending:
                return
            if time.monotonic() >= until:
                del self._pending[key]  # timer F: the SBC never answered
                return
            send(data)
            self._resend(key, send, data, min(interval * 2, T2_S), until)

        self._pending[key] = asyncio.get_running_loop().call_later(interval, again)

    def answered(self, msg: SipMessage) -> bool:
        """Whether ``msg`` answers a BYE of ours (nothing else to do with it)."""
        try:
            number, method = msg.cseq
        except SipError:
            return False
        key = (msg.call_id, number)
        if method != "BYE" or key not in self._pending:
            return False
        if msg.status >= 200:
            handle = self._pending.pop(key)
            if handle is not None:
                handle.cancel()
        return True  # a provisional answer: keep waiting for the final one

    def forget(self, call_id: str) -> None:
        """The dialog is gone: stop resending its BYE."""
        for key in [k for k in self._pending if k[0] == call_id]:
            handle = self._pending.pop(key)
            if handle is not None:
                handle.cancel()
