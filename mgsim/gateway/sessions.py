"""Media sessions: one platform connection feeding the gateway's calls.

:func:`open_media_session` wraps a namespace's push decoder from :mod:`mgsim.media` in a
:class:`MediaSession` with the same two methods everywhere: ``feed(wire) -> list[Reply]``
and ``close() -> list[Reply]``. The session turns decoder events into call state:

==================  ===================================================================
event               effect on the gateway
==================  ===================================================================
SessionOpened       ``gateway.open_call(namespace, guid, channels, source=transport)``;
                    a call already opened through the control API (source ``"sim"``)
                    is adopted. AudioHook probes open nothing.
AudioChunk          ``call.receive(channel, start_sample, pcm, clock.now())``
SessionPaused/...   recorded in ``call.pauses`` (the decoders drop paused audio)
SessionClosed       the call hangs up; for SIPREC the BYE first sets
                    ``call.bye_in_progress`` (control requests get 409-203) and the call
                    hangs up when the session closes. How it ended goes into
                    ``call.accounting.ended_by`` / ``end_reason``: the platform's own
                    end, a drop (:meth:`MediaSession.drop`, or a connection closed
                    without the handshake) or an error
Anomaly             counted in ``call.accounting`` (see :mod:`mgsim.gateway.accounting`)
==================  ===================================================================

**Errors never escape** :meth:`MediaSession.feed`: a :class:`~mgsim.errors.MediaError`
is counted (``session.errors`` and the call's ``accounting.errors``, by reason), its
message is dropped as ``"decode-error"`` and the protocol's own answer is returned:

* Twilio: no reply exists; :attr:`MediaSession.close_code` is set to the WebSocket close
  code (1007, 1008...) and the session ends at once (the call hangs up), as the gateway
  closes the socket;
* AudioHook: the ``disconnect`` message (reason ``error``); the session then only waits
  for the client's ``close``; :attr:`MediaSession.close_code` is set for a transport that
  closes without waiting;
* SIPREC: the SIP error response (``4xx``) for a refused request; a refused RTP packet gets
  nothing (it is UDP);
* Amazon Connect: a PutMedia acknowledgement with ``"EventType": "ERROR"``.

Other calls never see another session's errors. The Amazon Connect session writes into the
gateway's Kinesis Video store (:mod:`mgsim.gateway.kvs`); audio reaches the call only
through the reader started by start-streaming.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mgsim.errors import ConfigError, MediaError
from mgsim.gateway.accounting import Accounting
from mgsim.gateway.calls import Gateway
from mgsim.gateway.media_session import (
    NAMESPACES,
    MediaSession,
    count_media,
    is_media,
    merge_accounting,
)
from mgsim.media._base import Event, Reply, Wire
from mgsim.media.audiohook import AudioHookError, AudioHookSession
from mgsim.media.g711 import ulaw_decode
from mgsim.media.kvs import KvsError
from mgsim.media.sip import SipError
from mgsim.media.siprec_server import SiprecSession
from mgsim.media.twilio import MuLawFrame, TwilioDecoder, TwilioError

__all__ = [
    "NAMESPACES",
    "AudioHookMediaSession",
    "KvsMediaSession",
    "MediaSession",
    "SiprecMediaSession",
    "TwilioMediaSession",
    "count_media",
    "is_media",
    "open_media_session",
]


@dataclass(slots=True)
class _Run:
    """In-order µ-law frames of one track (Twilio) or m-line (SIPREC), held to be placed
    at once."""

    track: str
    start: int
    end: int
    codes: list[bytes]
    at: float  # gateway time of the latest message


class _HoldingSession(MediaSession):
    """A session that holds runs of plain in-order µ-law media (see
    :meth:`MediaSession.feed`'s ``hold``): decoding and placing each 20 ms message on its
    own costs more than the rest of the gateway's work, so a track's consecutive frames
    are placed as one run. The subclass's decoder has already checked each message."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway)
        self._held: dict[str, _Run] = {}

    def _can_hold(self) -> bool:
        return not (self.call is None or self.closed or self.failed or self._call_gone())

    def _hold(self, track: str, start: int, codes: bytes) -> None:
        now = self.gateway.clock.now()
        run = self._held.get(track)
        if run is not None and run.end == start:
            run.codes.append(codes)
            run.end += len(codes)
            run.at = now
        else:
            if run is not None:
                self._place(run)
            self._held[track] = _Run(track, start, start + len(codes), [codes], now)

    def flush(self) -> None:
        if self._held:
            # In order of each run's last message, so the call's last audio time is the
            # latest one, as if fed one by one.
            for run in sorted(self._held.values(), key=lambda r: r.at):
                self._place(run)
            self._held.clear()

    def _place(self, run: _Run) -> None:
        call = self.call
        acc = self.accounting
        if call is None or call.closed_at is not None:
            acc.note_dropped("after-close", len(run.codes))
            return
        try:
            streamed = call.receive(run.track, run.start, ulaw_decode(b"".join(run.codes)), run.at)
        except ConfigError:
            # Somewhere beyond what a timeline holds: place message by message, so each
            # one is accounted for exactly as it would have been on its own.
            start = run.start
            for codes in run.codes:
                try:
                    placed = call.receive(run.track, start, ulaw_decode(codes), run.at)
                    acc.note_received(streamed=placed)
                except ConfigError:
                    acc.note_dropped("out-of-range")
                start += len(codes)
            return
        acc.note_received(streamed=streamed, count=len(run.codes))


class TwilioMediaSession(_HoldingSession):
    """A Twilio Media Streams WebSocket (text frames on channel ``"ws"``).

    A :class:`~mgsim.media.twilio.TwilioError` ends the session: ``close_code`` tells the
    transport how to close the socket, and the call hangs up (``SessionClosed``
    ``"disconnect"``, with any chunk loss counted).
    """

    namespace = "twilio"
    transport = "twilio-ws"
    no_handshake = "no-stop"

    def __init__(self, gateway: Gateway, **options: Any) -> None:
        super().__init__(gateway)
        self.decoder = TwilioDecoder(**options)

    def _decode(self, wire: Wire) -> list[Event]:
        return self.decoder.feed(wire)

    def _feed_held(self, wire: Wire, media: bool | None) -> list[Reply]:
        # Twilio sends one JSON message per track per 20 ms: plain in-order frames of an
        # open call are held per track and placed as one run (see MediaSession.feed).
        if not self._can_hold():
            return self.feed(wire, media=media)
        try:
            out = self.decoder.feed_codes(wire)
        except MediaError as exc:
            self.flush()
            return self._on_error(exc, is_media(self.namespace, wire) if media is None else media)
        if not isinstance(out, MuLawFrame):
            self.flush()
            return self._apply(out, is_media(self.namespace, wire) if media is None else media)
        self._hold(out.track, out.start_sample, out.codes)
        return []

    def _decoder_close(self) -> list[Event]:
        return self.decoder.close()

    def _error_replies(self, exc: MediaError) -> list[Reply]:
        if isinstance(exc, TwilioError):
            self.close_code = exc.ws_close_code
        else:
            # Another stream already has this callSid: the platform's doing, a policy
            # violation (1008), not a fault of the gateway (1011).
            self.close_code = 1008 if exc.reason == "guid-in-use" else 1011
        self.failed = True
        return self.close()


class AudioHookMediaSession(MediaSession):
    """A Genesys AudioHook WebSocket (JSON text and binary audio on channel ``"ws"``).

    ``session_id`` is the ``Audiohook-Session-Id`` upgrade header and ``organization_id``
    the signed ``Audiohook-Organization-Id`` (an ``open`` for another organization gets
    ``disconnect`` reason ``"unauthorized"``). A probe (the all-zero conversationId) is
    answered but opens no call: :attr:`probe` is then True.

    A second concurrent session for a conversationId that already has one is refused at
    ``open``: ``disconnect`` (reason ``"error"``, ``409 conflict``) instead of ``opened``, then
    ``closed`` for the client's ``close``. AudioHook has no way to re-establish a session
    (Genesys: "AudioHook currently does not support re-establishing session connections"),
    and the gateway addresses a call by its conversationId alone, so a second session's audio
    could reach no call. When the gateway hangs the call up (``DELETE
    /_sim/v1/calls/{guid}``), the client is told with ``disconnect`` reason ``"completed"``.
    """

    namespace = "genesysaudiohook"
    transport = "audiohook-ws"
    _drop_late_as = "paused"  # AudioHook reports audio sent while paused as "late"
    _loss_is_wire_loss = False  # "discarded": the client dropped audio; nothing was sent

    def __init__(
        self,
        gateway: Gateway,
        *,
        session_id: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        super().__init__(gateway)
        self.decoder = AudioHookSession(
            session_id, organization_id=organization_id, admit=self._admit
        )

    def _admit(self, conversation_id: str) -> None:
        existing = self.gateway.calls.get(conversation_id)
        if existing is not None and existing.source != "sim":
            raise AudioHookError(
                f"conversation {conversation_id} already has an open {existing.source} "
                "session; AudioHook sessions cannot be re-established",
                reason="conflict",
            )

    @property
    def probe(self) -> bool:
        """True for a connection probe."""
        return self.decoder.probe

    def feed(self, wire: Wire, *, media: bool | None = None, hold: bool = False) -> list[Reply]:
        if self.decoder.state == "failed" and not self.closed:
            self.failed = True
        return super().feed(wire, media=media)  # holds nothing: a frame is 200 ms of audio

    def _decode(self, wire: Wire) -> list[Event]:
        return self.decoder.feed(wire)

    def _decoder_close(self) -> list[Event]:
        return self.decoder.close()

    def _hung_up_replies(self) -> list[Reply]:
        decoder = self.decoder
        if decoder.state not in ("active", "paused") or decoder.disconnected:
            return []
        guid = self.call.guid if self.call is not None else ""
        return [decoder.disconnect("completed", info=f"call {guid} was ended by the gateway")]

    def _error_replies(self, exc: MediaError) -> list[Reply]:
        if not isinstance(exc, AudioHookError) or self.decoder.state == "closed":
            return []
        self.close_code = exc.ws_close_code
        self.failed = True
        return [Reply("ws", exc.disconnect_message(self.decoder))]


class SiprecMediaSession(_HoldingSession):
    """A SIPREC dialog: SIP on ``"sip"``, RTP on ``"rtp:0"`` / ``"rtp:1"``.

    Options go to :class:`~mgsim.media.siprec.SiprecSession` (``ports``, ``address``...).
    A BYE sets ``call.bye_in_progress``; the call hangs up at :meth:`close`.
    """

    namespace = "siprec"
    transport = "siprec"
    no_handshake = "no-bye"

    def __init__(self, gateway: Gateway, **options: Any) -> None:
        super().__init__(gateway)
        self.decoder = SiprecSession(guid_in_use=self._guid_in_use, **options)
        self._metadata_version = 0

    @property
    def bye_in_progress(self) -> bool:
        return self.decoder.bye_in_progress

    def _guid_in_use(self, guid: str) -> str | None:
        """Why a new INVITE's UCID cannot be recorded (another open call has it), or None.

        Asked before the 200 OK, so a second dialog for a UCID is refused with a final
        response instead of being answered and then left dead.
        """
        existing = self.gateway.calls.get(guid)
        if existing is None or (existing.source == "sim" and existing.namespace == "siprec"):
            return None
        return f"UCID {guid} is already being recorded by another session"

    def _feed_held(self, wire: Wire, media: bool | None) -> list[Reply]:
        # RTP: one packet per m-line per 20 ms. A packet its receiver takes on the fast
        # path (next in sequence, nothing to report) is held; anything else is fed as
        # usual, after what was held, so every check applies to it in order.
        if self._can_hold():
            out = self.decoder.feed_codes(wire)
            if out is not None:
                self._hold(*out)
                return []
        return self.feed(wire, media=media)

    def _decode(self, wire: Wire) -> list[Event]:
        events = self.decoder.feed(wire)
        if self.decoder.metadata_version != self._metadata_version:
            # Metadata that came after the INVITE (RFC 7866 6.2) updates the call's info.
            self._metadata_version = self.decoder.metadata_version
            if self.call is not None:
                self.call.info.update(self.decoder.info)
        return events

    def _decoder_close(self) -> list[Event]:
        return self.decoder.close()

    def _error_replies(self, exc: MediaError) -> list[Reply]:
        if isinstance(exc, SipError):
            response = exc.to_response()
            if response is not None:
                return [Reply("sip", response.to_bytes())]
        return []

    def _on_closed(self, reason: str) -> None:
        if reason == "bye" and self.call is not None and self.call.closed_at is None:
            self.call.bye_in_progress = True
            return
        self._hang_up()


class KvsMediaSession(MediaSession):
    """Amazon Connect writing one contact's stream (fragments on channel ``"kvs"``).

    Each fragment goes into ``gateway.kvs`` through :meth:`KvsMedia.put
    <mgsim.gateway.kvs.KvsMedia.put>` (``create``: make the stream if it is missing); the
    reply is a PutMedia acknowledgement ``{"EventType": "PERSISTED", "FragmentNumber":
    ...}`` or ``{"EventType": "ERROR", "ErrorId": 4006, ...}``. :meth:`close` ends the
    stream's current contact (its call hangs up).
    """

    namespace = "amazonconnect"
    transport = "kvs"

    def __init__(self, gateway: Gateway, *, stream_arn: str, create: bool = True) -> None:
        super().__init__(gateway)
        self.stream_arn = stream_arn
        self.create = create
        self.fragment_numbers: list[str] = []
        """Numbers the store gave to this session's fragments, in put order."""

    def feed(self, wire: Wire, *, media: bool | None = None, hold: bool = False) -> list[Reply]:
        # Holds nothing: each fragment is answered with its own acknowledgement.
        if self.closed:
            self.accounting.note_dropped("after-close")
            return []
        watched = self.gateway.kvs_media.current_call(self.stream_arn)
        try:
            result = self.gateway.kvs_media.put(self.stream_arn, wire, create=self.create)
        except MediaError as exc:
            self.errors[exc.reason] += 1
            if watched is None or not isinstance(exc, KvsError):
                # No call counted it (KvsMedia counts errors on the contact's call).
                self._own.note_error(exc.reason)
            ack = {"EventType": "ERROR", "ErrorId": 4006, "ErrorCode": exc.reason}
            return [Reply("kvs", json.dumps(ack))]
        if result.call is not None and result.call is not self.call:
            self.call = result.call
            merge_accounting(result.call.accounting, self._own)
            self._own = Accounting()
        self.fragment_numbers.append(result.fragment_number)
        ack = {"EventType": "PERSISTED", "FragmentNumber": result.fragment_number}
        return [Reply("kvs", json.dumps(ack))]

    def close(self) -> list[Reply]:
        """The producer ended its stream (the platform's own end): the contact's call hangs
        up."""
        if not self.closed:
            self.closed = True
            call = self.gateway.kvs_media.current_call(self.stream_arn)
            if call is not None:
                if self._ending is None:
                    call.accounting.note_end("platform", "end-of-stream")
                else:
                    call.accounting.note_end("drop", self._ending)
            self.gateway.kvs_media.end_stream(self.stream_arn)
        return []

    def drop(self, reason: str = "connection-lost") -> list[Reply]:
        """The producer vanished without ending its stream: the call hangs up as dropped."""
        self._ending = reason
        try:
            return self.close()
        finally:
            self._ending = None


_SESSIONS: dict[str, type[MediaSession]] = {
    "siprec": SiprecMediaSession,
    "twilio": TwilioMediaSession,
    "genesysaudiohook": AudioHookMediaSession,
    "amazonconnect": KvsMediaSession,
}


def open_media_session(gateway: Gateway, namespace: str, **options: Any) -> MediaSession:
    """A new media session of ``namespace`` on ``gateway``; ``options`` go to its class.

    >>> from mgsim.clock import VirtualClock
    >>> session = open_media_session(Gateway(VirtualClock()), "twilio")
    >>> type(session).__name__
    'TwilioMediaSession'
    """
    cls = _SESSIONS.get(namespace)
    if cls is None:
        raise ConfigError(f"unknown namespace {namespace!r}; expected one of {NAMESPACES}")
    return cls(gateway, **options)
