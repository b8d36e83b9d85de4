"""SDP (RFC 4566) for SIPREC: an offer of two labelled audio m-lines and its answer.

A recording client offers one ``sendonly`` audio m-line per participant, each with
``a=label:N`` (RFC 4574) so the recording metadata can name it; the recording server answers
``recvonly`` on its own ports, one answer m-line per offered one, in the same order. A
re-offer with ``a=inactive`` pauses the recording.

>>> offer = build_offer(address="10.0.0.1", ports=(20000, 20002), labels=("1", "2"))
>>> [(m.port, m.label, m.direction) for m in parse_sdp(offer.to_bytes()).media]
[(20000, '1', 'sendonly'), (20002, '2', 'sendonly')]
>>> [m.direction for m in build_answer(offer, address="10.0.0.9", ports=(30000, 30002)).media]
['recvonly', 'recvonly']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mgsim.errors import ConfigError
from mgsim.media.sip import SipError

__all__ = [
    "DIRECTIONS",
    "MediaDescription",
    "SessionDescription",
    "build_answer",
    "build_offer",
    "check_recording_offer",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
"""The four media direction attributes (RFC 4566 section 6)."""

_PCMU = 0
_ANSWER_DIRECTION = {
    "sendonly": "recvonly",
    "sendrecv": "recvonly",
    "recvonly": "inactive",
    "inactive": "inactive",
}


@dataclass(slots=True)
class MediaDescription:
    """One ``m=`` line with its ``c=`` and ``a=`` lines.

    ``attributes`` holds ``(name, value)`` pairs in order; flag attributes such as
    ``a=sendonly`` have the value None.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    connection: str | None = None
    session_direction: str = "sendrecv"

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value`` (``""`` for a flag), or None if absent."""
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    @property
    def label(self) -> str | None:
        return self.attribute("label")

    @property
    def direction(self) -> str:
        """The m-line's direction, else the session-level one, else ``sendrecv``."""
        for key, value in self.attributes:
            if value is None and key in DIRECTIONS:
                return key
        return self.session_direction

    def rtpmap(self) -> dict[int, str]:
        """``a=rtpmap`` entries as ``{payload_type: "PCMU/8000"}``."""
        out: dict[int, str] = {}
        for key, value in self.attributes:
            if key == "rtpmap" and value:
                pt, _, encoding = value.partition(" ")
                if pt.isascii() and pt.isdigit():
                    out[int(pt)] = encoding.strip()
        return out

    @property
    def offers_pcmu(self) -> bool:
        """True when PCMU is among the formats (static type 0 or a PCMU/8000 rtpmap)."""
        return self.pcmu_payload_type is not None

    @property
    def pcmu_payload_type(self) -> int | None:
        """The payload type the m-line offers PCMU as (0, or a dynamic type mapped to
        PCMU/8000 by ``a=rtpmap``), the first if several; None without PCMU."""
        mapping = self.rtpmap()
        for fmt in self.formats:
            if not (fmt.isascii() and fmt.isdigit()):
                continue
            encoding = mapping.get(int(fmt))
            if encoding is None and int(fmt) == _PCMU:
                return _PCMU
            if encoding is not None and encoding.upper().startswith("PCMU/8000"):
                return int(fmt)
        return None

    def lines(self) -> list[str]:
        out = [f"m={self.media} {self.port} {self.proto} {' '.join(self.formats)}"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        return out


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body: session-level lines and the media descriptions."""

    origin: str
    name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def to_text(self) -> str:
        lines = ["v=0", f"o={self.origin}", f"s={self.name}"]
        if self.connection is not None:
            lines.append(f"c={self.connection}")
        lines.append(f"t={self.timing}")
        lines.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        for m in self.media:
            lines.extend(m.lines())
        return "\r\n".join(lines) + "\r\n"

    def to_bytes(self) -> bytes:
        return self.to_text().encode()


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body; anything malformed raises :class:`SipError` (400, ``bad-sdp``)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad("SDP is not UTF-8") from exc
    else:
        text = data
    sdp: SessionDescription | None = None
    current: MediaDescription | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise _bad(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if sdp is None:
            if kind != "v" or value.strip() != "0":
                raise _bad("SDP must start with v=0")
            sdp = SessionDescription(origin="")
            continue
        if kind == "m":
            current = _parse_m_line(value, _session_direction(sdp))
            sdp.media.append(current)
        elif kind == "a":
            name, sep, attr_value = value.partition(":")
            pair = (name, attr_value if sep else None)
            (current.attributes if current is not None else sdp.attributes).append(pair)
        elif kind == "c":
            if current is None:
                sdp.connection = value
            else:
                current.connection = value
        elif current is None and kind in "ost":
            if kind == "o":
                sdp.origin = value
            elif kind == "s":
                sdp.name = value
            else:
                sdp.timing = value
    if sdp is None:
        raise _bad("empty SDP")
    if not sdp.origin:
        raise _bad("SDP without o= line")
    return sdp


def build_offer(
    *,
    address: str,
    ports: Sequence[int],
    labels: Sequence[str],
    direction: str = "sendonly",
    session_id: int = 1,
    version: int = 1,
) -> SessionDescription:
    """A recording client's offer: one PCMU audio m-line per port, labelled in order."""
    if len(ports) != len(labels) or direction not in DIRECTIONS:
        raise ConfigError("need one label per port and a valid direction")
    media = [
        MediaDescription(
            "audio",
            port,
            "RTP/AVP",
            ("0",),
            [("label", label), ("rtpmap", "0 PCMU/8000"), ("ptime", "20"), (direction, None)],
        )
        for port, label in zip(ports, labels, strict=True)
    ]
    return SessionDescription(
        origin=f"mgsim-src {session_id} {version} IN IP4 {address}",
        name="SIPREC",
        connection=f"IN IP4 {address}",
        media=media,
    )


def build_answer(
    offer: SessionDescription,
    *,
    address: str,
    ports: Sequence[int],
    session_id: int = 1,
    version: int = 1,
) -> SessionDescription:
    """The recording server's answer: PCMU on each offered audio m-line, as the payload
    type the offer gave it (an answer lists formats of the offer, RFC 3264 6.1), ``recvonly``
    (``inactive`` when the offer is inactive). Lines beyond ``ports`` or without PCMU are
    refused with port 0, as RFC 3264 requires."""
    media: list[MediaDescription] = []
    audio_index = 0
    for m in offer.media:
        usable = m.media == "audio" and m.offers_pcmu and audio_index < len(ports)
        attrs: list[tuple[str, str | None]] = []
        if m.label is not None:
            attrs.append(("label", m.label))
        if usable:
            port = ports[audio_index]
            audio_index += 1
            pt = m.pcmu_payload_type
            attrs += [("rtpmap", f"{pt} PCMU/8000"), ("ptime", "20")]
            attrs.append((_ANSWER_DIRECTION[m.direction], None))
            media.append(MediaDescription("audio", port, m.proto, (str(pt),), attrs))
        else:
            media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1] or ("0",), attrs))
    return SessionDescription(
        origin=f"mgsim-srs {session_id} {version} IN IP4 {address}",
        name="SIPREC",
        connection=f"IN IP4 {address}",
        timing=offer.timing,  # RFC 3264 6: the answer's t= equals the offer's
        media=media,
    )


def check_recording_offer(sdp: SessionDescription) -> tuple[MediaDescription, MediaDescription]:
    """The two audio m-lines of a SIPREC offer, or :class:`SipError` 488 when there are not
    exactly two (with a non-zero port) or one of them does not offer PCMU."""
    audio = [m for m in sdp.media if m.media == "audio" and m.port != 0]
    if len(audio) != 2:
        raise SipError(
            f"expected two audio m-lines, got {len(audio)}",
            sip_status=488,
            reason="not-two-audio",
        )
    for index, m in enumerate(audio):
        if not m.offers_pcmu:
            raise SipError(
                f"audio m-line {index} does not offer PCMU", sip_status=488, reason="no-pcmu"
            )
    return audio[0], audio[1]


def _session_direction(sdp: SessionDescription) -> str:
    for key, value in sdp.attributes:
        if value is None and key in DIRECTIONS:
            return key
    return "sendrecv"


def _parse_m_line(value: str, session_direction: str) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise _bad(f"bad m= line {value[:40]!r}")
    port_text = parts[1].split("/", 1)[0]
    if not port_text.isdigit() or not port_text.isascii() or int(port_text) > 65535:
        raise _bad(f"bad m= port {parts[1][:20]!r}")
    return MediaDescription(
        parts[0],
        int(port_text),
        parts[2],
        tuple(parts[3:]),
        session_direction=session_direction,
    )


def _bad(message: str) -> SipError:
    return SipError(message, sip_status=400, reason="bad-sdp")
