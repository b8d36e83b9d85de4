"""SIPREC (RFC 7866): a recording client (the SBC) and a recording server session.

:func:`encode` plays a stereo call as an SBC does: an INVITE with ``Require: siprec``, a
``+sip.src`` Contact and a ``multipart/mixed`` body (SDP offer of two labelled ``sendonly``
PCMU m-lines plus RFC 7865 metadata), the ACK, 20 ms RTP packets on ``"rtp:0"`` and
``"rtp:1"`` (top and second m-line) interleaved by time, a re-INVITE with ``a=inactive``
and one back to ``sendonly`` around each pause, and a BYE.

:class:`SiprecSession` (from :mod:`mgsim.media.siprec_server`) is the recording server's
side of one such dialog: it validates the INVITE, answers ``recvonly`` on its own ports,
turns RTP into :class:`~mgsim.media._base.AudioChunk` records on channels ``"0"`` and
``"1"`` and reports pauses, loss, reordering and the end of the call.

The UCID (the ``guid`` of start-streaming, in decimal form) travels where each vendor puts
it: ``generic`` in the metadata's extension data, ``cisco`` in a ``Cisco-Guid`` header,
``avaya`` in ``User-to-User`` (the 8-byte UCID information element, hex encoded) or, when
the id does not fit that layout, an ``X-UCID`` header. The ``avaya`` variant also writes
its metadata with a namespace prefix, bare ``<name>`` elements and no
``participantstreamassoc``, so the server must fall back to label order.

>>> import numpy as np
>>> from mgsim.media._base import SessionOpened, StereoCall
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
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.media._base import StereoCall, Wire
from mgsim.media.g711 import ulaw_encode
from mgsim.media.rsmetadata import CONTENT_TYPE as METADATA_TYPE
from mgsim.media.rsmetadata import Participant, RecordingMetadata, Stream, build_metadata
from mgsim.media.sdp import build_offer
from mgsim.media.sip import BodyPart, SipMessage, build_multipart
from mgsim.media.sip import local_tag as server_tag
from mgsim.media.siprec_server import ACCEPT as _ACCEPT
from mgsim.media.siprec_server import ALLOW as _ALLOW
from mgsim.media.siprec_server import CHANNELS, SiprecSession
from mgsim.media.siprec_ucid import ucid_from_uui, ucid_to_uui

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

FRAME_SAMPLES = 160
FRAME_MS = 20
SRC_HOST = "192.0.2.10"
SRS_HOST = "192.0.2.20"
SRC_PORTS = (20000, 20002)
LABELS = ("1", "2")


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
