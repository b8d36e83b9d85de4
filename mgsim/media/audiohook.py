"""Genesys Cloud AudioHook v2: the client's message stream and the server's session.

One AudioHook connection is a WebSocket carrying JSON text messages for control and binary
messages of headerless audio. Every text message is
``{"version": "2", "id": <session id>, "type": ..., "seq": n, "parameters": {...}}``;
the client adds ``serverseq`` (last server ``seq`` it saw) and ``position`` (ISO-8601
duration of audio time so far), the server adds ``clientseq``.

* :func:`encode` plays a :class:`StereoCall` as Genesys would send it: ``open``, binary
  frames of interleaved µ-law (``external`` = the customer first, then ``internal``), periodic
  ``ping``, client-initiated ``paused``/``resumed`` windows, ``discarded`` gaps, ``update``
  and a final ``close``.
* :class:`AudioHookSession` is the server's push decoder. It validates every client message
  and turns it into events plus the :class:`Reply` texts the server sends back.

Timeline rules (all in samples at 8 kHz, counted from the open ``position``):

* binary audio is placed at the current position, which then advances by its sample count;
  frames may have any size (stereo frames need an even byte count);
* ``paused`` stops the timeline; audio arriving while paused is dropped (an ``Anomaly``
  ``"late"``) and messages may report any later position, since the client's clock runs on;
  ``resumed`` states ``start`` (where the pause began) and ``discarded`` (how long it
  lasted) and the stream continues at ``position == start + discarded``;
* ``discarded`` (client dropped audio) moves the position by ``discarded`` the same way and
  is reported as an ``Anomaly`` ``"loss"``.

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

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from mgsim.errors import ConfigError, MediaError
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
    StereoCall,
    Wire,
)
from mgsim.media.g711 import ulaw_decode, ulaw_encode_array

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
    "parse_position",
    "pause_message",
    "resume_message",
]

MAX_MESSAGE_BYTES = 64_000
"""Largest text or binary message either side may send."""

NULL_UUID = "00000000-0000-0000-0000-000000000000"
"""The ``conversationId`` of a connection probe."""

STEREO_OFFER: dict[str, Any] = {
    "type": "audio",
    "format": "PCMU",
    "channels": ["external", "internal"],
    "rate": SAMPLE_RATE,
}
EXTERNAL_OFFER: dict[str, Any] = {**STEREO_OFFER, "channels": ["external"]}

ERROR_CODES = frozenset({400, 405, 408, 409, 413, 415, 429, 500, 503})
CLOSE_REASONS = frozenset({"end", "error", "disconnect", "reconnect"})
_SERVER_TYPES = frozenset(
    {"opened", "closed", "disconnect", "event", "pause", "pong", "reconnect", "resume", "updated"}
)
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_DURATION_RE = re.compile(r"PT(?:(\d{1,6})H)?(?:(\d{1,6})M)?(?:(\d{1,12})(?:\.(\d{1,9}))?S)?")

# 409 for protocol-state conflicts (audio before opened, a second open, anything after close).
_REASON_CODES = {
    "bad-json": 400,
    "bad-message": 400,
    "bad-id": 400,
    "bad-seq": 400,
    "bad-position": 400,
    "bad-frame": 400,
    "unknown-type": 405,
    "wrong-order": 409,
    "oversize": 413,
    "bad-media": 415,
}


class AudioHookError(MediaError):
    """A client message broke the AudioHook protocol.

    ``reason`` is one of ``"bad-json"`` (not a JSON object), ``"bad-message"`` (a field
    missing or mistyped, wrong version), ``"bad-id"`` (not this session's id), ``"bad-seq"``
    (not previous + 1, or ``serverseq`` ahead of the server or going back),
    ``"bad-position"``, ``"bad-frame"`` (empty or odd-sized stereo audio), ``"unknown-type"``,
    ``"wrong-order"``, ``"oversize"`` (over 64,000 bytes) or ``"bad-media"``; ``code`` is the
    AudioHook error code (400, 405, 409, 413, 415; 408, 429, 500, 503 when built by the
    gateway). Audio before ``opened``, a second ``open`` and anything after ``close`` are
    ``"wrong-order"`` with 409, the code for a protocol-state conflict.

    The server answers with :meth:`disconnect_message`, waits for the client's ``close`` and
    closes the WebSocket normally (1000); :attr:`ws_close_code` is the code to use if it
    closes without waiting.

    >>> AudioHookError("no", reason="oversize").ws_close_code
    1009
    """

    def __init__(self, message: str, *, reason: str, code: int | None = None) -> None:
        super().__init__(message, reason=reason)
        self.code = code if code is not None else _REASON_CODES.get(reason, 400)
        if self.code not in ERROR_CODES:
            raise ConfigError(f"{self.code} is not an AudioHook error code")

    @property
    def ws_close_code(self) -> int:
        """RFC 6455 close code: 1009 too big, 1007 bad payload, 1011 server, 1008 otherwise."""
        if self.reason == "oversize":
            return 1009
        if self.reason == "bad-json":
            return 1007
        return 1011 if self.code >= 500 else 1008

    def disconnect_message(self, session: AudioHookSession) -> str:
        """The ``disconnect`` (reason ``"error"``) text the server sends for this error."""
        data = session.disconnect("error", info=f"{self.code} {self.reason}: {self}").data
        assert isinstance(data, str)
        return data


# --- positions -------------------------------------------------------------------------


def format_position(samples: int, rate: int = SAMPLE_RATE) -> str:
    """ISO-8601 duration of ``samples`` at 8 kHz, exact and without trailing zeros.

    >>> format_position(98720), format_position(0), format_position(1)
    ('PT12.34S', 'PT0S', 'PT0.000125S')
    """
    if rate != SAMPLE_RATE or samples < 0:
        raise ConfigError("positions are non-negative sample counts at 8 kHz")
    whole, frac = divmod(samples, rate)
    if not frac:
        return f"PT{whole}S"
    return f"PT{whole}.{frac * (1_000_000 // rate):06d}".rstrip("0") + "S"


def parse_position(text: object) -> int:
    """Samples at 8 kHz in an ISO-8601 duration such as ``"PT12.34S"`` or ``"PT1M2S"``.

    Raises :class:`AudioHookError` (``"bad-position"``) unless it is a duration that lands
    exactly on a sample.

    >>> parse_position("PT12.34S")
    98720
    """
    match = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or text == "PT" or (match[3] is None and match[4] is not None):
        raise AudioHookError(f"not an ISO-8601 duration: {text!r:.60}", reason="bad-position")
    hours, minutes, seconds, frac = match.groups()
    whole = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    samples = whole * SAMPLE_RATE
    if frac:
        scaled, rest = divmod(int(frac) * SAMPLE_RATE, 10 ** len(frac))
        if rest:
            raise AudioHookError(f"{text} is not on a sample boundary", reason="bad-position")
        samples += scaled
    return samples


# --- server message builders ----------------------------------------------------------


def _server_message(
    type_: str, session_id: str, seq: int, clientseq: int, parameters: dict[str, Any]
) -> str:
    message = {
        "version": "2",
        "id": session_id,
        "type": type_,
        "seq": seq,
        "clientseq": clientseq,
        "parameters": parameters,
    }
    return json.dumps(message, separators=(",", ":"))


def pause_message(session_id: str, seq: int, clientseq: int) -> str:
    """The server's ``pause`` request; the client answers ``paused``."""
    return _server_message("pause", session_id, seq, clientseq, {})


def resume_message(session_id: str, seq: int, clientseq: int) -> str:
    """The server's ``resume`` request; the client answers ``resumed``."""
    return _server_message("resume", session_id, seq, clientseq, {})


def disconnect_message(
    session_id: str,
    seq: int,
    clientseq: int,
    reason: Literal["completed", "unauthorized", "error"] = "completed",
    info: str | None = None,
) -> str:
    """The server's ``disconnect``; the client answers with ``close``."""
    parameters: dict[str, Any] = {"reason": reason}
    if info is not None:
        parameters["info"] = info
    return _server_message("disconnect", session_id, seq, clientseq, parameters)


# --- server session -------------------------------------------------------------------

State = Literal["new", "active", "paused", "closed", "failed"]


def _bad(message: str) -> AudioHookError:
    return AudioHookError(message, reason="bad-message")


def _string(params: dict[str, Any], key: str, *, uuid_form: bool = False) -> str:
    value = params.get(key)
    if not isinstance(value, str) or (uuid_form and not _UUID_RE.fullmatch(value)):
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
    """

    def __init__(self, session_id: str | None = None) -> None:
        self.session_id = session_id
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
        self._serverseq = 0
        self._paused_at = 0
        self._clock = 0  # latest position reported while paused
        self._opened_emitted = False
        self._closed_emitted = False

    # -- server-initiated messages

    def _send(self, type_: str, parameters: dict[str, Any]) -> Reply:
        self.seq += 1
        sid = self.session_id or NULL_UUID  # an error before any valid id was seen
        return Reply("ws", _server_message(type_, sid, self.seq, self.clientseq, parameters))

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
                return self._text(data)
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
        try:
            msg = json.loads(data) if isinstance(data, str) else None
        except (ValueError, RecursionError):
            msg = None
        if not isinstance(msg, dict) or msg.get("type") != "close":
            return []
        self.clientseq = msg["seq"] if _is_int(msg.get("seq")) else self.clientseq
        self.state = "closed"
        events: list[Event] = [self._send("closed", {})]
        if self._opened_emitted and not self._closed_emitted:
            self._closed_emitted = True
            events.append(SessionClosed("error"))
        return events

    def _text(self, data: str) -> list[Event]:
        size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            raise AudioHookError("text message over 64,000 bytes", reason="oversize")
        if self.state == "closed":
            raise AudioHookError("message after close", reason="wrong-order")
        try:
            msg = json.loads(data, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise AudioHookError(f"not JSON: {exc}", reason="bad-json") from exc
        if not isinstance(msg, dict):
            raise AudioHookError("message is not a JSON object", reason="bad-json")
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
        conversation = _string(params, "conversationId", uuid_form=True)
        participant = params.get("participant")
        if not isinstance(participant, dict):
            raise _bad("participant must be an object")
        for key in ("id", "ani", "aniName", "dnis"):
            _string(participant, key)
        language = params.get("language")
        if language is not None and not isinstance(language, str):
            raise _bad("language must be a string")
        self.media = _choose_media(params.get("media"))
        self.channels = tuple(self.media["channels"]) if self.media else ()
        self.conversation_id, self.language = conversation, language
        self.probe = conversation == NULL_UUID
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
            parse_position(rtt)
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
        if self.state != "active":
            raise AudioHookError("paused while already paused", reason="wrong-order")
        self._check_position(position)
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
        if self.state in ("new", "closed") or self.probe:
            where = "on a probe" if self.probe else f"in state {self.state}"
            raise AudioHookError(f"audio {where}", reason="wrong-order")
        if self.media is None:
            raise AudioHookError("audio but no media was accepted", reason="bad-media")
        width = len(self.channels)
        if not data or len(data) % width:
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


# --- client encoder -------------------------------------------------------------------

_DEFAULT_ORG = "6a4b6f2e-8d0c-4b8e-9a55-0f3c2d1e7b10"
_ID_NAMESPACE = uuid.UUID("8e3f0a52-2c1d-4f4e-9b7a-5d6c0e1f2a3b")


def _windows(spans: Sequence[tuple[float, float]], n: int, what: str) -> list[tuple[int, int]]:
    out = []
    for start_ms, end_ms in spans:
        start, end = round(start_ms * 8), min(round(end_ms * 8), n)
        if not 0 <= start < end:
            raise ConfigError(f"{what} window {(start_ms, end_ms)} is empty or outside the call")
        out.append((start, end))
    return out


class _Client:
    """Seq/serverseq bookkeeping of the sending side."""

    def __init__(self, session_id: str) -> None:
        self.session_id, self.seq, self.serverseq = session_id, 0, 0

    def message(
        self, type_: str, position: int, parameters: dict[str, Any], *, replied: bool = False
    ) -> str:
        self.seq += 1
        text = json.dumps(
            {
                "version": "2",
                "id": self.session_id,
                "type": type_,
                "seq": self.seq,
                "serverseq": self.serverseq,
                "position": format_position(position),
                "parameters": parameters,
            },
            separators=(",", ":"),
        )
        # In-process playback delivers each reply before the next client message.
        self.serverseq += replied
        return text


def encode(
    call: StereoCall,
    *,
    guid: str,
    session_id: str | None = None,
    organization_id: str = _DEFAULT_ORG,
    participant: dict[str, str] | None = None,
    frame_ms: int = 200,
    frame_sizes: Sequence[int] | None = None,
    pauses: Sequence[tuple[float, float]] = (),
    discards: Sequence[tuple[float, float]] = (),
    updates: Sequence[tuple[float, str]] = (),
    ping_every_ms: int = 5000,
    channels: Literal["stereo", "external"] = "stereo",
    language: str = "en-US",
    probe: bool = False,
) -> Iterator[Wire]:
    """Play ``call`` as a Genesys AudioHook client would send it, on channel ``"ws"``.

    ``guid`` is the ``conversationId`` (a UUID); ``session_id`` defaults to one derived from
    it. ``frame_ms`` sets the frame length, or ``frame_sizes`` the bytes of each frame in a
    repeating cycle. ``pauses`` are client pauses as ``(start_ms, end_ms)``: ``paused``, no
    audio, then ``resumed``; ``discards`` are windows the client drops and reports with
    ``discarded``; ``updates`` are ``(at_ms, language)`` changes. ``channels="external"``
    offers (and sends) only the customer. ``probe`` sends a connection probe: ``open`` with
    the all-zero conversationId, then ``close``. Each :class:`Wire`'s ``at_ms`` is when a
    real-time client sends it: a frame once its last sample is captured.
    """
    if not _UUID_RE.fullmatch(guid):
        raise ConfigError(f"an AudioHook conversationId is a UUID, got {guid!r}")
    client = _Client(session_id or str(uuid.uuid5(_ID_NAMESPACE, guid)))
    participant = participant or {
        "id": str(uuid.uuid5(_ID_NAMESPACE, guid + "/participant")),
        "ani": "+15555550100",
        "aniName": "Customer",
        "dnis": "+15555550199",
    }
    offers = [STEREO_OFFER, EXTERNAL_OFFER] if channels == "stereo" else [EXTERNAL_OFFER]
    open_params = {
        "organizationId": organization_id,
        "conversationId": NULL_UUID if probe else guid,
        "participant": participant,
        "media": offers,
        "language": language,
    }
    yield Wire(0.0, "ws", client.message("open", 0, open_params, replied=True))
    if probe:
        yield Wire(0.0, "ws", client.message("close", 0, {"reason": "end"}, replied=True))
        return

    n = call.n_samples
    width = 2 if channels == "stereo" else 1
    sizes = list(frame_sizes) if frame_sizes is not None else [frame_ms * 8 * width]
    if not sizes or any(s <= 0 or s % width or s > MAX_MESSAGE_BYTES for s in sizes):
        raise ConfigError(f"frame sizes must be positive multiples of {width} up to 64,000")
    customer = np.zeros(n, np.int16)
    customer[: len(call.customer)] = call.customer
    if width == 2:
        both = np.zeros((n, 2), np.int16)
        both[:, 0] = customer
        both[: len(call.agent), 1] = call.agent
        codes = ulaw_encode_array(both).tobytes()  # C order: external, internal, external...
    else:
        codes = ulaw_encode_array(customer).tobytes()

    pause_w, discard_w = _windows(pauses, n, "pause"), _windows(discards, n, "discard")
    gaps = sorted(pause_w + discard_w)
    if any(a[1] > b[0] for a, b in itertools.pairwise(gaps)):
        raise ConfigError("pause and discard windows must not overlap")

    # (sample time, order at that time, kind, a, b); frames sort before control messages
    # at the same instant, a resume/discard report before a pause that starts right there.
    actions: list[tuple[int, int, str, int, Any]] = []
    cursor, cycle = 0, 0
    for gap_start, gap_end in [*gaps, (n, n)]:
        while cursor < gap_start:
            end = min(cursor + sizes[cycle % len(sizes)] // width, gap_start)
            actions.append((end, 0, "frame", cursor, end))
            cursor, cycle = end, cycle + 1
        cursor = max(cursor, gap_end)
    for start, end in pause_w:
        actions += [(start, 2, "paused", start, end), (end, 1, "resumed", start, end)]
    actions += [(end, 1, "discarded", start, end) for start, end in discard_w]
    if ping_every_ms > 0:
        actions += [(t, 3, "ping", 0, None) for t in range(ping_every_ms * 8, n, ping_every_ms * 8)]
    actions += [(min(round(t * 8), n), 3, "update", 0, lang) for t, lang in updates]
    actions.sort(key=lambda a: (a[0], a[1]))

    sent, paused = 0, False  # samples accounted for (audio + reported gaps)
    for at, _, kind, a, b in actions:
        at_ms = at / 8
        if kind == "frame":
            yield Wire(at_ms, "ws", codes[a * width : b * width])
            sent = b
        elif kind == "paused":
            paused = True
            yield Wire(at_ms, "ws", client.message("paused", sent, {}))
        elif kind in ("resumed", "discarded"):
            paused, sent = False, b
            gap = {"start": format_position(a), "discarded": format_position(b - a)}
            yield Wire(at_ms, "ws", client.message(kind, b, gap))
        else:
            # While paused the client's clock runs on; otherwise it reports audio sent.
            position = at if paused else sent
            params = {} if kind == "ping" else {"language": b}
            yield Wire(at_ms, "ws", client.message(kind, position, params, replied=True))
    close_at = n if paused else sent
    yield Wire(n / 8, "ws", client.message("close", close_at, {"reason": "end"}, replied=True))
