"""SIPREC calls as packet captures: written as pcap or pcapng, read from any capture tool.

:func:`write_pcap` puts a SIPREC call's wire messages on synthesized Ethernet/IPv4/UDP
headers (checksums computed): the SBC's SIP requests and the recording server's answers
(made by the pure :class:`~mgsim.media.siprec.SiprecSession`, so the 200 OK's SDP names the
ports the RTP goes to), and each m-line's RTP from the port the offer named to the port the
answer named. Wireshark and tshark decode it as SIP and, from the SDP, RTP.

:func:`read_pcap` takes a capture from elsewhere (an SBC's, tshark's, dumpcap's; pcap or
pcapng; Ethernet, Linux cooked v1/v2, raw IP or BSD loopback): SIP over UDP or TCP (TCP
segments are put in order per connection and framed by Content-Length), the RTP of the
INVITE's two m-lines, and nothing else. RTP belongs to the m-line whose answered address and
port it is sent to, else whose offered address and port it comes from. Every protocol
problem found is listed (an m-line without ``a=label``, a payload type the SDP did not
offer, a gap in sequence numbers, RTP before the INVITE); a capture that cannot be read at
all (truncated, an unknown link type, no SIP INVITE) raises :class:`CaptureError`.

scapy reads and writes both file formats and every link type above; see
docs/ARCHITECTURE.md for why it was chosen.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgsim.capture.errors import CaptureError
from mgsim.media._base import Reply, Wire
from mgsim.media.rtp import RtpError, unpack
from mgsim.media.sdp import SessionDescription, parse_sdp
from mgsim.media.sip import (
    SipError,
    SipMessage,
    SipStreamParser,
    parse_content_type,
    parse_message,
    parse_multipart,
)
from mgsim.media.siprec import SiprecSession
from mgsim.transports.sip import FRAME_MS

__all__ = ["SipCapture", "read_pcap", "write_pcap"]

SBC = "192.0.2.10"  # RFC 5737 documentation addresses: never a real host
SRS = "192.0.2.20"
SIP_PORT = 5060
SRS_RTP_PORTS = (40000, 40002)
EPOCH = 1_767_603_600.0  # 2026-01-05T09:00:00Z: captures of the same call are identical
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LINK_TYPES = {
    0: "BSD loopback",
    1: "Ethernet",
    101: "raw IP",
    113: "Linux cooked",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked v2",
}


def _offer_ports(invite: bytes) -> tuple[int, int]:
    msg = parse_message(invite)
    sdp = _sdp_of(msg)
    ports = [m.port for m in sdp.media if m.media == "audio"] if sdp else []
    return (ports[0], ports[1]) if len(ports) >= 2 else (30000, 30002)


def write_pcap(wires: Iterable[Wire], path: str | Path) -> Path:
    """Write a SIPREC call's wires (SIP on ``"sip"``, RTP on ``"rtp:0"``/``"rtp:1"``) as
    pcap, or pcapng when ``path`` ends in ``.pcapng``; returns the path."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import PcapNgWriter, PcapWriter

    path = Path(path)
    session = SiprecSession(ports=SRS_RTP_PORTS, address=SRS)
    packets: list[Any] = []
    offer = (30000, 30002)

    def add(at_ms: float, src: str, sport: int, dst: str, dport: int, data: bytes) -> None:
        packet = (
            Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:14")
            if src == SBC
            else Ether(src="02:00:00:00:00:14", dst="02:00:00:00:00:0a")
        )
        packet = packet / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(data)
        packet.time = EPOCH + at_ms / 1000.0
        packets.append(packet)

    sip_ms = -1.0  # a request goes after the answer to the one before (an ACK after 200)
    for wire in wires:
        data = wire.data if isinstance(wire.data, bytes) else wire.data.encode()
        at_ms = wire.at_ms
        if wire.channel == "sip":
            if data.startswith(b"INVITE") and not packets:
                offer = _offer_ports(data)
            at_ms = sip_ms = max(at_ms, sip_ms + 0.002)
            add(at_ms, SBC, SIP_PORT, SRS, SIP_PORT, data)
        elif wire.channel in ("rtp:0", "rtp:1"):
            i = int(wire.channel[-1])
            add(wire.at_ms, SBC, offer[i], SRS, SRS_RTP_PORTS[i], data)
        else:
            raise CaptureError(f"a SIPREC capture takes sip and rtp wires, not {wire.channel!r}")
        try:
            events = session.feed(wire)
        except (SipError, RtpError):
            continue
        for event in events:
            if isinstance(event, Reply):
                reply = event.data if isinstance(event.data, bytes) else event.data.encode()
                add(at_ms + 0.001, SRS, SIP_PORT, SBC, SIP_PORT, reply)
    packets.sort(key=lambda p: float(p.time))  # stable: equal times keep their order
    writer = (
        PcapNgWriter(str(path)) if path.suffix == ".pcapng" else PcapWriter(str(path), sync=False)
    )
    try:
        for packet in packets:
            writer.write(packet)
    finally:
        writer.close()
    return path


@dataclass(slots=True)
class SipCapture:
    """What :func:`read_pcap` found: the SBC's side of the call as wires (SIP requests on
    ``"sip"``, each m-line's RTP on ``"rtp:0"``/``"rtp:1"``; ``at_ms`` on the call's media clock,
    from its first RTP packet, as the gateway stamps them),
    the guid, and every problem noticed."""

    wires: list[Wire]
    problems: list[str] = field(default_factory=list)
    ignored: int = 0
    """Packets that were neither the call's SIP nor its RTP (other traffic)."""
    sip_messages: int = 0
    rtp_packets: dict[str, int] = field(default_factory=dict)


def _sdp_of(msg: SipMessage) -> SessionDescription | None:
    media_type, _ = parse_content_type(msg.get("Content-Type") or "")
    try:
        if media_type == "application/sdp":
            return parse_sdp(msg.body)
        if media_type == "multipart/mixed":
            for part in parse_multipart(msg.get("Content-Type") or "", msg.body):
                if parse_content_type(part.content_type)[0] == "application/sdp":
                    return parse_sdp(part.body)
    except SipError:
        return None
    return None


def _check_format(path: Path) -> None:
    try:
        head = path.read_bytes()[:24]
    except OSError as exc:
        raise CaptureError(f"{path}: {exc.strerror}") from None
    if len(head) < 4 or (head[:4] not in _PCAP_MAGICS and head[:4] != _PCAPNG_MAGIC):
        raise CaptureError(f"{path}: not a pcap or pcapng file (it starts {head[:4].hex()})")
    if head[:4] in _PCAP_MAGICS:
        if len(head) < 24:
            raise CaptureError(f"{path}: truncated pcap header ({len(head)} of 24 bytes)")
        endian = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        (link,) = struct.unpack(endian + "I", head[20:24])
        if (link & 0xFFFF) not in _LINK_TYPES:
            raise CaptureError(_link_message(path, link & 0xFFFF))


def _link_message(path: Path, link: int) -> str:
    known = ", ".join(f"{name} ({n})" for n, name in sorted(_LINK_TYPES.items()))
    return f"{path}: link type {link} is not one mgsim reads; captures must be {known}"


def _packets(path: Path) -> list[tuple[float, Any]]:
    """``(time, IP layer)`` of each packet, in file order."""
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    _check_format(path)
    out: list[tuple[float, Any]] = []
    try:
        with PcapReader(str(path)) as reader:  # pcap and pcapng alike
            for packet in reader:
                link = getattr(packet, "linktype", None)
                layer = packet.getlayer(IP) or packet.getlayer(IPv6)
                if layer is None:
                    if link is not None and link not in _LINK_TYPES:
                        raise CaptureError(_link_message(path, link))
                    continue
                out.append((float(packet.time), layer))
    except (Scapy_Exception, EOFError, struct.error) as exc:
        raise CaptureError(f"{path}: the capture is truncated or damaged ({exc})") from None
    _check_complete(path)
    return out


def _check_complete(path: Path) -> None:
    """scapy stops quietly at a cut-off last record; a truncated file must say so."""
    data = path.read_bytes()
    if data[:4] not in _PCAP_MAGICS:
        return _check_pcapng(path, data)
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos = 24
    while pos < len(data):
        if pos + 16 > len(data):
            raise CaptureError(f"{path}: truncated: a packet header is cut off at byte {pos}")
        (incl,) = struct.unpack(endian + "I", data[pos + 8 : pos + 12])
        if pos + 16 + incl > len(data):
            raise CaptureError(
                f"{path}: truncated: the packet at byte {pos} has {len(data) - pos - 16} of "
                f"its {incl} bytes"
            )
        pos += 16 + incl
    return None


def _check_pcapng(path: Path, data: bytes) -> None:
    pos = 0
    endian = "<"
    while pos < len(data):
        if pos + 12 > len(data):
            raise CaptureError(f"{path}: truncated: a block is cut off at byte {pos}")
        if data[pos : pos + 4] == _PCAPNG_MAGIC:
            endian = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        (length,) = struct.unpack(endian + "I", data[pos + 4 : pos + 8])
        if length < 12 or pos + length > len(data):
            raise CaptureError(f"{path}: truncated: the block at byte {pos} is cut off")
        pos += length


def read_pcap(path: str | Path) -> SipCapture:
    """The SIPREC call in a capture file (see the module docstring)."""
    from scapy.layers.inet import TCP, UDP

    path = Path(path)
    packets = _packets(path)
    sip: list[tuple[float, bytes, tuple[str, int], tuple[str, int]]] = []
    udp_other: list[tuple[float, bytes, tuple[str, int], tuple[str, int]]] = []
    streams: dict[tuple[Any, ...], list[tuple[int, float, bytes]]] = defaultdict(list)
    ignored = 0
    for t, ip in packets:
        if ip.haslayer(UDP):
            udp = ip[UDP]
            payload = bytes(udp.payload)
            ends = ((str(ip.src), int(udp.sport)), (str(ip.dst), int(udp.dport)))
            if _looks_like_sip(payload):
                sip.append((t, payload, *ends))
            else:
                udp_other.append((t, payload, *ends))
        elif ip.haslayer(TCP):
            tcp = ip[TCP]
            payload = bytes(tcp.payload)
            if payload:
                key = (str(ip.src), int(tcp.sport), str(ip.dst), int(tcp.dport))
                streams[key].append((int(tcp.seq), t, payload))
        else:
            ignored += 1
    for key, segments in streams.items():
        messages, other = _tcp_sip(key, segments)
        sip.extend(messages)
        ignored += other
    sip.sort(key=lambda item: item[0])
    return _assemble(path, sip, udp_other, ignored)


def _looks_like_sip(payload: bytes) -> bool:
    head = payload[:16]
    return head.startswith(b"SIP/2.0 ") or (
        b" " in head and head.split(b" ", 1)[0].isalpha() and head.split(b" ", 1)[0].isupper()
    )


def _tcp_sip(
    key: tuple[Any, ...], segments: list[tuple[int, float, bytes]]
) -> tuple[list[tuple[float, bytes, tuple[str, int], tuple[str, int]]], int]:
    """SIP messages of one TCP direction: segments in sequence order (retransmissions
    dropped), framed by Content-Length, each stamped with its first segment's time; and how
    many segments carried no SIP (another protocol on TCP)."""
    src, sport, dst, dport = key
    parser = SipStreamParser()
    seen: set[int] = set()
    out = []
    first: float | None = None
    for seq, t, payload in sorted(segments, key=lambda s: (s[0], s[1])):
        if seq in seen:
            continue
        seen.add(seq)
        first = t if first is None else first
        for item in parser.feed(payload):
            if isinstance(item, SipMessage):
                out.append((t if first is None else first, item.to_bytes(), (src, sport),
                            (dst, dport)))
            first = None if parser.buffered == 0 else t
    return out, (0 if out else len(segments))


def _assemble(
    path: Path,
    sip: list[tuple[float, bytes, tuple[str, int], tuple[str, int]]],
    udp_other: list[tuple[float, bytes, tuple[str, int], tuple[str, int]]],
    ignored: int,
) -> SipCapture:
    invite_at: float | None = None
    sbc: tuple[str, int] | None = None
    offer: SessionDescription | None = None
    answer: SessionDescription | None = None
    requests: list[tuple[float, bytes]] = []
    problems: list[str] = []
    call_id = ""
    for t, data, src, _dst in sip:
        try:
            msg = parse_message(data)
        except SipError as exc:
            problems.append(f"a SIP message at {t:.3f} s could not be parsed: {exc}")
            continue
        if invite_at is None:
            if msg.is_request and msg.method == "INVITE":
                invite_at, sbc, call_id = t, src, msg.call_id
                offer = _sdp_of(msg)
            else:
                ignored += 1  # SIP before the call (OPTIONS pings, another dialog)
                continue
        if msg.call_id != call_id:
            ignored += 1  # another dialog in the same capture
            continue
        if msg.is_request and src == sbc:
            requests.append((t, data))
        elif not msg.is_request and msg.status == 200 and answer is None:
            answer = _sdp_of(msg)
    if invite_at is None or offer is None:
        raise CaptureError(
            f"{path}: no SIP INVITE with an SDP offer in the capture ({len(sip)} SIP "
            "messages): mgsim replays SIPREC calls (INVITE, then the RTP of its m-lines)"
        )
    audio = [m for m in offer.media if m.media == "audio"]
    for i, m in enumerate(audio):
        if m.label is None:
            problems.append(f"m-line {i} (port {m.port}) has no a=label")
    if len(audio) != 2:
        problems.append(f"the INVITE offers {len(audio)} audio m-lines; SIPREC needs two")
    answered = [m for m in answer.media if m.media == "audio"] if answer else []
    if answer is None:
        problems.append("no 200 OK with an SDP answer: RTP is matched by the offer's ports")
    offer_host = _host(offer.connection)
    answer_host = _host(answer.connection) if answer else None
    by_dst = {(_host(m.connection) or answer_host, m.port): i for i, m in enumerate(answered[:2])}
    by_src = {(_host(m.connection) or offer_host, m.port): i for i, m in enumerate(audio[:2])}
    by_src_port = {m.port: i for i, m in enumerate(audio[:2])}
    timed: list[tuple[float, str, bytes]] = [(t, "sip", data) for t, data in requests]
    counts = {"rtp:0": 0, "rtp:1": 0}
    last_seq: dict[int, tuple[int, int]] = {}
    gaps: dict[int, list[int]] = defaultdict(list)
    bad_pt: dict[tuple[int, int], int] = defaultdict(int)
    early = 0
    for t, payload, src, dst in udp_other:
        line = by_dst.get(dst)
        if line is None:
            line = by_src.get(src)
        if line is None and sbc is not None and src[0] == sbc[0]:
            # The SDP names an address the capture does not show (NAT, a media anchor):
            # the SBC sends each m-line's RTP from the port it offered (symmetric RTP).
            line = by_src_port.get(src[1])
        if line is None:
            ignored += 1
            continue
        try:
            packet = unpack(payload)
        except RtpError:
            ignored += 1
            continue
        if t < invite_at:
            early += 1
            continue
        offered = {int(f) for f in audio[line].formats if f.isdigit()}
        if packet.payload_type not in offered:
            bad_pt[(line, packet.payload_type)] += 1
        prev = last_seq.get(line)
        if prev is not None and prev[0] == packet.ssrc:
            step = (packet.sequence - prev[1]) & 0xFFFF
            if 1 < step < 0x8000:
                gaps[line].append(step - 1)
        last_seq[line] = (packet.ssrc, packet.sequence)
        channel = f"rtp:{line}"
        counts[channel] += 1
        timed.append((t, channel, payload))
    for (line, pt), n in sorted(bad_pt.items()):
        problems.append(
            f"m-line {line}: {n} RTP packets with payload type {pt}, which the SDP did not "
            f"offer (offered: {' '.join(audio[line].formats)})"
        )
    for line, missing in sorted(gaps.items()):
        problems.append(
            f"m-line {line}: {len(missing)} gaps in RTP sequence numbers, {sum(missing)} "
            "packets missing"
        )
    if early:
        problems.append(f"{early} RTP packets to the call's ports came before its INVITE")
    for channel, n in counts.items():
        if n == 0 and int(channel[-1]) < len(audio):
            problems.append(f"m-line {channel[-1]} carried no RTP")
    timed.sort(key=lambda item: item[0])
    return SipCapture(_media_clock(timed, invite_at), problems, ignored, len(requests), counts)


def _media_clock(timed: list[tuple[float, str, bytes]], invite_at: float) -> list[Wire]:
    """Wires stamped as the gateway's SIP transport stamps what it receives: the call's
    media clock starts with its first RTP packet and runs on the packet-time grid, so each
    stream is anchored where the live gateway anchored it, however long the SBC waited
    after the INVITE. What came before the first packet (the INVITE, the ACK) keeps its
    distance before it, at negative times, so the call is open before its media starts."""
    rtp_times = [t for t, channel, _ in timed if channel != "sip"]
    origin = rtp_times[0] if rtp_times else invite_at
    wires = []
    for t, channel, data in timed:
        if t < origin:
            at_ms = round((t - origin) * 1000.0, 3)
        else:
            at_ms = float(round((t - origin) * 1000.0 / FRAME_MS) * FRAME_MS)
        wires.append(Wire(at_ms, channel, data))
    return wires


def _host(connection: str | None) -> str | None:
    # c=IN IP4 192.0.2.20
    return connection.split()[-1] if connection else None
