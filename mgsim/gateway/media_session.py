"""The media-session machinery shared by every platform (see :mod:`mgsim.gateway.sessions`).

:class:`MediaSession` turns a decoder's events into call state and accounting; the
per-platform subclasses in :mod:`mgsim.gateway.sessions` only say how to decode, close and
answer an error. :func:`is_media` defines the unit of accounting: one media message.

A session ends in one of three ways, recorded in the call's accounting
(:meth:`~mgsim.gateway.accounting.Accounting.note_end`):

* the platform's closing handshake arrives through :meth:`MediaSession.feed` (Twilio
  ``stop``, AudioHook ``close``, SIP ``BYE``): ``ended_by="platform"``;
* the connection ends without it: :meth:`MediaSession.close` (a socket closed cleanly, end
  reason ``"no-stop"``, ``"no-close"`` or ``"no-bye"``) or :meth:`MediaSession.drop` (it
  died: ``"connection-lost"``, ``"media-timeout"`` or any reason the caller gives):
  ``ended_by="drop"``. The decoder is flushed first, so loss it can still see is counted;
* a protocol error made the gateway end it: ``ended_by="error"``;
* the gateway hung the call up on its own (``DELETE /_sim/v1/calls/{guid}``):
  ``ended_by="gateway"``, ``end_reason="hang-up"``; the session tells the platform where its
  protocol can (AudioHook: ``disconnect`` with reason ``"completed"``) through :attr:`push`,
  and media arriving afterwards is dropped as ``"after-close"``.

In every case the call hangs up: the open segment closes and what it streamed is
transcribed and delivered; a later start- or stop-streaming answers as for any ended call.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from mgsim.contract import Problem
from mgsim.errors import ConfigError, MediaError
from mgsim.gateway.accounting import Accounting
from mgsim.gateway.calls import CallState, Gateway
from mgsim.media._base import (
    Anomaly,
    AudioChunk,
    Event,
    Reply,
    SessionClosed,
    SessionOpened,
    SessionPaused,
    SessionResumed,
    Wire,
)
from mgsim.media.rtp import is_rtcp

__all__ = ["NAMESPACES", "MediaSession", "count_media", "is_media", "merge_accounting"]

NAMESPACES = ("siprec", "twilio", "genesysaudiohook", "amazonconnect")

_TWILIO_MEDIA = re.compile(r'"event"\s*:\s*"media"')


def is_media(namespace: str, wire: Wire) -> bool:
    """Whether ``wire`` is a media message (the unit of accounting) of ``namespace``.

    >>> is_media("siprec", Wire(0.0, "rtp:0", b"..."))
    True
    """
    if namespace == "twilio":
        data = wire.data
        text = data if isinstance(data, str) else data[:64].decode("utf-8", "replace")
        return _TWILIO_MEDIA.search(text[:64]) is not None
    if namespace == "genesysaudiohook":
        return isinstance(wire.data, bytes | bytearray | memoryview)
    if namespace == "siprec":
        # RTCP multiplexed on an RTP port (RFC 5761) is no media message.
        data = wire.data
        return wire.channel.startswith("rtp:") and not (isinstance(data, bytes) and is_rtcp(data))
    if namespace == "amazonconnect":
        return wire.channel == "kvs"
    raise ConfigError(f"unknown namespace {namespace!r}")


def count_media(namespace: str, wires: Iterable[Wire]) -> int:
    """How many of ``wires`` are media messages: the sender's count for accounting."""
    return sum(is_media(namespace, w) for w in wires)


class MediaSession:
    """One media connection of one namespace, feeding a :class:`Gateway`.

    Subclasses provide the decoder; see the module docstring for what events do.
    Attributes: ``call`` (the call this session opened, also after it hung up),
    ``errors`` (decoder errors by reason), ``close_code`` (WebSocket close code a transport
    should use after a protocol error), ``closed``.
    """

    namespace: str = ""
    transport: str = ""
    no_handshake = "no-close"  # the end reason when the connection closes without one
    _drop_late_as = "late"  # what a decoder's "late" anomaly means for this platform
    _loss_is_wire_loss = True  # whether "loss" anomalies count messages lost on the wire

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.call: CallState | None = None
        self.errors: Counter[str] = Counter()
        self.close_code: int | None = None
        self.closed = False
        self.failed = False
        self._own = Accounting()  # until a call exists
        self._ending: str | None = None  # the drop reason while close()/drop() runs
        self.push: Callable[[list[Reply]], None] | None = None
        """Set by a transport that can send to the platform unprompted (a WebSocket): what
        the session must say on its own, such as the answer to a gateway hang-up."""

    @property
    def accounting(self) -> Accounting:
        """The call's accounting once a call is open; the session's own before that."""
        return self.call.accounting if self.call is not None else self._own

    # -- the interface

    def feed(self, wire: Wire, *, media: bool | None = None, hold: bool = False) -> list[Reply]:
        """Decode one message from the platform; return what to send back. ``media`` is
        :func:`is_media` of the wire, when the caller knows it already.

        ``hold=True`` lets the session hold plain in-order media instead of placing it at
        once, so that a caller feeding many messages due together (a scenario in virtual
        time, between two control events) has each track's run decoded and placed in one
        step. The outcome is the same as feeding one by one; until :meth:`flush` (or any
        other message, :meth:`close` or :meth:`drop`) the held audio is not on the call
        yet, so the caller must flush before anything else may touch the call.
        """
        if hold:
            return self._feed_held(wire, media)
        self.flush()
        if media is None:
            media = is_media(self.namespace, wire)
        if media and (self.closed or self._call_gone()):
            self.accounting.note_dropped("after-close")
            return []
        if media and self.failed:
            self.accounting.note_dropped("after-error")
            return []
        if self.closed:
            return []
        try:
            events = self._decode(wire)
        except MediaError as exc:
            return self._on_error(exc, media)
        return self._apply(events, media)

    def flush(self) -> None:
        """Place any media held by ``feed(..., hold=True)``."""

    def close(self) -> list[Reply]:
        """The connection ended: flush the decoder and hang up the call if still open.

        A call whose closing handshake never came is recorded as dropped, with the
        platform's :attr:`no_handshake` reason.
        """
        return self._end(self.no_handshake)

    def drop(self, reason: str = "connection-lost") -> list[Reply]:
        """The connection died mid-call without the platform's closing handshake.

        Like :meth:`close` (the decoder is flushed and the call hangs up), but the end is
        recorded as a drop with ``reason``. Nothing happens if the session already ended.

        >>> from mgsim.clock import VirtualClock
        >>> from mgsim.gateway.sessions import open_media_session
        >>> session = open_media_session(Gateway(VirtualClock()), "twilio")
        >>> session.drop("connection-lost")
        []
        """
        return self._end(reason)

    def _end(self, drop_reason: str) -> list[Reply]:
        self.flush()
        if self.closed:
            return []
        self.closed = True
        self._ending = drop_reason
        try:
            try:
                events = self._decoder_close()
            except MediaError as exc:
                self._count_error(exc)
                events = []
            replies = self._apply(events, media=False)
            self._note_end(None)
            self._hang_up()
        finally:
            self._ending = None
        return replies

    # -- for subclasses

    def _decode(self, wire: Wire) -> list[Event]:
        raise NotImplementedError

    def _feed_held(self, wire: Wire, media: bool | None) -> list[Reply]:
        """``feed(wire, hold=True)``: platforms that hold nothing feed at once."""
        return self.feed(wire, media=media)

    def _decoder_close(self) -> list[Event]:
        raise NotImplementedError

    def _error_replies(self, exc: MediaError) -> list[Reply]:
        return []

    def _on_closed(self, reason: str) -> None:
        self._hang_up()

    def _hung_up_replies(self) -> list[Reply]:
        """What to tell the platform when the gateway hung the call up on its own."""
        return []

    def _gateway_hung_up(self, call: CallState) -> None:
        call.accounting.note_end("gateway", "hang-up")
        if self.push is not None:  # the transport decides how to tell the platform
            self.push(self._hung_up_replies())

    # -- shared machinery

    def _call_gone(self) -> bool:
        call = self.call
        return call is not None and (call.closed_at is not None or call.bye_in_progress)

    def _count_error(self, exc: MediaError) -> None:
        self.errors[exc.reason] += 1
        self.accounting.note_error(exc.reason, dropped=False)

    def _on_error(self, exc: MediaError, media: bool) -> list[Reply]:
        self.errors[exc.reason] += 1
        # A refused media message is dropped; a refused control message only counts.
        self.accounting.note_error(exc.reason, dropped=media)
        return self._error_replies(exc)

    def _note_end(self, platform_reason: str | None) -> None:
        """Record how the session ended on its call: ``platform_reason`` is the
        platform's own close reason; None means the connection ended without one."""
        call = self.call
        if call is None or call.accounting.ended_by is not None:
            return
        acc = call.accounting
        if self.failed or self.close_code is not None:
            acc.note_end("error", next(reversed(self.errors), "error"))
        elif platform_reason is not None and self._ending is None:
            acc.note_end("platform", platform_reason)
        elif call.closed_at is None:
            acc.note_end("drop", self._ending or self.no_handshake)

    def _hang_up(self) -> None:
        call = self.call
        if call is not None and call.closed_at is None and call.guid in self.gateway.calls:
            call.on_hang_up = None  # the session ends it: nothing to tell the platform
            self.gateway.hang_up(call.guid)

    def _open(self, event: SessionOpened) -> None:
        gw = self.gateway
        existing = gw.calls.get(event.guid)
        if existing is not None:
            if existing.source != "sim" or existing.namespace != self.namespace:
                raise MediaError(f"call {event.guid} is already open", reason="guid-in-use")
            existing.source = self.transport
            existing.channels = event.channels or existing.channels
            existing.info.update(event.info)
            call = existing
        else:
            try:
                call = gw.open_call(
                    self.namespace,
                    event.guid,
                    event.channels or None,
                    source=self.transport,
                    info=event.info,
                )
            except Problem as exc:
                raise MediaError(str(exc), reason="guid-in-use") from None
        merge_accounting(call.accounting, self._own)
        call.on_hang_up = self._gateway_hung_up
        self.call = call

    def _apply(self, events: list[Event], media: bool) -> list[Reply]:
        replies: list[Reply] = []
        placed = streamed = False
        drop: str | None = None
        now = self.gateway.clock.now()
        for event in events:
            if isinstance(event, AudioChunk):
                call = self.call
                if call is None or call.closed_at is not None:
                    drop = "after-close"
                    continue
                try:
                    streamed |= call.receive(event.channel, event.start_sample, event.pcm, now)
                    placed = True
                except ConfigError:
                    drop = "out-of-range"
            elif isinstance(event, Reply):
                replies.append(event)
            elif isinstance(event, Anomaly):
                drop = self._anomaly(event) or drop
            elif isinstance(event, SessionOpened):
                try:
                    self._open(event)
                except MediaError as exc:
                    replies.extend(self._on_error(exc, media=False))
                    self.failed = True
            elif isinstance(event, SessionPaused):
                if self.call is not None:
                    self.call.note_paused(event.at_sample)
            elif isinstance(event, SessionResumed):
                if self.call is not None:
                    self.call.note_resumed(event.at_sample)
            elif isinstance(event, SessionClosed):
                self._note_end(event.reason)
                self._on_closed(event.reason)
        if media:
            if drop is not None and not placed:
                self.accounting.note_dropped(drop)
            else:
                # Decoded, even when it carried no samples to place (an empty payload, or
                # RTP audio wholly before its stream's anchor): every message counts once.
                self.accounting.note_received(streamed=streamed)
        return replies

    def _anomaly(self, event: Anomaly) -> str | None:
        """Count ``event``; return the drop reason it gives the current message, if any."""
        acc = self.accounting
        acc.anomalies[event.kind] += event.count
        if event.kind == "loss" and self._loss_is_wire_loss:
            acc.note_lost(event.count)
        elif event.kind == "recovered" and self._loss_is_wire_loss:
            acc.note_lost(-event.count)  # counted lost earlier; arrived after all
        elif event.kind == "duplicate":
            return "duplicate"
        elif event.kind == "late":
            return self._drop_late_as
        elif event.kind == "inactive":
            return "paused"
        return None


def merge_accounting(into: Accounting, extra: Accounting) -> None:
    into.received += extra.received
    into.streamed += extra.streamed
    into.lost += extra.lost
    into.dropped.update(extra.dropped)
    into.errors.update(extra.errors)
    into.anomalies.update(extra.anomalies)
    if extra.ended_by is not None:
        into.note_end(extra.ended_by, extra.end_reason or "")
