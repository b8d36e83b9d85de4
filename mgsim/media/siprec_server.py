"""The recording server's side of one SIPREC dialog (RFC 7866), as a push decoder.

:class:`SiprecSession` validates the INVITE, answers ``recvonly`` on its own ports, turns
RTP into :class:`~mgsim.media._base.AudioChunk` records on channels ``"0"`` and ``"1"``
(the top and the second audio m-line) and reports pauses, loss, reordering and the end of
the call. What it answers, and why:

* **INVITE** (a new recording session): ``Require`` must name ``siprec`` (RFC 7866 6.1.2:
  only then is the INVITE a recording session); without it the answer is ``421 Extension
  Required`` with ``Require: siprec`` (RFC 3261 21.4.15), and an option tag mgsim does not
  know in ``Require`` gets ``420 Bad Extension`` listing it in ``Unsupported`` (8.2.2.3).
  The body is ``multipart/mixed`` with SDP and ``application/rs-metadata+xml``, or plain
  ``application/sdp``: RFC 7866 6.2 lets the metadata come later (in a re-INVITE). Until
  it does, the call's participants are unknown (``info["metadata"] == {"present": "no"}``,
  ``channel_participants`` None); who is the customer is decided, with or without
  metadata, by start-streaming's ``mediaLineOrder``. The UCID is then read from the SIP
  headers vendors use, else the Call-ID is the call's guid. The 200 OK carries a Contact
  the SBC can reach — host, port and transport of the socket the INVITE came in on, with
  ``+sip.srs`` (RFC 7866 6.1.2) — since the SBC sends ACK, re-INVITE and BYE there. A
  UCID that another open call already has gets ``486 Busy Here`` with a ``Warning`` that
  says so (``guid_in_use`` tells the session).
* **re-INVITE** with SDP: the answer per m-line as RFC 3264 6.1 says (``sendonly`` →
  ``recvonly``, ``inactive`` → ``inactive``); an m-line offered ``inactive`` is paused (its
  RTP is dropped as ``paused``), and the session is paused when both are. Metadata in a
  multipart re-INVITE replaces what the session knew (:attr:`metadata_version` counts).
  **Without a body** (a session refresh) the 200 OK carries an offer, as RFC 3261 14.2
  requires: the session's current SDP, unchanged version (RFC 3264 8); the SBC's answer in
  the ACK is applied like a re-offer.
* **BYE**, **OPTIONS**, **ACK**: 200 OK, 200 OK with ``Allow``/``Accept``/``Supported``,
  nothing. Every response but 100 Trying carries a To tag (RFC 3261 8.2.6.2).
* **CANCEL**: every INVITE is answered with a final response at once, so a CANCEL always
  comes after it. One that matches an INVITE of the dialog (the same top ``Via`` branch,
  RFC 3261 9.2 and 17.2.3) gets ``200 OK`` with the dialog's To tag and has no effect on
  the call ("the CANCEL request has no effect on the processing of the original request,
  no effect on any session state"); one that matches no INVITE gets ``481``.
* **The gateway ends the call** (``DELETE /_sim/v1/calls/{guid}``): :meth:`bye` is the BYE
  the recording server sends the SBC (RFC 3261 15.1.1, built as 12.2.1.1 says: the SBC's
  Contact as Request-URI, the route set from ``Record-Route``, the dialog's tags swapped,
  the server's own CSeq). The transport sends it where the INVITE came from.

RTP that arrives while its m-line is paused is followed (its sequence number is not a gap
later) and dropped once, as ``paused``. RTCP (on channels ``"rtcp:0"``/``"rtcp:1"``, or
multiplexed on an RTP port, RFC 5761) is counted in :attr:`rtcp` and otherwise ignored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from mgsim.errors import ConfigError
from mgsim.media._base import (
    Anomaly,
    Event,
    Reply,
    SessionClosed,
    SessionOpened,
    SessionPaused,
    SessionResumed,
    Wire,
)
from mgsim.media.rsmetadata import CONTENT_TYPE as METADATA_TYPE
from mgsim.media.rsmetadata import RecordingMetadata, parse_metadata
from mgsim.media.rtp import RtpError, RtpReceiver, is_rtcp
from mgsim.media.sdp import (
    MediaDescription,
    SessionDescription,
    build_answer,
    check_recording_offer,
    parse_sdp,
)
from mgsim.media.sip import (
    MAX_MESSAGE,
    SipError,
    SipMessage,
    header_param,
    local_tag,
    parse_content_type,
    parse_message,
    parse_multipart,
    response_to,
)
from mgsim.media.siprec_info import CHANNELS, find_ucid, session_info

__all__ = ["ACCEPT", "ALLOW", "CHANNELS", "SUPPORTED", "SessionState", "SiprecSession"]

SessionState = Literal["idle", "active", "paused", "closing", "closed"]


ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"
"""The methods a recording server answers (the ``Allow`` header)."""
ACCEPT = f"application/sdp, {METADATA_TYPE}, multipart/mixed"
"""The bodies a recording server takes (the ``Accept`` header)."""
SUPPORTED = ("siprec",)
"""Option tags mgsim understands in ``Require`` (the ``Supported`` header)."""

GuidCheck = Callable[[str], "str | None"]
Allocate = Callable[[], tuple[int, int]]


class SiprecSession:
    """The recording server's side of one SIPREC dialog (a push decoder).

    ``ports`` are the two RTP ports put in the SDP answer (a real transport binds them
    first) — or ``allocate`` binds them once an INVITE is accepted and returns them (a
    :class:`~mgsim.errors.ConfigError` from it is answered 503), so a refused INVITE costs
    no port; ``address`` is the answer's connection address and the Contact's host;
    ``sip_port`` and ``sip_transport`` complete the Contact (where the SBC's in-dialog
    requests must go). ``guid_in_use`` is asked about the UCID of a new INVITE and returns
    why it cannot be recorded (it is another open call's), or None.

    :meth:`feed` takes :class:`~mgsim.media._base.Wire` messages on ``"sip"``,
    ``"rtp:0"``, ``"rtp:1"``, ``"rtcp:0"`` and ``"rtcp:1"``; it raises
    :class:`~mgsim.media.sip.SipError` (with ``sip_status`` and ``to_response()``) or
    :class:`~mgsim.media.rtp.RtpError` for a message it refuses, counts them in
    :attr:`errors` and keeps going. ``state`` is ``idle`` → ``active`` ⇄ ``paused`` →
    ``closing`` (BYE received, :attr:`bye_in_progress`) → ``closed`` (after :meth:`close`).
    """

    def __init__(
        self,
        *,
        ports: tuple[int, int] = (40000, 40002),
        address: str = "127.0.0.1",
        sip_port: int = 5060,
        sip_transport: str = "udp",
        max_message: int = MAX_MESSAGE,
        reorder_window: int = 64,
        guid_in_use: GuidCheck | None = None,
        allocate: Allocate | None = None,
    ) -> None:
        if sip_transport.lower() not in ("udp", "tcp", "tls"):
            raise ConfigError(f"unknown SIP transport {sip_transport!r}")
        self.ports = ports
        self.address = address
        self.sip_port = sip_port
        self.sip_transport = sip_transport.lower()
        self.max_message = max_message
        self.reorder_window = reorder_window
        self.guid_in_use = guid_in_use
        self.allocate = allocate
        self.state: SessionState = "idle"
        self.guid: str | None = None
        self.call_id: str | None = None
        self.info: dict[str, Any] = {}
        self.errors: Counter[str] = Counter()
        self.rtcp: Counter[str] = Counter()
        """RTCP packets received, by the m-line's channel (``"0"``, ``"1"``)."""
        self.metadata_version = 0
        """How many metadata documents the session has read (0: none yet)."""
        self._tag = ""
        self._sdp_version = 0
        self._local: SessionDescription | None = None  # the session's current SDP
        self._offered_in_ok = False  # a 200 OK carried our offer; its answer is in the ACK
        self._receivers: dict[str, RtpReceiver] = {}
        self._paused_lines: frozenset[str] = frozenset()  # channels of m-lines offered inactive
        self._flushed = False
        self._invite_branches: set[str] = set()  # top Via branches of the dialog's INVITEs
        self._invite: SipMessage | None = None  # the dialog's INVITE: the SBC's side of it
        self._remote_target = ""  # the SBC's Contact URI (RFC 3261 12.1.1), refreshed by re-INVITEs
        self._local_cseq = 0  # the CSeq of the server's own requests (RFC 3261 12.2.1.1)

    @property
    def contact(self) -> str:
        """The Contact of the server's responses (RFC 3261 8.1.1.8, RFC 7866 6.1.2)."""
        return f"<sip:srs@{self.address}:{self.sip_port};transport={self.sip_transport}>;+sip.srs"

    @property
    def bye_in_progress(self) -> bool:
        """True from the BYE until :meth:`close`: the control plane answers 409-203 then."""
        return self.state == "closing"

    def stats(self) -> dict[str, dict[str, int]]:
        """Per channel packet counters: received, lost, reordered, duplicates, late,
        paused, ssrc_changes and rtcp."""
        return {
            rx.channel: {
                "received": rx.received,
                "lost": rx.lost,
                "reordered": rx.reordered,
                "duplicates": rx.duplicates,
                "late": rx.late,
                "paused": rx.paused,
                "ssrc_changes": rx.ssrc_changes,
                "rtcp": self.rtcp[rx.channel],
            }
            for rx in self._receivers.values()
        }

    def feed(self, message: Wire) -> list[Event]:
        """Take one message; return what it produced (see the class docstring)."""
        rx = self._receivers.get(message.channel)
        if rx is not None and self.state in ("active", "paused"):
            data = message.data
            try:
                if type(data) is not bytes:
                    if not isinstance(data, bytearray | memoryview):
                        raise RtpError("RTP data must be bytes", reason="bad-length")
                    data = bytes(data)
                if len(data) > 1 and 192 <= data[1] <= 223 and is_rtcp(data):
                    self.rtcp[rx.channel] += 1  # multiplexed on the RTP port (RFC 5761)
                    return []
                if self.state == "active" and rx.channel not in self._paused_lines:
                    return rx.push(data, round(message.at_ms * 8))
                return rx.track(data, round(message.at_ms * 8))
            except RtpError as exc:
                self.errors[exc.reason] += 1
                raise
        if message.channel == "sip":
            return self._feed_sip(message)
        if message.channel in ("rtcp:0", "rtcp:1"):
            self.rtcp[message.channel[-1]] += 1
            return []
        if message.channel.startswith("rtp:"):
            self.errors["no-session"] += 1
            raise RtpError(f"RTP on {message.channel} outside an open session", reason="no-session")
        raise ConfigError(f"unknown channel {message.channel!r}")

    def feed_codes(self, message: Wire) -> tuple[str, int, bytes] | None:
        """The usual RTP packet of an active m-line, undecoded: ``(channel, start_sample,
        payload)`` (see :meth:`RtpReceiver.push_codes`). Anything else — SIP, RTCP, a paused
        m-line, a packet with anything to report or check further — returns None and
        changes nothing; :meth:`feed` then takes it."""
        rx = self._receivers.get(message.channel)
        data = message.data
        if (
            rx is None
            or self.state != "active"
            or type(data) is not bytes
            or rx.channel in self._paused_lines
            or (len(data) > 1 and 192 <= data[1] <= 223 and is_rtcp(data))
        ):
            return None
        codes = rx.push_codes(data)
        return None if codes is None else (rx.channel, codes[0], codes[1])

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
            if not same_dialog:
                return [Anomaly("stray-ack", msg.call_id)]
            return self._ack(msg, at_sample)
        if method == "OPTIONS":
            headers = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", ", ".join(SUPPORTED))]
            return [Reply("sip", response_to(msg, 200, headers=headers).to_bytes())]
        if method == "INVITE" and self.state == "idle":
            return self._open(msg)
        if method not in ("INVITE", "BYE", "CANCEL"):
            raise SipError(
                f"{method} is not supported",
                sip_status=405,
                reason="bad-method",
                headers=[("Allow", ALLOW)],
            )
        if method == "CANCEL":
            return self._cancel(msg, same_dialog)
        if not same_dialog or self.state not in ("active", "paused"):
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

    def _cancel(self, msg: SipMessage, same_dialog: bool) -> list[Event]:
        # RFC 3261 9.2: a CANCEL matching an INVITE already answered with a final response
        # has no effect, and is itself answered 200 (To tag as in the INVITE's answer).
        if same_dialog and _branch(msg) in self._invite_branches:
            return [Reply("sip", response_to(msg, 200, to_tag=self._tag).to_bytes())]
        raise SipError("CANCEL matches no INVITE", sip_status=481, reason="no-transaction")

    def bye(self, via: str) -> bytes:
        """The BYE ending the dialog from the server's side (the gateway hung up); ``via``
        is the request's Via value (the server's sent-by and a fresh branch)."""
        invite = self._invite
        if invite is None or self.call_id is None:
            raise ConfigError("no dialog to end")
        self._local_cseq += 1
        headers: list[tuple[str, str]] = [("Via", via), ("Max-Forwards", "70")]
        # A UAS's route set is the INVITE's Record-Route, in order (RFC 3261 12.1.1).
        headers += [("Route", value) for value in invite.get_all("Record-Route")]
        ours = invite.get("To") or ""
        if header_param(ours, "tag") is None:
            ours = f"{ours};tag={self._tag}"
        headers += [
            ("From", ours),
            ("To", invite.get("From") or ""),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self._local_cseq} BYE"),
        ]
        return SipMessage.request("BYE", self._remote_target, headers).to_bytes()

    @property
    def remote_target(self) -> str:
        """The SBC's Contact URI: where the server's own requests go (RFC 3261 12.2.1.1)."""
        return self._remote_target

    def _ok(self, msg: SipMessage, sdp: bytes | None = None) -> SipMessage:
        headers: list[tuple[str, str]] = []
        if msg.method == "INVITE":
            # RFC 3261 12.1.1: a dialog-establishing response copies Record-Route, in order.
            headers += [("Record-Route", v) for v in msg.get_all("Record-Route")]
        headers.append(("Contact", self.contact))
        if sdp is not None:
            headers.append(("Content-Type", "application/sdp"))
        return response_to(msg, 200, to_tag=self._tag, headers=headers, body=sdp or b"")

    def _check_require(self, msg: SipMessage) -> None:
        required = msg.tokens("Require")
        unknown = [tag for tag in required if tag not in SUPPORTED]
        if unknown:
            raise SipError(
                f"Require names option tags mgsim does not support: {', '.join(unknown)}",
                sip_status=420,
                reason="bad-extension",
                headers=[("Unsupported", ", ".join(unknown))],
            )
        if "siprec" not in required:
            raise SipError(
                "INVITE without Require: siprec is not a recording session (RFC 7866 6.1.2)",
                sip_status=421,
                reason="no-siprec",
                headers=[("Require", "siprec")],
            )

    def _bodies(self, msg: SipMessage, what: str) -> tuple[bytes, bytes | None]:
        """``(sdp, metadata)`` of a request's body (either may be empty/None)."""
        content_type = msg.get("Content-Type") or ""
        media_type, _ = parse_content_type(content_type)
        if not msg.body:
            return b"", None
        if media_type == "application/sdp":
            return msg.body, None
        if media_type != "multipart/mixed":
            raise SipError(
                f"{what} body is {media_type or 'untyped'}, expected application/sdp or "
                "multipart/mixed",
                sip_status=415,
                reason="not-sdp",
                headers=[("Accept", ACCEPT)],
            )
        by_type: dict[str, bytes] = {}
        for part in parse_multipart(content_type, msg.body):
            by_type.setdefault(parse_content_type(part.content_type)[0], part.body)
        if "application/sdp" not in by_type:
            raise SipError(
                "multipart body without application/sdp",
                sip_status=415,
                reason="no-sdp",
                headers=[("Accept", ACCEPT)],
            )
        meta = by_type.get(METADATA_TYPE, by_type.get("application/rs-metadata"))
        return by_type["application/sdp"], meta

    def _open(self, msg: SipMessage) -> list[Event]:
        self._check_require(msg)
        sdp, raw_meta = self._bodies(msg, "INVITE")
        if not sdp:
            # An offerless INVITE would need our offer in the 200 and the SBC's answer in
            # the ACK before any port is known; RFC 7866 6.1.1 has the SRC offer.
            raise SipError(
                "INVITE without an SDP offer",
                sip_status=415,
                reason="no-sdp",
                headers=[("Accept", ACCEPT)],
            )
        offer = parse_sdp(sdp)
        top, second = check_recording_offer(offer)
        meta = parse_metadata(raw_meta) if raw_meta is not None else None
        guid, vendor, source = find_ucid(msg, meta)
        refusal = self.guid_in_use(guid) if self.guid_in_use is not None else None
        if refusal is not None:
            raise SipError(
                refusal,
                sip_status=486,
                reason="guid-in-use",
                headers=[("Warning", f'399 {self.address} "{_quoted(refusal)}"')],
            )
        if self.allocate is not None:
            try:
                self.ports = self.allocate()
            except ConfigError as exc:
                raise SipError(
                    str(exc),
                    sip_status=503,
                    reason="no-rtp-port",
                    headers=[("Retry-After", "5"), ("Warning", f'399 {self.address} "{exc}"')],
                ) from exc
        self.call_id = msg.call_id
        self._tag = local_tag(self.call_id)
        self._invite = msg
        self._invite_branches.add(_branch(msg))
        self._remote_target = _contact_uri(msg) or msg.uri
        self._sdp_version = 1
        answer = build_answer(offer, address=self.address, ports=self.ports)
        self._local = answer
        self.guid = guid
        self.info = session_info(msg, meta, (top.label, second.label), vendor, source)
        self.metadata_version = int(meta is not None)
        self.info["offer_ports"] = (top.port, second.port)
        self.info["answer_ports"] = self.ports
        self.info["contact"] = self.contact
        self._receivers = {
            f"rtp:{i}": RtpReceiver(
                ch, payload_type=_payload_type(m), reorder_window=self.reorder_window
            )
            for i, (ch, m) in enumerate(zip(CHANNELS, (top, second), strict=True))
        }
        self._paused_lines = _inactive(top, second)
        paused = len(self._paused_lines) == len(CHANNELS)
        self.state = "paused" if paused else "active"
        events: list[Event] = [
            Reply("sip", self._ok(msg, answer.to_bytes()).to_bytes()),
            SessionOpened(self.guid, CHANNELS, self.info),
        ]
        if paused:
            events.append(SessionPaused(0))
        return events

    def _reinvite(self, msg: SipMessage, at_sample: int) -> list[Event]:
        self._invite_branches.add(_branch(msg))
        self._remote_target = _contact_uri(msg) or self._remote_target  # a target refresh
        sdp, raw_meta = self._bodies(msg, "re-INVITE")
        if raw_meta is not None:
            self._new_metadata(msg, parse_metadata(raw_meta))
        if not sdp:
            # A session refresh: the 200 OK must carry an offer (RFC 3261 14.2); ours is
            # the session as it stands, so its version does not change (RFC 3264 8).
            assert self._local is not None
            self._offered_in_ok = True
            return [Reply("sip", self._ok(msg, self._local.to_bytes()).to_bytes())]
        self._offered_in_ok = False
        offer = parse_sdp(sdp)
        top, second = check_recording_offer(offer)
        self._sdp_version += 1
        answer = build_answer(
            offer, address=self.address, ports=self.ports, version=self._sdp_version
        )
        self._local = answer
        for rx, m in zip(self._receivers.values(), (top, second), strict=True):
            rx.payload_type = _payload_type(m)
        events: list[Event] = [Reply("sip", self._ok(msg, answer.to_bytes()).to_bytes())]
        return events + self._directions(top, second, at_sample)

    def _ack(self, msg: SipMessage, at_sample: int) -> list[Event]:
        if not self._offered_in_ok:
            return []
        self._offered_in_ok = False
        sdp, _ = self._bodies(msg, "ACK")
        if not sdp:
            return [Anomaly("no-answer", "ACK without the answer to the 200 OK's offer")]
        top, second = check_recording_offer(parse_sdp(sdp))
        return self._directions(top, second, at_sample)

    def _directions(
        self, top: MediaDescription, second: MediaDescription, at_sample: int
    ) -> list[Event]:
        """Apply the SBC's directions: an ``inactive`` m-line is paused (RFC 7866 ties a
        pause to ``a=inactive``); the session pauses when both are."""
        self._paused_lines = _inactive(top, second)
        paused = len(self._paused_lines) == len(CHANNELS)
        if paused and self.state == "active":
            self.state = "paused"
            return [SessionPaused(at_sample)]
        if not paused and self.state == "paused":
            self.state = "active"
            return [SessionResumed(at_sample)]
        return []

    def _new_metadata(self, msg: SipMessage, meta: RecordingMetadata) -> None:
        labels = self.info.get("labels", (None, None))
        fresh = session_info(msg, meta, labels, self.info["vendor"], self.info["guid_source"])
        for key in ("participants", "associations", "channel_participants", "metadata"):
            self.info[key] = fresh[key]
        self.metadata_version += 1


def _branch(msg: SipMessage) -> str:
    """The branch of the top Via: what names a transaction (RFC 3261 17.2.3)."""
    top = (msg.get("Via") or "").split(",", 1)[0]  # one line may hold several Vias
    return header_param(top, "branch") or ""


def _contact_uri(msg: SipMessage) -> str:
    """The URI of a request's Contact (``<sip:...>`` or a bare URI), or ""."""
    contact = (msg.get("Contact") or "").strip()
    if contact.startswith("<") or "<" in contact:
        return contact.partition("<")[2].partition(">")[0]
    return contact.split(";", 1)[0].strip()


def _payload_type(m: MediaDescription) -> int:
    """The RTP payload type PCMU arrives as on an accepted m-line."""
    pt = m.pcmu_payload_type
    assert pt is not None  # check_recording_offer accepted the line
    return pt


def _inactive(top: MediaDescription, second: MediaDescription) -> frozenset[str]:
    """The channels whose m-line is offered ``inactive`` (paused)."""
    return frozenset(
        ch for ch, m in zip(CHANNELS, (top, second), strict=True) if m.direction == "inactive"
    )


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
