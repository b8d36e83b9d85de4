"""Genesys Cloud AudioHook v2 wire format: constants, errors, positions, server messages.

One AudioHook connection is a WebSocket carrying JSON text messages for control and binary
messages of headerless audio. Every text message is
``{"version": "2", "id": <session id>, "type": ..., "seq": n, "parameters": {...}}``;
the client adds ``serverseq`` (last server ``seq`` it saw) and ``position`` (ISO-8601
duration of audio time so far), the server adds ``clientseq``.

This module holds what both sides share: the limits and media offers, :class:`AudioHookError`
with its error and WebSocket close codes, :func:`format_position` / :func:`parse_position`,
and the builders of the server's ``pause``, ``resume`` and ``disconnect`` texts. The server
session is :mod:`mgsim.media.audiohook`, the client-side encoder
:mod:`mgsim.media.audiohook_client`.

>>> parse_position(format_position(98720))
98720
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Protocol

from mgsim.errors import ConfigError, MediaError
from mgsim.media._base import SAMPLE_RATE, Reply

__all__ = [
    "CLOSE_REASONS",
    "ERROR_CODES",
    "EXTERNAL_OFFER",
    "MAX_MESSAGE_BYTES",
    "NULL_UUID",
    "STEREO_OFFER",
    "UUID_RE",
    "AudioHookError",
    "disconnect_message",
    "format_position",
    "parse_duration",
    "parse_position",
    "pause_message",
    "resume_message",
    "server_message",
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
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
"""A UUID in its 8-4-4-4-12 hex form (ids and conversationIds must match it)."""
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
    "conflict": 409,
    "unauthorized": 400,
    "oversize": 413,
    "bad-media": 415,
}


class _Disconnecting(Protocol):
    """What :meth:`AudioHookError.disconnect_message` needs of a session."""

    def disconnect(
        self,
        reason: Literal["completed", "unauthorized", "error"] = ...,
        info: str | None = ...,
    ) -> Reply: ...


class AudioHookError(MediaError):
    """A client message broke the AudioHook protocol.

    ``reason`` is one of ``"bad-json"`` (not a JSON object), ``"bad-message"`` (a field
    missing or mistyped, wrong version), ``"bad-id"`` (not this session's id), ``"bad-seq"``
    (not previous + 1, or ``serverseq`` ahead of the server or going back),
    ``"bad-position"``, ``"bad-frame"`` (empty or odd-sized stereo audio), ``"unknown-type"``,
    ``"wrong-order"``, ``"oversize"`` (over 64,000 bytes) or ``"bad-media"``; ``code`` is the
    AudioHook error code (400, 405, 409, 413, 415; 408, 429, 500, 503 when built by the
    gateway). Audio before ``opened``, a second ``open`` and anything after ``close`` are
    ``"wrong-order"`` with 409, the code for a protocol-state conflict; ``"conflict"`` (409)
    refuses an ``open`` for a conversation that already has a session; ``"unauthorized"``
    (an ``open`` for another organization than the signed one) is answered with a
    ``disconnect`` of reason ``"unauthorized"`` instead of ``"error"``.

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

    def disconnect_message(self, session: _Disconnecting) -> str:
        """The ``disconnect`` (reason ``"error"``) text the server sends for this error."""
        if self.reason == "unauthorized":
            data = session.disconnect("unauthorized", info=str(self)).data
        else:
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


def parse_duration(text: object) -> float:
    """Seconds in an ISO-8601 duration with up to nanosecond precision, such as a ``ping``'s
    ``rtt`` (``"PT0.001885396S"``): a plain duration, not a stream position, so it need not
    land on a sample.

    Raises :class:`AudioHookError` (``"bad-message"``) unless it is such a duration.

    >>> parse_duration("PT0.001885396S")
    0.001885396
    """
    match = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or text == "PT" or (match[3] is None and match[4] is not None):
        raise AudioHookError(f"not an ISO-8601 duration: {text!r:.60}", reason="bad-message")
    hours, minutes, seconds, frac = match.groups()
    whole = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


# --- server message builders ----------------------------------------------------------


def server_message(
    type_: str, session_id: str, seq: int, clientseq: int, parameters: dict[str, Any]
) -> str:
    """One compact server text message; ``clientseq`` is the last client ``seq`` seen.

    >>> server_message("pong", NULL_UUID, 3, 4, {})[:46]
    '{"version":"2","id":"00000000-0000-0000-0000-0'
    """
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
    return server_message("pause", session_id, seq, clientseq, {})


def resume_message(session_id: str, seq: int, clientseq: int) -> str:
    """The server's ``resume`` request; the client answers ``resumed``."""
    return server_message("resume", session_id, seq, clientseq, {})


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
    return server_message("disconnect", session_id, seq, clientseq, parameters)
