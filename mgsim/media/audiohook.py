"""Genesys Cloud AudioHook v2: the server's session, and the family's front door.

:class:`AudioHookSession` is the server's push decoder. It validates every client message
and turns it into events plus the :class:`Reply` texts the server sends back. The wire
format both sides share (message shape, limits, :class:`AudioHookError`, positions, the
server's ``pause``/``resume``/``disconnect`` texts) is :mod:`mgsim.media.audiohook_protocol`;
the client-side :func:`encode` is :mod:`mgsim.media.audiohook_client`. Their public names are
importable from here too.

Timeline rules (all in samples at 8 kHz, counted from the open ``position``):

* binary audio is placed at the current position, which then advances by its sample count;
  frames may have any size (stereo frames need an even byte count);
* ``paused`` stops the timeline; audio arriving while paused is dropped (an ``Anomaly``
  ``"late"``) and messages may report any later position, since the client's clock runs on;
  ``resumed`` states ``start`` (where the pause began) and ``discarded`` (how long it
  lasted) and the stream continues at ``position == start + discarded``;
* ``discarded`` (client dropped audio) moves the position by ``discarded`` the same way and
  is reported as an ``Anomaly`` ``"loss"``.

What real clients do is tolerated: a ``ping``'s ``rtt`` is a plain duration of any precision
(kept in :attr:`AudioHookSession.rtt_s`), not a position; a second ``paused`` while paused
(the client's answer to a server ``pause`` during its own pause) changes nothing; a 0-byte
binary frame (a connection probe sends one) carries no samples and is no error. A ``close``
is answered with ``closed`` in any state, also when it fails validation (the problem is
reported as an ``Anomaly`` ``"bad-close"``), so the client's close transaction always ends.

``conversationId`` is a UUID and compares case-insensitively: the session reports it in lower
case. With ``organization_id`` (the signed ``Audiohook-Organization-Id`` upgrade header) an
``open`` naming another organization is refused with ``disconnect`` reason
``"unauthorized"``; ``admit`` may refuse a conversation (a second concurrent session for it)
by raising :class:`AudioHookError`, before ``opened`` is sent.

A connection **probe** has the all-zero ``conversationId``: the session answers ``opened`` and
``closed`` but emits neither :class:`SessionOpened` nor :class:`SessionClosed`; the gateway
tells it from a call by :attr:`AudioHookSession.probe` (or by the missing ``SessionOpened``).

>>> import numpy as np
>>> from mgsim.media._base import StereoCall
>>> call = StereoCall(np.zeros(1600, np.int16), np.zeros(1600, np.int16))
>>> session = AudioHookSession()
>>> events = [e for w in encode(call, guid="3f1c2d4e-0000-4000-8000-000000000001")
...           for e in session.feed(w)]
>>> [type(e).__name__ for e in events]
['Reply', 'SessionOpened', 'AudioChunk', 'AudioChunk', 'Reply', 'SessionClosed']
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from mgsim.errors import ConfigError
from mgsim.media._base import (
    SAMPLE_RATE,
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
from mgsim.media.audiohook_client import encode
from mgsim.media.audiohook_protocol import (
    CLOSE_REASONS,
    ERROR_CODES,
    EXTERNAL_OFFER,
    MAX_MESSAGE_BYTES,
    NULL_UUID,
    STEREO_OFFER,
    UUID_RE,
    AudioHookError,
    disconnect_message,
    format_position,
    parse_duration,
    parse_position,
    pause_message,
    resume_message,
    server_message,
)
from mgsim.media.g711 import ulaw_decode

__all__ = [
    "CLOSE_REASONS",
    "ERROR_CODES",
    "EXTERNAL_OFFER",
    "MAX_MESSAGE_BYTES",
    "NULL_UUID",
    "STEREO_OFFER",
    "AudioHookError",
    "AudioHookSession",
    "disconnect_message",
    "encode",
    "format_position",
    "parse_duration",
    "parse_position",
    "pause_message",
    "resume_message",
]

_SERVER_TYPES = frozenset(
    {"opened", "closed", "disconnect", "event", "pause", "pong", "reconnect", "resume", "updated"}
)

# doctest.testmod(audiohook) also runs the examples of what moved to audiohook_protocol.
__test__ = {
    "AudioHookError": AudioHookError,
    "format_position": format_position,
    "parse_duration": parse_duration,
    "parse_position": parse_position,
}

# --- server session -------------------------------------------------------------------

State = Literal["new", "active", "paused", "closed", "failed"]


def _bad(message: str) -> AudioHookError:
    return AudioHookError(message, reason="bad-message")


def _string(params: dict[str, Any], key: str, *, uuid_form: bool = False) -> str:
    value = params.get(key)
    if not isinstance(value, str) or (uuid_form and not UUID_RE.fullmatch(value)):
        raise _bad(f"{key} must be a {'UUID ' if uuid_form else ''}string, got {value!r:.60}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _offer_channels(offer: object) -> tuple[str, ...]:
    if not isinstance(offer, dict):
        raise AudioHookError(f"media offer is not an object: {offer!r:.60}", reason="bad-media")
    chans = offer.get("channels")
    if (
        not isinstance(offer.get("type"), str)
        or not isinstance(offer.get("format"), str)
        or not _is_int(offer.get("rate"))
        or not isinstance(chans, list)
        or not chans
        or not all(isinstance(c, str) for c in chans)
        or len(set(chans)) != len(chans)
        or not set(chans) <= {"external", "internal"}
    ):
        raise AudioHookError(f"malformed media offer: {offer!r:.120}", reason="bad-media")
    return tuple(chans)


def _choose_media(offers: object) -> dict[str, Any] | None:
    if not isinstance(offers, list):
        raise AudioHookError("media must be a list of offers", reason="bad-media")
    usable = []
    for offer in offers:
        chans = _offer_channels(offer)
        if offer["type"] == "audio" and offer["format"] == "PCMU" and offer["rate"] == SAMPLE_RATE:
            usable.append((len(chans) != 2, offer))
    # Stereo first; among equals, the client's order of preference.
    usable.sort(key=lambda pair: pair[0])
    return dict(usable[0][1]) if usable else None


class AudioHookSession:
    """Server side of one AudioHook connection: ``feed`` client messages, get events.

    ``session_id`` is the ``Audiohook-Session-Id`` upgrade header; without it the id of the
    first message is adopted. ``feed`` takes a :class:`Wire`, a text message (``str``) or a
    binary one (``bytes``) and returns the events, including the :class:`Reply` texts to
    send. A protocol violation raises :class:`AudioHookError`; the session then only waits
    for the client's ``close`` (other messages are ignored), as the server has sent
    ``disconnect``. ``close()`` reports a connection that ended without ``close``.

    ``organization_id`` and ``admit`` check the ``open`` (see the module docstring).
    """

    def __init__(
        self,
        session_id: str | None = None,
        *,
        organization_id: str | None = None,
        admit: Callable[[str], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.organization_id = organization_id
        self._admit = admit
        self.state: State = "new"
        self.seq = 0
        """The last ``seq`` the server sent."""
        self.clientseq = 0
        self.position = 0
        """Sample index of the next audio sample (counting paused and discarded time)."""
        self.probe = False
        self.conversation_id: str | None = None
        self.language: str | None = None
        self.media: dict[str, Any] | None = None
        self.channels: tuple[str, ...] = ()
        self.rtt_s: float | None = None
        """The round trip the client last reported in a ``ping`` (seconds)."""
        self.disconnected = False
        """Whether the server has sent ``disconnect`` (it then waits for ``close``)."""
        self._serverseq = 0
        self._paused_at = 0
        self._clock = 0  # latest position reported while paused
        self._opened_emitted = False
        self._closed_emitted = False

    # -- server-initiated messages

    def _send(self, type_: str, parameters: dict[str, Any]) -> Reply:
        self.seq += 1
        sid = self.session_id or NULL_UUID  # an error before any valid id was seen
        return Reply("ws", server_message(type_, sid, self.seq, self.clientseq, parameters))

    def pause(self) -> Reply:
        """Ask the client to pause (it answers ``paused``)."""
        if self.state not in ("active", "paused"):
            raise ConfigError(f"cannot pause a session in state {self.state!r}")
        return self._send("pause", {})

    def resume(self) -> Reply:
        """Ask the client to resume (it answers ``resumed``)."""
        if self.state not in ("active", "paused"):
            raise ConfigError(f"cannot resume a session in state {self.state!r}")
        return self._send("resume", {})

    def disconnect(
        self,
        reason: Literal["completed", "unauthorized", "error"] = "completed",
        info: str | None = None,
    ) -> Reply:
        """Tell the client to close the session (it answers ``close``).

        Raises :class:`~mgsim.errors.ConfigError` once the session is closed.
        """
        if self.state == "closed":
            raise ConfigError("the session is closed; nothing more may be sent")
        self.disconnected = True
        self.seq += 1
        sid = self.session_id or NULL_UUID
        return Reply("ws", disconnect_message(sid, self.seq, self.clientseq, reason, info))

    # -- feeding

    def feed(self, message: Wire | str | bytes) -> list[Event]:
        """Process one client message; return the events it produces."""
        data = message.data if isinstance(message, Wire) else message
        if self.state == "failed":
            return self._after_failure(data)
        try:
            if isinstance(data, str):
                try:
                    return self._text(data)
                except AudioHookError as exc:
                    closing = self._close_despite(data, exc)
                    if closing is None:
                        raise
                    return closing
            if isinstance(data, bytes | bytearray | memoryview):
                return self._binary(bytes(data))
            raise AudioHookError(f"not a message: {type(data).__name__}", reason="bad-frame")
        except AudioHookError:
            if self.state != "closed":
                self.state = "failed"
            raise

    def close(self) -> list[Event]:
        """The connection ended; report the session closed if no ``close`` was seen."""
        events: list[Event] = []
        if self._opened_emitted and not self._closed_emitted:
            self._closed_emitted = True
            events.append(SessionClosed("error" if self.state == "failed" else "connection-lost"))
        self.state = "closed"
        return events

    def _after_failure(self, data: object) -> list[Event]:
        msg = _close_message(data)
        if msg is None:
            return []
        return self._closed(msg, "error")

    def _close_despite(self, data: str, exc: AudioHookError) -> list[Event] | None:
        """A ``close`` that failed validation is still answered with ``closed`` (the
        client's close transaction must end); None when ``data`` is not a close."""
        msg = _close_message(data)
        if msg is None:
            return None
        params = msg.get("parameters")
        reason = params.get("reason") if isinstance(params, dict) else None
        valid = isinstance(reason, str) and reason in CLOSE_REASONS
        events = self._closed(msg, str(reason) if valid else "error")
        return [Anomaly("bad-close", f"{exc.reason}: {exc}"), *events]

    def _closed(self, msg: dict[str, Any], reason: str) -> list[Event]:
        self.clientseq = msg["seq"] if _is_int(msg.get("seq")) else self.clientseq
        self.state = "closed"
        events: list[Event] = [self._send("closed", {})]
        if self._opened_emitted and not self._closed_emitted:
            self._closed_emitted = True
            events.append(SessionClosed(reason))
        return events

    def _text(self, data: str) -> list[Event]:
        size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            raise AudioHookError("text message over 64,000 bytes", reason="oversize")
        try:
            msg = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise AudioHookError(f"not JSON: {exc}", reason="bad-json") from exc
        if not isinstance(msg, dict):
            raise AudioHookError("message is not a JSON object", reason="bad-json")
        if self.state == "closed":
            if msg.get("type") == "close":  # a repeated close: answered again, nothing more
                return self._closed(msg, "end")[:1]
            raise AudioHookError("message after close", reason="wrong-order")
        if msg.get("version") != "2":
            raise _bad(f'version must be "2", got {msg.get("version")!r:.20}')
        msg_id = _string(msg, "id", uuid_form=True)
        if self.session_id is None:
            self.session_id = msg_id
        elif msg_id.lower() != self.session_id.lower():
            raise AudioHookError(f"id {msg_id} is not session {self.session_id}", reason="bad-id")
        type_ = _string(msg, "type")
        seq, serverseq, params = msg.get("seq"), msg.get("serverseq"), msg.get("parameters")
        if not (isinstance(seq, int) and isinstance(serverseq, int) and isinstance(params, dict)):
            raise _bad("seq and serverseq must be integers and parameters an object")
        if isinstance(seq, bool) or isinstance(serverseq, bool):
            raise _bad("seq and serverseq must be integers, not booleans")
        if seq != self.clientseq + 1:
            raise AudioHookError(f"seq {seq} after {self.clientseq}", reason="bad-seq")
        if not self._serverseq <= serverseq <= self.seq:
            raise AudioHookError(
                f"serverseq {serverseq} outside {self._serverseq}..{self.seq}", reason="bad-seq"
            )
        self.clientseq, self._serverseq = seq, serverseq
        handler = _HANDLERS.get(type_)
        if handler is None:
            side = "a server message type" if type_ in _SERVER_TYPES else "not a message type"
            raise AudioHookError(f"{type_!r:.40} is {side}", reason="unknown-type")
        if self.state == "new" and type_ not in ("open", "close"):
            raise AudioHookError(f"{type_} before open", reason="wrong-order")
        return handler(self, params, parse_position(msg.get("position")))

    def _check_position(self, position: int) -> None:
        if self.state == "paused":
            if position < self._clock:
                raise AudioHookError(
                    f"position went back to {position} while paused", reason="bad-position"
                )
            self._clock = position
        elif self.state == "active" and position != self.position:
            raise AudioHookError(
                f"position {format_position(position)} but {format_position(self.position)} "
                "of audio received",
                reason="bad-position",
            )

    def _on_open(self, params: dict[str, Any], position: int) -> list[Event]:
        if self.state != "new":
            raise AudioHookError("a second open", reason="wrong-order")
        org = _string(params, "organizationId", uuid_form=True)
        conversation = _string(params, "conversationId", uuid_form=True).lower()
        participant = params.get("participant")
        if not isinstance(participant, dict):
            raise _bad("participant must be an object")
        for key in ("id", "ani", "aniName", "dnis"):
            _string(participant, key)
        language = params.get("language")
        if language is not None and not isinstance(language, str):
            raise _bad("language must be a string")
        self.media = _choose_media(params.get("media"))
        if self.organization_id is not None and org.lower() != self.organization_id.lower():
            raise AudioHookError(
                f"organizationId {org} is not the signed Audiohook-Organization-Id "
                f"{self.organization_id}",
                reason="unauthorized",
            )
        self.probe = conversation == NULL_UUID
        if not self.probe and self._admit is not None:
            self._admit(conversation)
        self.channels = tuple(self.media["channels"]) if self.media else ()
        self.conversation_id, self.language = conversation, language
        self.position = self._clock = position
        self.state = "active"
        events: list[Event] = [
            self._send(
                "opened", {"media": [self.media] if self.media else [], "startPaused": False}
            )
        ]
        if not self.probe:
            self._opened_emitted = True
            info = {
                "sessionId": self.session_id,
                "organizationId": org,
                "participant": participant,
                "media": [self.media] if self.media else [],
                "offered": params.get("media"),
                "language": language,
                "probe": False,
            }
            events.append(SessionOpened(conversation, self.channels, info))
        return events

    def _on_close(self, params: dict[str, Any], position: int) -> list[Event]:
        reason = params.get("reason")
        if not isinstance(reason, str) or reason not in CLOSE_REASONS:
            raise _bad(f"close reason must be one of {sorted(CLOSE_REASONS)}, got {reason!r:.30}")
        self._check_position(position)
        if self.state == "new":
            self.state = "active"  # lets _send run; closing before open is allowed
        events: list[Event] = [self._send("closed", {})]
        self.state = "closed"
        if self._opened_emitted:
            self._closed_emitted = True
            events.append(SessionClosed(str(reason)))
        return events

    def _on_ping(self, params: dict[str, Any], position: int) -> list[Event]:
        rtt = params.get("rtt")
        if rtt is not None:
            # A round trip the client measured, to the nanosecond: not a stream position.
            self.rtt_s = parse_duration(rtt)
        self._check_position(position)
        return [self._send("pong", {})]

    def _on_update(self, params: dict[str, Any], position: int) -> list[Event]:
        self.language = _string(params, "language")
        self._check_position(position)
        return [self._send("updated", {})]

    def _on_error(self, params: dict[str, Any], position: int) -> list[Event]:
        code, text = params.get("code"), params.get("message")
        if not _is_int(code) or code not in ERROR_CODES or not isinstance(text, str):
            raise _bad("error needs an AudioHook code and a message")
        self._check_position(position)
        return [Anomaly("client-error", f"{code}: {text}")]

    def _on_paused(self, params: dict[str, Any], position: int) -> list[Event]:
        self._check_position(position)
        if self.state == "paused":
            # The client answers a server ``pause`` during its own pause with ``paused``
            # again: the stream is still paused, nothing changes.
            return []
        self.state, self._paused_at, self._clock = "paused", position, position
        return [SessionPaused(position)]

    def _gap(self, params: dict[str, Any], position: int, start_at: int) -> int:
        if not isinstance(params.get("start"), str) or not isinstance(params.get("discarded"), str):
            raise _bad("start and discarded must be durations")
        start, gap = parse_position(params["start"]), parse_position(params["discarded"])
        if start != start_at or position != start + gap or position < self._clock:
            raise AudioHookError(
                f"start {params['start']} + discarded {params['discarded']} must equal position "
                f"{format_position(position)} and start at {format_position(start_at)}",
                reason="bad-position",
            )
        return gap

    def _on_resumed(self, params: dict[str, Any], position: int) -> list[Event]:
        if self.state != "paused":
            raise AudioHookError("resumed while not paused", reason="wrong-order")
        self._gap(params, position, self._paused_at)
        self.state, self.position = "active", position
        return [SessionResumed(position)]

    def _on_discarded(self, params: dict[str, Any], position: int) -> list[Event]:
        if self.state != "active":
            raise AudioHookError("discarded while paused", reason="wrong-order")
        gap = self._gap(params, position, self.position)
        self.position = self._clock = position
        return [Anomaly("loss", f"client discarded {gap} samples before sample {position}")]

    def _binary(self, data: bytes) -> list[Event]:
        if len(data) > MAX_MESSAGE_BYTES:
            raise AudioHookError(f"binary message of {len(data)} bytes", reason="oversize")
        if not data and self.state in ("active", "paused"):
            return []  # no samples: a connection probe sends one such frame
        if self.state in ("new", "closed") or self.probe:
            where = "on a probe" if self.probe else f"in state {self.state}"
            raise AudioHookError(f"audio {where}", reason="wrong-order")
        if self.media is None:
            raise AudioHookError("audio but no media was accepted", reason="bad-media")
        width = len(self.channels)
        if len(data) % width:
            raise AudioHookError(
                f"{len(data)} bytes is not whole {width}-channel samples", reason="bad-frame"
            )
        if self.state == "paused":
            return [Anomaly("late", f"{len(data)} bytes of audio while paused dropped")]
        pcm = ulaw_decode(data)
        start = self.position
        self.position += len(pcm) // width
        if width == 1:
            return [AudioChunk(self.channels[0], start, pcm)]
        return [
            AudioChunk(name, start, np.ascontiguousarray(pcm[i::width]))
            for i, name in enumerate(self.channels)
        ]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _close_message(data: object) -> dict[str, Any] | None:
    """``data`` parsed, when it is a JSON object of type ``close``."""
    try:
        msg = json.loads(data) if isinstance(data, str) else None
    except (ValueError, RecursionError):
        return None
    return msg if isinstance(msg, dict) and msg.get("type") == "close" else None


_Handler = Callable[[AudioHookSession, dict[str, Any], int], list[Event]]
_HANDLERS: dict[str, _Handler] = {
    "open": AudioHookSession._on_open,
    "close": AudioHookSession._on_close,
    "ping": AudioHookSession._on_ping,
    "update": AudioHookSession._on_update,
    "error": AudioHookSession._on_error,
    "paused": AudioHookSession._on_paused,
    "resumed": AudioHookSession._on_resumed,
    "discarded": AudioHookSession._on_discarded,
}
