"""The server side of every real transport: one :class:`MediaHub` per app.

Each WebSocket, SIP dialog or Kinesis producer gets a :class:`Feeder`: a
:class:`~mgsim.gateway.sessions.MediaSession` plus what the socket layer adds to it —
the media time of each message (milliseconds since the session began, by the gateway's
clock), counting of refused messages in ``ServerState.counters`` and frame lateness.

Everything here runs on the app's event loop: the gateway is not thread-safe, and every
socket callback and request handler is a coroutine or callback of that one loop.

Counter keys (in ``app.state.mgsim.counters``)::

    media.<namespace>.sessions           sessions opened
    media.<namespace>.error.<reason>     messages a decoder refused, by MediaError reason
    media.<namespace>.rejected.<reason>  connections refused before any media (token,
                                         signature, ...)
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any

from mgsim.gateway.sessions import MediaSession, is_media, open_media_session
from mgsim.media._base import Reply, Wire
from mgsim.media.audiohook_signature import NonceCache
from mgsim.transports.loopwatch import LoopWatch
from mgsim.transports.metrics import LatenessHistogram, SessionLateness

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from mgsim.capture.live import Capture, CaptureDir
    from mgsim.clock import Clock
    from mgsim.gateway.calls import CallState, Gateway
    from mgsim.server.app import ServerState
    from mgsim.transports.sip import SipServer

__all__ = ["Feeder", "MediaHub", "hub_of"]


class Feeder:
    """One media session fed from a socket.

    ``quantum_ms`` rounds each message's media time to that grid, and with
    ``clock_from_media`` media time starts at the first media message (messages before it
    are at 0). SIPREC uses both, with the packet time (20 ms): an RTP stream is anchored
    where its first packet arrives, so the session's clock starts with the first packet
    (not with the INVITE, however long the SIP exchange took) and jitter below half a
    packet cannot shift one stream against the other.
    """

    def __init__(
        self,
        hub: MediaHub,
        namespace: str,
        session: MediaSession,
        *,
        quantum_ms: float = 0.0,
        clock_from_media: bool = False,
    ) -> None:
        self.hub = hub
        self.namespace = namespace
        self.session = session
        self.quantum_ms = quantum_ms
        self.t0 = hub.clock.now()
        self._await_media = clock_from_media
        self._errors = 0
        self._seen: Counter[str] = Counter()
        self._lateness = SessionLateness(hub.lateness)
        self._guid: str | None = None
        self._now = hub.clock.now
        self.capture: Capture | None = None
        """Records what the connection carried (``mgsim serve --capture``), or None."""

    def feed(self, channel: str, data: str | bytes) -> list[Reply]:
        """Feed one message that just arrived on ``channel``; return the replies to send."""
        # Runs once per media frame for every live call: one Wire per message, no repeated
        # lookups.
        now = self._now()
        if self._await_media:
            wire = Wire(0.0, channel, data)
            if not is_media(self.namespace, wire):
                return self._feed(wire, False, 0.0)
            self._await_media = False
            self.t0 = now
        arrival_ms = (now - self.t0) * 1000.0
        at_ms = arrival_ms
        if self.quantum_ms:
            at_ms = round(arrival_ms / self.quantum_ms) * self.quantum_ms
        wire = Wire(at_ms, channel, data)
        capture = self.capture
        if capture is not None:
            capture.received(at_ms, data)
        return self._feed(wire, is_media(self.namespace, wire), arrival_ms)

    def media_ms(self) -> float:
        """Now, on this session's media clock (the ``at_ms`` a message arriving now gets)."""
        return (self._now() - self.t0) * 1000.0

    def note_sent(self, replies: list[Reply]) -> None:
        """The transport sent ``replies`` to the platform (recorded when capturing)."""
        capture = self.capture
        if capture is not None:
            at_ms = self.media_ms()
            for reply in replies:
                capture.sent(at_ms, reply.data)

    def note_close(self, sender: str, code: int | None, reason: str = "") -> None:
        """The WebSocket was closed by ``sender`` (recorded when capturing)."""
        capture = self.capture
        if capture is not None:
            capture.closed(self.media_ms(), sender, code, reason)

    def _feed(self, wire: Wire, media: bool, arrival_ms: float) -> list[Reply]:
        session = self.session
        call = session.call
        received = call.accounting.received if call is not None else -1
        replies = session.feed(wire, media=media)
        errors = session.errors
        if errors and errors.total() != self._errors:
            self._count_errors()
        call = session.call
        if call is not None:
            if call.guid != self._guid:
                self._guid = call.guid
                self.hub.remember(call.guid, session)
            if media and call.accounting.received > received:
                self._lateness.observe(arrival_ms, _media_end_ms(call))
        return replies

    def close(self) -> list[Reply]:
        """The connection ended: close the session (the call hangs up)."""
        replies = self.session.close()
        if self.session.errors.total() != self._errors:
            self._count_errors()
        call = self.session.call
        if call is not None and call.guid != self._guid:
            self._guid = call.guid
            self.hub.remember(call.guid, self.session)
        self.hub.closed(self)
        if self.capture is not None:
            self.capture.finish(call.guid if call is not None else None)
        return replies

    def _count_errors(self) -> None:
        for reason, n in self.session.errors.items():
            for _ in range(n - self._seen[reason]):
                self.hub.count(f"media.{self.namespace}.error.{reason}")
            self._seen[reason] = n
        self._errors = self.session.errors.total()


def _media_end_ms(call: CallState) -> float:
    end = 0
    for timeline in call.timelines.values():
        n = len(timeline)
        if n > end:
            end = n
    return end / 8.0


class MediaHub:
    """Transport state of one app (``app.state.media``): open feeders, recent sessions by
    guid, lateness, the SIP server when one runs, Kinesis producers by stream ARN."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.lateness = LatenessHistogram()
        self.sessions: OrderedDict[str, MediaSession] = OrderedDict()
        self.open_sessions: set[Feeder] = set()
        self.sip: SipServer | None = None
        self.kvs_producers: dict[str, Feeder] = {}
        self.loop_watch: LoopWatch | None = None
        """The event loop's stall meter, while the app runs under a real server."""
        self.audiohook_nonces = NonceCache()
        """Nonces of recent AudioHook upgrade signatures (a replay is refused)."""
        self.captures: CaptureDir | None = None
        """Where each call received is recorded (``SimulatorConfig.capture_dir``), or None."""
        directory = getattr(state.config, "capture_dir", None)
        if directory is not None:
            from mgsim.capture.live import CaptureDir

            self.captures = CaptureDir(directory)

    @property
    def clock(self) -> Clock:
        return self.state.clock

    @property
    def gateway(self) -> Gateway:
        return self.state.gateway

    def count(self, key: str) -> None:
        """Add one to ``ServerState.counters[key]``."""
        self.state.count(key)

    def open(
        self,
        namespace: str,
        *,
        quantum_ms: float = 0.0,
        clock_from_media: bool = False,
        **options: Any,
    ) -> Feeder:
        """A new media session of ``namespace`` on the gateway, wrapped for a socket."""
        session = open_media_session(self.gateway, namespace, **options)
        feeder = Feeder(
            self, namespace, session, quantum_ms=quantum_ms, clock_from_media=clock_from_media
        )
        captures = self.captures
        if captures is not None and namespace == "amazonconnect":
            feeder.capture = captures.fragments()
        elif captures is not None and namespace != "siprec":  # SIP records its sockets
            feeder.capture = captures.messages(namespace)
        self.open_sessions.add(feeder)
        self.count(f"media.{namespace}.sessions")
        return feeder

    def remember(self, guid: str, session: MediaSession) -> None:
        """Keep ``session`` by its call's guid: every open one, and the most recently
        remembered ended ones up to the gateway's ``keep_calls`` (as the gateway keeps ended
        calls), so a long run stays in flat memory."""
        self.sessions[guid] = session
        self.sessions.move_to_end(guid)
        self._trim()

    def closed(self, feeder: Feeder) -> None:
        """``feeder``'s connection ended: it is no longer open, and the sessions kept for
        inspection are trimmed to the bound again."""
        self.open_sessions.discard(feeder)
        self._trim()

    def _trim(self) -> None:
        sessions = self.sessions
        excess = len(sessions) - len(self.open_sessions) - self.gateway.keep_calls
        if excess <= 0:
            return
        # Oldest first, skipping sessions still open: their calls are live.
        gone: list[str] = []
        for old, kept in sessions.items():
            if len(gone) >= excess:
                break
            if kept.closed:
                gone.append(old)
        for old in gone:
            del sessions[old]

    def media_counters(self) -> dict[str, int]:
        """The ``media.*`` counters."""
        return {k: v for k, v in sorted(self.state.counters.items()) if k.startswith("media.")}

    def stats(self) -> dict[str, Any]:
        """Counters, open sessions, lateness and the SIP/RTP ports, as JSON."""
        sip = self.sip
        return {
            "counters": self.media_counters(),
            "open_sessions": len(self.open_sessions),
            "lateness": self.lateness.as_dict(),
            "sip": None if sip is None else sip.describe(),
            "loop": None
            if self.loop_watch is None
            else {
                "worst_stall_ms": round(self.loop_watch.worst_s * 1000.0, 1),
                "worst_stall_cpu_ms": round(self.loop_watch.worst_cpu_s * 1000.0, 1),
                "ticks": self.loop_watch.ticks,
            },
        }


def hub_of(app: Starlette) -> MediaHub:
    """The :class:`MediaHub` of an app built by :func:`mgsim.server.app.create_app`."""
    hub: MediaHub = app.state.media
    return hub
