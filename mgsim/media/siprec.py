"""SIPREC (RFC 7866): a recording client (the SBC) and a recording server session.

:func:`encode` plays a stereo call as an SBC does: an INVITE with ``Require: siprec``, a
``+sip.src`` Contact and a ``multipart/mixed`` body (SDP offer of two labelled ``sendonly``
PCMU m-lines plus RFC 7865 metadata), the ACK, 20 ms RTP packets on ``"rtp:0"`` and
``"rtp:1"`` (top and second m-line) interleaved by time, a re-INVITE with ``a=inactive``
and one back to ``sendonly`` around each pause, and a BYE.

:class:`SiprecSession` is the recording server's side of one such dialog: it validates the
INVITE, answers ``recvonly`` on its own ports, turns RTP into
:class:`~mgsim.media._base.AudioChunk` records on channels ``"0"`` and ``"1"`` and reports
pauses, loss, reordering and the end of the call.

The UCID (the ``guid`` of start-streaming, in decimal form) travels where each vendor puts
it: ``generic`` in the metadata's extension data, ``cisco`` in a ``Cisco-Guid`` header,
``avaya`` in ``User-to-User`` (the 8-byte UCID information element, hex encoded) or, when
the id does not fit that layout, an ``X-UCID`` header. The ``avaya`` variant also writes
its metadata with a namespace prefix, bare ``<name>`` elements and no
``participantstreamassoc``, so the server must fall back to label order.

>>> import numpy as np
>>> from mgsim.media._base import StereoCall
>>> tone = (np.sin(np.arange(800) / 5) * 8000).astype(np.int16)
>>> session = SiprecSession()
>>> events = [e for w in encode(StereoCall(tone, tone // 2), guid="00002542391662063156",
...                             vendor="avaya") for e in session.feed(w)]
>>> opened = next(e for e in events if isinstance(e, SessionOpened))
>>> (opened.guid, opened.info["vendor"], session.state)
('00002542391662063156', 'avaya', 'closing')
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.media._base import (
    Anomaly,
    Event,
    Reply,
    SessionClosed,
    SessionOpened,
    SessionPaused,
    SessionResumed,
    StereoCall,
    Wire,
)
from mgsim.media.g711 import ulaw_encode
from mgsim.media.rsmetadata import (
    CONTENT_TYPE as METADATA_TYPE,
)
from mgsim.media.rsmetadata import (
    Participant,
    RecordingMetadata,
    Stream,
    build_metadata,
    parse_metadata,
)
from mgsim.media.rtp import RtpError, RtpReceiver
from mgsim.media.sdp import build_answer, build_offer, check_recording_offer, parse_sdp
from mgsim.media.sip import (
    MAX_MESSAGE,
    BodyPart,
    SipError,
    SipMessage,
    build_multipart,
    header_param,
    parse_content_type,
    parse_message,
    parse_multipart,
    response_to,
)

__all__ = [
    "CHANNELS",
    "MediaLineOrder",
    "SiprecSession",
    "Vendor",
    "encode",
    "server_tag",
    "ucid_from_uui",
    "ucid_to_uui",
]

MediaLineOrder = Literal["CUSTOMER_FIRST", "AGENT_FIRST"]
Vendor = Literal["generic", "cisco", "avaya"]
SessionState = Literal["idle", "active", "paused", "closing", "closed"]

CHANNELS = ("0", "1")
"""Participant channels of a SIPREC session: the top and the second audio m-line."""

FRAME_SAMPLES = 160
FRAME_MS = 20
SRC_HOST = "192.0.2.10"
SRS_HOST = "192.0.2.20"
SRC_PORTS = (20000, 20002)
LABELS = ("1", "2")
_ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
_ACCEPT = f"application/sdp, {METADATA_TYPE}, multipart/mixed"
_UUI_UCID = "FA08"  # UCID information element: tag 0xFA, 8 bytes long


def server_tag(call_id: str) -> str:
    """The To tag the recording server puts on its dialog.

    It is derived from the Call-ID so a scripted client can send in-dialog requests (ACK,
    re-INVITE, BYE) without reading the 200 OK first.
    """
    return hashlib.sha1(call_id.encode("utf-8", "replace")).hexdigest()[:12]


def ucid_to_uui(ucid: str) -> str | None:
    """The hex ``User-to-User`` value carrying a 20-digit decimal Avaya UCID, or None when
    the id does not have that layout (5-digit node, 5-digit sequence, 10-digit time).

    >>> ucid_to_uui("00025000160955721139")
    '00FA080019001038F725B3;encoding=hex'
    """
    if len(ucid) != 20 or not ucid.isdigit() or not ucid.isascii():
        return None
    node, seq, stamp = int(ucid[:5]), int(ucid[5:10]), int(ucid[10:])
    if node > 0xFFFF or seq > 0xFFFF or stamp > 0xFFFFFFFF:
        return None
    return f"00{_UUI_UCID}{node:04X}{seq:04X}{stamp:08X};encoding=hex"


def ucid_from_uui(value: str) -> str | None:
    """The decimal UCID in a hex ``User-to-User`` value (with or without the protocol
    discriminator byte), or None when there is none.

    >>> ucid_from_uui("00FA080019001038F725B3;encoding=hex")
    '00025000160955721139'
    """
    hexdigits = value.split(";", 1)[0].strip().upper()
    for start in (2, 0):
        if hexdigits[start : start + 4] == _UUI_UCID:
            body = hexdigits[start + 4 : start + 20]
            if len(body) == 16 and all(c in "0123456789ABCDEF" for c in body):
                node, seq, stamp = int(body[:4], 16), int(body[4:8], 16), int(body[8:], 16)
                return f"{node:05d}{seq:05d}{stamp:010d}"
    return None


def encode(
    call: StereoCall,
    *,
    guid: str,
    media_line_order: MediaLineOrder = "CUSTOMER_FIRST",
    vendor: Vendor = "generic",
    seed: int = 0,
    pauses: Sequence[tuple[float, float]] = (),
    loss: float = 0.0,
    reorder: float = 0.0,
) -> Iterator[Wire]:
    """Play ``call`` as an SBC recording it over SIPREC.

    ``media_line_order`` says who is on the top m-line (``"rtp:0"``); ``seed`` fixes the
    random sequence, timestamp and SSRC starts, the loss and the reordering; ``pauses`` are
    ``(start_s, end_s)`` windows of media time without RTP, bracketed by re-INVITEs
    (rounded to 20 ms frames); ``loss`` drops each packet with that probability (its
    sequence number is still used); ``reorder`` delivers a packet after the next one of its
    stream. ``at_ms`` of a packet is the media time of its first sample.

    >>> call = StereoCall(np.zeros(320, np.int16), np.zeros(320, np.int16))
    >>> [w.channel for w in encode(call, guid="1")]
    ['sip', 'sip', 'rtp:0', 'rtp:1', 'rtp:0', 'rtp:1', 'sip']
    """
    if media_line_order not in ("CUSTOMER_FIRST", "AGENT_FIRST"):
        raise ConfigError(f"unknown media_line_order {media_line_order!r}")
    if vendor not in ("generic", "cisco", "avaya"):
        raise ConfigError(f"unknown vendor {vendor!r}")
    if not guid or not guid.isascii() or not guid.isprintable() or " " in guid:
        raise ConfigError(f"guid must be printable ASCII without spaces, got {guid!r}")
    if not (0.0 <= loss < 1.0 and 0.0 <= reorder < 1.0):
        raise ConfigError("loss and reorder must be probabilities in [0, 1)")
    n_frames = math.ceil(call.n_samples / FRAME_SAMPLES)
    windows = _pause_frames(pauses, n_frames)
    rng = np.random.default_rng(seed)
    seq0 = [int(x) for x in rng.integers(0, 1 << 16, 2)]
    ts0 = [int(x) for x in rng.integers(0, 1 << 32, 2, dtype=np.uint64)]
    ssrc = [int(x) for x in rng.integers(1, 1 << 32, 2, dtype=np.uint64)]
    lost = rng.random((2, n_frames)) < loss
    late = rng.random((2, n_frames)) < reorder
    ids = [base64.b64encode(rng.bytes(16)).decode() for _ in range(6)]
    dialog = _Dialog(guid, vendor, rng.bytes(8).hex())

    first, second = (
        (call.customer, call.agent)
        if media_line_order == "CUSTOMER_FIRST"
        else (call.agent, call.customer)
    )
    roles = ("customer", "agent") if media_line_order == "CUSTOMER_FIRST" else ("agent", "customer")
    yield Wire(0.0, "sip", dialog.invite(_metadata(roles, ids, guid, vendor)))
    yield Wire(0.0, "sip", dialog.ack())

    segments = _segments(windows, n_frames)
    active = np.concatenate([np.arange(a, b) for a, b in segments] + [np.arange(0)])
    talkspurt = np.zeros(len(active), dtype=bool)
    # The first packet of each run of audio carries the marker bit (RFC 3551 section 4.1).
    offsets = np.cumsum([0] + [b - a for a, b in segments])
    talkspurt[offsets[:-1][offsets[:-1] < offsets[1:]]] = True
    packets = [
        _rtp_packets(pcm, n_frames, active, talkspurt, seq0[m], ts0[m], ssrc[m])
        for m, pcm in enumerate((first, second))
    ]
    lost_at = lost[:, : len(active)].tolist()
    late_at = late[:, : len(active)].tolist()
    held: list[Wire | None] = [None, None]
    i = 0
    for j, (a, b) in enumerate(segments):
        if j > 0 and a < n_frames:
            yield Wire(float(a * FRAME_MS), "sip", dialog.reinvite("sendonly"))
            yield Wire(float(a * FRAME_MS), "sip", dialog.ack())
        for k in range(a, b):
            at = float(k * FRAME_MS)
            for m, channel in ((0, "rtp:0"), (1, "rtp:1")):
                if lost_at[m][i]:
                    continue
                wire = Wire(at, channel, packets[m][i])
                before = held[m]
                if before is not None:
                    yield wire
                    yield Wire(at, channel, before.data)
                    held[m] = None
                elif late_at[m][i]:
                    held[m] = wire
                else:
                    yield wire
            i += 1
        if j < len(windows):
            yield from _release(held, float(b * FRAME_MS))
            yield Wire(float(b * FRAME_MS), "sip", dialog.reinvite("inactive"))
            yield Wire(float(b * FRAME_MS), "sip", dialog.ack())
    end_ms = float(n_frames * FRAME_MS)
    yield from _release(held, end_ms)
    yield Wire(end_ms, "sip", dialog.bye())


def _release(held: list[Wire | None], at_ms: float) -> Iterator[Wire]:
    for m, wire in enumerate(held):
        if wire is not None:
            yield Wire(at_ms, wire.channel, wire.data)
            held[m] = None


def _segments(windows: list[tuple[int, int]], n_frames: int) -> list[tuple[int, int]]:
    """The ``[first, end)`` frame ranges between pause windows (possibly empty)."""
    out: list[tuple[int, int]] = []
    previous = 0
    for start, end in windows:
        out.append((previous, start))
        previous = end
    out.append((previous, n_frames))
    return out


def _rtp_packets(
    pcm: npt.NDArray[np.int16],
    n_frames: int,
    frames: npt.NDArray[np.int64],
    marker: npt.NDArray[np.bool_],
    seq0: int,
    ts0: int,
    ssrc: int,
) -> list[bytes]:
    """Every RTP packet of one stream, built as one array (one row per sent frame).

    Sequence numbers count sent frames (a lost packet still uses its number); timestamps
    follow the media clock, so they jump over a pause.
    """
    padded = np.zeros(n_frames * FRAME_SAMPLES, dtype=np.int16)
    padded[: len(pcm)] = pcm
    payload = np.frombuffer(ulaw_encode(padded), dtype=np.uint8).reshape(n_frames, FRAME_SAMPLES)
    count = len(frames)
    rows = np.empty((count, 12 + FRAME_SAMPLES), dtype=np.uint8)
    rows[:, 0] = 0x80
    rows[:, 1] = np.where(marker, 0x80, 0)
    seq = (seq0 + np.arange(count, dtype=np.int64)) & 0xFFFF
    rows[:, 2:4] = seq.astype(">u2").view(np.uint8).reshape(count, 2)
    stamps = (ts0 + frames.astype(np.int64) * FRAME_SAMPLES) & 0xFFFFFFFF
    rows[:, 4:8] = stamps.astype(">u4").view(np.uint8).reshape(count, 4)
    rows[:, 8:12] = np.frombuffer(struct.pack(">I", ssrc), dtype=np.uint8)
    rows[:, 12:] = payload[frames]
    blob = rows.tobytes()
    size = rows.shape[1]
    return [blob[n * size : (n + 1) * size] for n in range(count)]


def _pause_frames(pauses: Sequence[tuple[float, float]], n_frames: int) -> list[tuple[int, int]]:
    """Pause windows as merged ``[first, end)`` frame ranges within the call."""
    frames: list[tuple[int, int]] = []
    for start_s, end_s in sorted(pauses):
        if not 0 <= start_s < end_s:
            raise ConfigError(f"pause window ({start_s}, {end_s}) must satisfy 0 <= start < end")
        first = math.ceil(round(start_s * 1000 / FRAME_MS, 6))
        end = min(n_frames, math.ceil(round(end_s * 1000 / FRAME_MS, 6)))
        if end <= first:
            continue
        if frames and first <= frames[-1][1]:
            frames[-1] = (frames[-1][0], max(end, frames[-1][1]))
        else:
            frames.append((first, end))
    return frames


def _metadata(roles: tuple[str, str], ids: list[str], guid: str, vendor: Vendor) -> bytes:
    session_id, p0, p1, s0, s1, _ = ids
    aors = {
        "customer": ("sip:+15550100001@carrier.example", "Customer"),
        "agent": ("sip:agent@contact-center.example", "Agent"),
    }
    meta = RecordingMetadata(
        session_id=session_id,
        participants=(Participant(p0, *aors[roles[0]]), Participant(p1, *aors[roles[1]])),
        streams=(Stream(s0, LABELS[0], session_id), Stream(s1, LABELS[1], session_id)),
        associations=None if vendor == "avaya" else {p0: (s0,), p1: (s1,)},
        ucid=guid if vendor == "generic" else None,
    )
    if vendor == "avaya":
        return build_metadata(meta, prefix="rec", names="name")
    return build_metadata(meta)


class _Dialog:
    """The recording client's side of the SIP dialog: builds each request in turn."""

    def __init__(self, guid: str, vendor: Vendor, token: str) -> None:
        self.guid = guid
        self.vendor = vendor
        self.call_id = f"{token}@{SRC_HOST}"
        self.from_tag = token[:8]
        self.to_tag = server_tag(self.call_id)
        self.cseq = 0
        self.sdp_version = 1

    def _headers(self, method: str, in_dialog: bool) -> list[tuple[str, str]]:
        to = f"<sip:srs@{SRS_HOST}>" + (f";tag={self.to_tag}" if in_dialog else "")
        return [
            ("Via", f"SIP/2.0/UDP {SRC_HOST}:5060;branch=z9hG4bK{self.call_id[:8]}{self.cseq}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:src@{SRC_HOST}>;tag={self.from_tag}"),
            ("To", to),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} {method}"),
        ]

    def invite(self, metadata: bytes) -> bytes:
        self.cseq += 1
        headers = self._headers("INVITE", in_dialog=False)
        headers += [
            ("Contact", f"<sip:src@{SRC_HOST}:5060>;+sip.src"),
            ("Require", "siprec"),
            ("Accept", _ACCEPT),
            ("Allow", _ALLOW),
            ("User-Agent", f"mgsim-src/1 ({self.vendor})"),
        ]
        if self.vendor == "cisco":
            headers.append(("Cisco-Guid", self.guid))
        elif self.vendor == "avaya":
            uui = ucid_to_uui(self.guid)
            headers.append(("User-to-User", uui) if uui else ("X-UCID", self.guid))
        sdp = build_offer(address=SRC_HOST, ports=SRC_PORTS, labels=LABELS).to_bytes()
        content_type, body = build_multipart(
            [
                BodyPart("application/sdp", sdp),
                BodyPart(METADATA_TYPE, metadata, (("Content-Disposition", "recording-session"),)),
            ],
            boundary=f"mgsim-{self.from_tag}",
        )
        headers.append(("Content-Type", content_type))
        return SipMessage.request("INVITE", f"sip:srs@{SRS_HOST}", headers, body).to_bytes()

    def reinvite(self, direction: str) -> bytes:
        self.cseq += 1
        self.sdp_version += 1
        headers = self._headers("INVITE", in_dialog=True)
        headers += [
            ("Contact", f"<sip:src@{SRC_HOST}:5060>;+sip.src"),
            ("Require", "siprec"),
            ("Content-Type", "application/sdp"),
        ]
        sdp = build_offer(
            address=SRC_HOST,
            ports=SRC_PORTS,
            labels=LABELS,
            direction=direction,
            version=self.sdp_version,
        ).to_bytes()
        return SipMessage.request("INVITE", f"sip:srs@{SRS_HOST}", headers, sdp).to_bytes()

    def ack(self) -> bytes:
        headers = self._headers("ACK", in_dialog=True)
        return SipMessage.request("ACK", f"sip:srs@{SRS_HOST}", headers).to_bytes()

    def bye(self) -> bytes:
        self.cseq += 1
        headers = self._headers("BYE", in_dialog=True)
        return SipMessage.request("BYE", f"sip:srs@{SRS_HOST}", headers).to_bytes()


class SiprecSession:
    """The recording server's side of one SIPREC dialog (a push decoder).

    ``ports`` are the two RTP ports put in the SDP answer (a real transport binds them
    first), ``address`` the answer's connection address. :meth:`feed` takes
    :class:`~mgsim.media._base.Wire` messages on ``"sip"``, ``"rtp:0"`` and ``"rtp:1"``;
    it raises :class:`~mgsim.media.sip.SipError` (with ``sip_status`` and
    ``to_response()``) or :class:`~mgsim.media.rtp.RtpError` for a message it refuses,
    counts them in :attr:`errors` and keeps going. ``state`` is ``idle`` → ``active`` ⇄
    ``paused`` → ``closing`` (BYE received, :attr:`bye_in_progress`) → ``closed``
    (after :meth:`close`).
    """

    def __init__(
        self,
        *,
        ports: tuple[int, int] = (40000, 40002),
        address: str = "127.0.0.1",
        max_message: int = MAX_MESSAGE,
        reorder_window: int = 64,
    ) -> None:
        self.ports = ports
        self.address = address
        self.max_message = max_message
        self.reorder_window = reorder_window
        self.state: SessionState = "idle"
        self.guid: str | None = None
        self.call_id: str | None = None
        self.info: dict[str, Any] = {}
        self.errors: Counter[str] = Counter()
        self._tag = ""
        self._sdp_version = 0
        self._receivers: dict[str, RtpReceiver] = {}
        self._flushed = False

    @property
    def bye_in_progress(self) -> bool:
        """True from the BYE until :meth:`close`: the control plane answers 409-203 then."""
        return self.state == "closing"

    def stats(self) -> dict[str, dict[str, int]]:
        """Per channel packet counters: received, lost, reordered, duplicates, late."""
        return {
            rx.channel: {
                "received": rx.received,
                "lost": rx.lost,
                "reordered": rx.reordered,
                "duplicates": rx.duplicates,
                "late": rx.late,
            }
            for rx in self._receivers.values()
        }

    def feed(self, message: Wire) -> list[Event]:
        """Take one message; return what it produced (see the class docstring)."""
        rx = self._receivers.get(message.channel)
        if rx is not None and self.state == "active":
            data = message.data
            try:
                if type(data) is not bytes:
                    if not isinstance(data, bytearray | memoryview):
                        raise RtpError("RTP data must be bytes", reason="bad-length")
                    data = bytes(data)
                return rx.push(data, round(message.at_ms * 8))
            except RtpError as exc:
                self.errors[exc.reason] += 1
                raise
        if message.channel == "sip":
            return self._feed_sip(message)
        if rx is not None and self.state == "paused":
            return [Anomaly("inactive", "RTP while the recording is paused", rx.channel)]
        if message.channel.startswith("rtp:"):
            self.errors["no-session"] += 1
            raise RtpError(f"RTP on {message.channel} outside an open session", reason="no-session")
        raise ConfigError(f"unknown channel {message.channel!r}")

    def close(self) -> list[Event]:
        """End the session: declare outstanding gaps lost and, when no BYE came, report
        ``SessionClosed("closed")``."""
        events = self._flush()
        if self.state in ("active", "paused"):
            events.append(SessionClosed("closed"))
        self.state = "closed"
        return events

    def _flush(self) -> list[Event]:
        if self._flushed:
            return []
        self._flushed = True
        events: list[Event] = []
        for rx in self._receivers.values():
            events.extend(rx.flush())
        return events

    def _feed_sip(self, message: Wire) -> list[Event]:
        raw = message.data.encode() if isinstance(message.data, str) else message.data
        msg: SipMessage | None = None
        try:
            msg = parse_message(raw, max_size=self.max_message)
            return self._handle(msg, round(message.at_ms * 8))
        except SipError as exc:
            if exc.request is None:
                exc.request = msg
            self.errors[f"sip-{exc.sip_status}"] += 1
            raise

    def _handle(self, msg: SipMessage, at_sample: int) -> list[Event]:
        if not msg.is_request:
            return [Anomaly("unexpected-response", msg.start_line)]
        method = msg.method
        same_dialog = self.call_id is not None and msg.call_id == self.call_id
        if method == "ACK":
            return [] if same_dialog else [Anomaly("stray-ack", msg.call_id)]
        if method == "OPTIONS":
            headers = [("Allow", _ALLOW), ("Accept", _ACCEPT), ("Supported", "siprec")]
            return [Reply("sip", response_to(msg, 200, headers=headers).to_bytes())]
        if method == "INVITE" and self.state == "idle":
            return self._open(msg)
        if method not in ("INVITE", "BYE", "CANCEL"):
            raise SipError(
                f"{method} is not supported",
                sip_status=405,
                reason="bad-method",
                headers=[("Allow", _ALLOW)],
            )
        if not same_dialog or self.state not in ("active", "paused") or method == "CANCEL":
            if method == "INVITE" and not same_dialog and self.state in ("active", "paused"):
                raise SipError("the session already records a call", sip_status=486, reason="busy")
            raise SipError(f"no dialog for {method}", sip_status=481, reason="no-dialog")
        to_tag = header_param(msg.get("To") or "", "tag")
        if to_tag is not None and to_tag != self._tag:
            raise SipError(f"To tag {to_tag!r} is not ours", sip_status=481, reason="no-dialog")
        if method == "BYE":
            events = self._flush()
            self.state = "closing"
            events.append(Reply("sip", self._ok(msg).to_bytes()))
            events.append(SessionClosed("bye"))
            return events
        return self._reinvite(msg, at_sample)

    def _ok(self, msg: SipMessage, sdp: bytes | None = None) -> SipMessage:
        headers = [("Contact", f"<sip:srs@{self.address}>")]
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
        return response_to(msg, 200, to_tag=self._tag, headers=headers, body=sdp or b"")

    def _open(self, msg: SipMessage) -> list[Event]:
        if "siprec" not in msg.tokens("Require"):
            raise SipError("INVITE without Require: siprec", sip_status=420, reason="no-siprec")
        media_type, _ = parse_content_type(msg.get("Content-Type") or "")
        if media_type != "multipart/mixed":
            raise SipError(
                f"INVITE body is {media_type or 'missing'}, expected multipart/mixed",
                sip_status=415,
                reason="not-multipart",
                headers=[("Accept", _ACCEPT)],
            )
        parts = parse_multipart(msg.get("Content-Type") or "", msg.body)
        by_type = {parse_content_type(p.content_type)[0]: p.body for p in parts}
        if "application/sdp" not in by_type:
            raise SipError(
                "multipart body without application/sdp",
                sip_status=415,
                reason="no-sdp",
                headers=[("Accept", _ACCEPT)],
            )
        offer = parse_sdp(by_type["application/sdp"])
        top, second = check_recording_offer(offer)
        raw_meta = by_type.get(METADATA_TYPE, by_type.get("application/rs-metadata"))
        meta = parse_metadata(raw_meta) if raw_meta is not None else None
        self.call_id = msg.call_id
        self._tag = server_tag(self.call_id)
        self._sdp_version = 1
        answer = build_answer(offer, address=self.address, ports=self.ports)
        self.guid, vendor, source = _find_ucid(msg, meta)
        self.info = _session_info(msg, meta, (top.label, second.label), vendor, source)
        self.info["offer_ports"] = (top.port, second.port)
        self.info["answer_ports"] = self.ports
        self._receivers = {
            f"rtp:{i}": RtpReceiver(ch, reorder_window=self.reorder_window)
            for i, ch in enumerate(CHANNELS)
        }
        paused = top.direction == second.direction == "inactive"
        self.state = "paused" if paused else "active"
        events: list[Event] = [
            Reply("sip", self._ok(msg, answer.to_bytes()).to_bytes()),
            SessionOpened(self.guid, CHANNELS, self.info),
        ]
        if paused:
            events.append(SessionPaused(0))
        return events

    def _reinvite(self, msg: SipMessage, at_sample: int) -> list[Event]:
        media_type, _ = parse_content_type(msg.get("Content-Type") or "")
        body = msg.body
        if media_type.startswith("multipart/"):
            parts = parse_multipart(msg.get("Content-Type") or "", body)
            sdp_parts = [
                p.body for p in parts if p.content_type.lower().startswith("application/sdp")
            ]
            body = sdp_parts[0] if sdp_parts else b""
        elif media_type != "application/sdp" and body:
            raise SipError(
                f"re-INVITE body is {media_type}",
                sip_status=415,
                reason="not-sdp",
                headers=[("Accept", _ACCEPT)],
            )
        if not body:
            return [Reply("sip", self._ok(msg).to_bytes())]
        offer = parse_sdp(body)
        top, second = check_recording_offer(offer)
        self._sdp_version += 1
        answer = build_answer(
            offer, address=self.address, ports=self.ports, version=self._sdp_version
        )
        events: list[Event] = [Reply("sip", self._ok(msg, answer.to_bytes()).to_bytes())]
        inactive = top.direction == second.direction == "inactive"
        if inactive and self.state == "active":
            self.state = "paused"
            events.append(SessionPaused(at_sample))
        elif not inactive and self.state == "paused":
            self.state = "active"
            events.append(SessionResumed(at_sample))
        return events


def _find_ucid(msg: SipMessage, meta: RecordingMetadata | None) -> tuple[str, str, str]:
    """``(guid, vendor, where)``: the UCID from the places each vendor uses, else Call-ID."""
    cisco = msg.get("Cisco-Guid")
    if cisco:
        return cisco.strip(), "cisco", "Cisco-Guid"
    for uui in msg.get_all("User-to-User"):
        ucid = ucid_from_uui(uui)
        if ucid is not None:
            return ucid, "avaya", "User-to-User"
    x_ucid = msg.get("X-UCID")
    if x_ucid:
        return x_ucid.strip(), "avaya", "X-UCID"
    if meta is not None and meta.ucid:
        return ucid_from_uui(meta.ucid) or meta.ucid, "generic", "metadata"
    return msg.call_id, "unknown", "Call-ID"


def _session_info(
    msg: SipMessage,
    meta: RecordingMetadata | None,
    labels: tuple[str | None, str | None],
    vendor: str,
    source: str,
) -> dict[str, Any]:
    contact = msg.get("Contact") or ""
    info: dict[str, Any] = {
        "call_id": msg.call_id,
        "vendor": vendor,
        "guid_source": source,
        "labels": labels,
        "src_feature": "+sip.src" in contact,
        "participants": [],
        "associations": None,
        "channel_participants": {ch: None for ch in CHANNELS},
        "metadata": dict(meta.found) if meta is not None else {"present": "no"},
    }
    if meta is None:
        return info
    label_map = meta.label_map()
    label_of = {s.stream_id: s.label for s in meta.streams}
    info["participants"] = [
        {
            "participant_id": p.participant_id,
            "name": p.name,
            "aor": p.aor,
            "labels": [lab for lab, pid in label_map.items() if pid == p.participant_id],
        }
        for p in meta.participants
    ]
    if meta.associations is not None:
        info["associations"] = {
            pid: [label_of.get(sid, sid) for sid in sids] for pid, sids in meta.associations.items()
        }
    info["channel_participants"] = {
        ch: label_map.get(label) if label is not None else None
        for ch, label in zip(CHANNELS, labels, strict=True)
    }
    return info
