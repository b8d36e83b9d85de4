"""Twilio Media Streams: JSON text frames on one WebSocket (channel ``"ws"``).

A stream is ``connected``, ``start``, then ``media`` messages (base64 µ-law, 8 kHz mono,
one message per track per 20 ms, the two tracks interleaved), optionally ``mark`` and
``dtmf``, and finally ``stop``. Numeric-looking fields (``sequenceNumber``, ``chunk``,
``timestamp``) are JSON strings. ``chunk`` counts per track from 1; ``timestamp`` is ms
since the stream began and is the only clock the decoder trusts, because arrival is bursty
and Twilio may send nothing during silence.

>>> import numpy as np
>>> from mgsim.media._base import StereoCall
>>> call = StereoCall(customer=np.full(320, 1000, np.int16), agent=np.zeros(320, np.int16))
>>> wires = list(encode(call, guid="CA" + "0" * 32))
>>> [json.loads(w.data)["event"] for w in wires]
['connected', 'start', 'media', 'media', 'media', 'media', 'stop']
>>> dec = TwilioDecoder()
>>> events = [e for w in wires for e in dec.feed(w)] + dec.close()
>>> [(e.channel, e.start_sample, int(e.pcm[0])) for e in events if isinstance(e, AudioChunk)]
[('inbound', 0, 988), ('outbound', 0, 0), ('inbound', 160, 988), ('outbound', 160, 0)]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mgsim.errors import ConfigError, MediaError
from mgsim.media._base import (
    SAMPLE_RATE,
    Anomaly,
    AudioChunk,
    Event,
    SessionClosed,
    SessionOpened,
    StereoCall,
    Wire,
)
from mgsim.media.g711 import ulaw_decode, ulaw_encode_array

__all__ = [
    "CALL_SID",
    "CLOSE_CODES",
    "DEFAULT_ACCOUNT_SID",
    "MAX_MESSAGE_BYTES",
    "MAX_TIMESTAMP_MS",
    "MEDIA_FORMAT",
    "TRACKS",
    "MuLawFrame",
    "TrackStats",
    "TwilioDecoder",
    "TwilioError",
    "encode",
    "stream_sid_for",
]

Track = Literal["inbound", "outbound"]

TRACKS: tuple[Track, Track] = ("inbound", "outbound")
"""``inbound`` is the caller's audio into Twilio, ``outbound`` what Twilio plays to them."""

MEDIA_FORMAT: dict[str, Any] = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
"""The only media format Twilio streams (and the decoder accepts)."""

DEFAULT_ACCOUNT_SID = "AC6d6773696d0000000000000000000001"
"""A fixed, well-formed account SID (``AC`` + 32 hex) for simulated streams."""

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest text frame the decoder accepts. A 20 ms media message is about 300 bytes, so this
leaves room for frames up to ~6 s and generous ``customParameters``."""

MAX_TIMESTAMP_MS = 24 * 3600 * 1000
"""Latest media ``timestamp`` accepted (one day): later ones would make the gateway allocate
absurd timelines, so they are rejected as malformed."""

CALL_SID = re.compile(r"CA[0-9a-f]{32}")
"""A Twilio Call SID: ``CA`` and 32 lowercase hex digits (the start-streaming guid's form).
Stream SIDs (``MZ``) and account SIDs (``AC``) have the same shape."""

CLOSE_CODES: dict[str, int] = {
    "bad-json": 1007,
    "bad-base64": 1007,
    "missing-field": 1007,
    "bad-sid": 1007,
    "unknown-event": 1003,
    "bad-format": 1003,
    "wrong-order": 1008,
    "wrong-stream": 1008,
    "oversize": 1009,
}
"""WebSocket close code (RFC 6455) the gateway should use for each :class:`TwilioError`
reason: 1007 invalid payload data (a malformed field or SID), 1003 data it cannot accept,
1008 policy violation, 1009 message too big. (A start whose callSid another stream already
has is refused by the gateway, not the decoder, with 1008 and reason ``guid-in-use``.)"""

_NUMBER_DIGITS = 15  # string-numbers longer than this are not believable counters
_DTMF_DIGITS = frozenset("0123456789*#ABCD")


class TwilioError(MediaError):
    """A Twilio Media Streams message the gateway must refuse.

    ``reason`` is one of the keys of :data:`CLOSE_CODES`; ``ws_close_code`` is the WebSocket
    close code that goes with it.

    >>> try:
    ...     TwilioDecoder().feed("{")
    ... except TwilioError as err:
    ...     print(err.reason, err.ws_close_code)
    bad-json 1007
    """

    def __init__(self, message: str, *, reason: str) -> None:
        if reason not in CLOSE_CODES:
            raise ValueError(f"unknown TwilioError reason {reason!r}")
        super().__init__(message, reason=reason)
        self.ws_close_code = CLOSE_CODES[reason]


def stream_sid_for(guid: str) -> str:
    """The deterministic stream SID (``MZ`` + 32 hex) mgsim uses for a call id.

    >>> stream_sid_for("CA" + "0" * 32) == stream_sid_for("CA" + "0" * 32)
    True
    """
    digest = hashlib.sha256(guid.encode("utf-8", "surrogatepass")).hexdigest()
    return "MZ" + digest[:32]


# --------------------------------------------------------------------------- encoder


def encode(
    call: StereoCall,
    *,
    guid: str,
    stream_sid: str | None = None,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    customer_track: Track = "inbound",
    frame_ms: int = 20,
    custom_parameters: dict[str, str] | None = None,
    omit_silence: bool = False,
) -> Iterator[Wire]:
    """Play ``call`` as the Twilio Media Streams message sequence of a two-track stream.

    ``guid`` becomes the ``callSid``. The customer is sent on ``customer_track`` and the
    agent on the other track. Per tick of ``frame_ms`` there is one ``media`` message per
    track (inbound first) whose ``timestamp`` and ``Wire.at_ms`` are the tick's start in
    media time. Every message carries a whole frame (160 bytes at 20 ms), the last one too:
    Twilio forwards the call's RTP packets, which are whole 20 ms packets, so the end of a
    call that is not a whole number of frames is padded with digital silence, as the
    packetizer pads it. With ``omit_silence`` all-zero frames are not
    sent (``chunk`` and ``sequenceNumber`` count only what is sent, as Twilio's do).
    Arguments are checked before the first message is produced.
    """
    if not isinstance(call, StereoCall):
        raise ConfigError("call must be a StereoCall")
    if not isinstance(guid, str) or not guid:
        raise ConfigError("guid must be a non-empty string")
    sid = stream_sid_for(guid) if stream_sid is None else stream_sid
    for name, value in (("stream_sid", sid), ("account_sid", account_sid)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string")
    if customer_track not in TRACKS:
        raise ConfigError(f"customer_track must be one of {TRACKS}, got {customer_track!r}")
    if isinstance(frame_ms, bool) or not isinstance(frame_ms, int) or not 1 <= frame_ms <= 1000:
        raise ConfigError(f"frame_ms must be an integer from 1 to 1000, got {frame_ms!r}")
    params = dict(custom_parameters or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise ConfigError("custom_parameters must map strings to strings")
    return _messages(call, guid, sid, account_sid, customer_track, frame_ms, params, omit_silence)


def _messages(
    call: StereoCall,
    guid: str,
    sid: str,
    account_sid: str,
    customer_track: Track,
    frame_ms: int,
    params: dict[str, str],
    omit_silence: bool,
) -> Iterator[Wire]:
    n = call.n_samples
    flen = frame_ms * SAMPLE_RATE // 1000
    n_frames = -(-n // flen)
    inbound, outbound = (
        (call.customer, call.agent) if customer_track == "inbound" else (call.agent, call.customer)
    )
    tracks: list[tuple[str, bytes, np.ndarray[Any, np.dtype[np.bool_]]]] = []
    for name, pcm in (("inbound", inbound), ("outbound", outbound)):
        padded = np.zeros(n_frames * flen, dtype=np.int16)
        padded[: len(pcm)] = pcm
        audible: np.ndarray[Any, np.dtype[np.bool_]] = np.any(
            padded.reshape(n_frames, flen), axis=1
        )
        tracks.append((name, ulaw_encode_array(padded).tobytes(), audible))

    sid_json = json.dumps(sid)
    yield Wire(0.0, "ws", '{"event":"connected","protocol":"Call","version":"1.0.0"}')
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": account_sid,
            "streamSid": sid,
            "callSid": guid,
            "tracks": list(TRACKS),
            "mediaFormat": dict(MEDIA_FORMAT),
            "customParameters": params,
        },
        "streamSid": sid,
    }
    yield Wire(0.0, "ws", json.dumps(start))

    seq = 1
    chunks = [0, 0]
    b64 = base64.b64encode
    for i in range(n_frames):
        ts = i * frame_ms
        lo, hi = i * flen, (i + 1) * flen
        for t, (name, codes, audible) in enumerate(tracks):
            if omit_silence and not audible[i]:
                continue
            seq += 1
            chunks[t] += 1
            payload = b64(codes[lo:hi]).decode("ascii")
            text = (
                f'{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"{name}",'
                f'"chunk":"{chunks[t]}","timestamp":"{ts}","payload":"{payload}"}},'
                f'"streamSid":{sid_json}}}'
            )
            yield Wire(float(ts), "ws", text)

    stop = {
        "event": "stop",
        "sequenceNumber": str(seq + 1),
        "stop": {"accountSid": account_sid, "callSid": guid},
        "streamSid": sid,
    }
    yield Wire(call.duration_ms, "ws", json.dumps(stop))


# --------------------------------------------------------------------------- decoder


@dataclass(frozen=True, slots=True)
class MuLawFrame:
    """One in-order media message's audio, still µ-law: ``codes`` for ``track`` from
    ``start_sample`` on (see :meth:`TwilioDecoder.feed_codes`)."""

    track: str
    start_sample: int
    codes: bytes


@dataclass(frozen=True, slots=True)
class TrackStats:
    """What the decoder saw on one track.

    ``frames``/``bytes`` count accepted media messages and their µ-law bytes; ``duplicates``
    the dropped repeats of a chunk; ``reordered`` the frames older than that track's latest
    timestamp; ``gaps`` the chunk numbers still missing below the highest chunk seen (a hole
    filled by a late frame stops counting, so at the end this is the loss).
    """

    frames: int = 0
    bytes: int = 0
    duplicates: int = 0
    reordered: int = 0
    gaps: int = 0


@dataclass(slots=True)
class _Track:
    next_chunk: int = 1
    holes: list[tuple[int, int]] = field(default_factory=list)  # sorted [lo, hi) still missing
    missing: int = 0
    latest_ts: int = -1
    frames: int = 0
    bytes: int = 0
    duplicates: int = 0
    reordered: int = 0

    def take_chunk(self, chunk: int) -> str:
        """Classify a chunk number: "next", "gap" (skips ahead), "late" (fills a hole), "dup"."""
        if chunk == self.next_chunk:
            self.next_chunk += 1
            return "next"
        if chunk > self.next_chunk:
            self.holes.append((self.next_chunk, chunk))
            self.missing += chunk - self.next_chunk
            self.next_chunk = chunk + 1
            return "gap"
        i = bisect_right(self.holes, chunk, key=lambda hole: hole[0]) - 1
        if i < 0 or not self.holes[i][0] <= chunk < self.holes[i][1]:
            return "dup"
        lo, hi = self.holes[i]
        self.holes[i : i + 1] = [h for h in ((lo, chunk), (chunk + 1, hi)) if h[0] < h[1]]
        self.missing -= 1
        return "late"


def _fail(reason: str, message: str) -> TwilioError:
    return TwilioError(message, reason=reason)


def _obj(msg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise _fail("missing-field", f"{where}: {key!r} must be an object")
    return value


def _str(msg: dict[str, Any], key: str, where: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise _fail("missing-field", f"{where}: {key!r} must be a non-empty string")
    return value


_SID_HEX = re.compile(r"[0-9a-f]{32}")


def _sid(msg: dict[str, Any], key: str, prefix: str, where: str) -> str:
    """A Twilio SID field: ``prefix`` and 32 lowercase hex digits, the whole value."""
    value = _str(msg, key, where)
    if not (value.startswith(prefix) and _SID_HEX.fullmatch(value, 2)):
        raise _fail(
            "bad-sid",
            f"{where}: {key!r} must be {prefix} followed by 32 lowercase hex digits, "
            f"got {value[:40]!r}",
        )
    return value


def _num(msg: dict[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = msg.get(key)
    if (
        isinstance(value, str)
        and 0 < len(value) <= _NUMBER_DIGITS
        and value.isascii()
        and value.isdigit()
        and (number := int(value)) >= minimum
    ):
        return number
    raise _fail("missing-field", f"{where}: {key!r} must be a string integer >= {minimum}")


def _int(msg: dict[str, Any], key: str, where: str) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("missing-field", f"{where}: {key!r} must be a JSON integer")
    return value


class TwilioDecoder:
    """Push decoder for one Twilio Media Streams WebSocket.

    ``feed`` takes each text frame (a :class:`Wire`, ``str`` or UTF-8 ``bytes``) and returns
    events: ``start`` gives :class:`SessionOpened` (``guid`` = ``callSid``, ``channels`` = the
    tracks, ``info`` with streamSid, accountSid, customParameters, mediaFormat); ``media``
    gives :class:`AudioChunk` placed at ``timestamp * 8``; ``stop`` gives
    :class:`SessionClosed` ``("stop")``; ``mark`` gives nothing; ``dtmf`` gives
    ``Anomaly(kind="dtmf", detail=<digit>, channel=<track without "_track">)``.

    Surviving anomalies are reported as :class:`Anomaly` records: ``"duplicate"`` (same
    track and chunk again, dropped), ``"reorder"`` (timestamp older than the track's
    latest; the audio is still placed by its timestamp), ``"gap"`` (chunk numbers skipped,
    ``count`` of them) and, at ``stop`` or ``close``, ``"loss"`` for chunks never received.
    Anything else raises :class:`TwilioError` before any state changes; the gateway then
    closes the WebSocket with the error's ``ws_close_code``.
    """

    def __init__(self, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._max = max_message_bytes
        self._state = "idle"  # idle -> connected -> open -> closed
        self._sid = ""
        self._call_sid = ""
        self._tracks: dict[str, _Track] = {}

    @property
    def state(self) -> str:
        """``"idle"``, ``"connected"``, ``"open"`` (after start) or ``"closed"``."""
        return self._state

    @property
    def stats(self) -> dict[str, TrackStats]:
        """A snapshot of per-track counters, keyed by track name."""
        return {
            name: TrackStats(t.frames, t.bytes, t.duplicates, t.reordered, t.missing)
            for name, t in self._tracks.items()
        }

    def feed(self, message: Wire | str | bytes) -> list[Event]:
        """Decode one WebSocket text frame."""
        out = self.feed_codes(message)
        if isinstance(out, MuLawFrame):
            return [AudioChunk(out.track, out.start_sample, ulaw_decode(out.codes))]
        return out

    def feed_codes(self, message: Wire | str | bytes) -> list[Event] | MuLawFrame:
        """Like :meth:`feed`, but a media message that is its track's next chunk, in time
        order and not empty, gives its audio undecoded as a :class:`MuLawFrame`: a caller
        holding many such messages can decode and place each track's run of them at once.

        >>> dec = TwilioDecoder()
        >>> call = StereoCall(np.zeros(160, np.int16), np.zeros(160, np.int16))
        >>> frame = [dec.feed_codes(w) for w in encode(call, guid="CA" + "0" * 32)][2]
        >>> frame.track, frame.start_sample, len(frame.codes)
        ('inbound', 0, 160)
        """
        msg = self._parse(message.data if isinstance(message, Wire) else message)
        event = msg.get("event")
        if not isinstance(event, str):
            raise _fail("missing-field", "message has no string 'event'")
        if event == "media":
            return self._media(msg)
        if event == "connected":
            if self._state != "idle":
                raise _fail("wrong-order", f"'connected' while {self._state}")
            self._state = "connected"
            return []
        if event == "start":
            return self._start(msg)
        if event in ("stop", "mark", "dtmf"):
            self._check_open(msg, event)
            if event == "mark":
                _str(_obj(msg, "mark", "mark"), "name", "mark")
                return []
            if event == "dtmf":
                body = _obj(msg, "dtmf", "dtmf")
                digit = body.get("digit")
                if not isinstance(digit, str) or digit not in _DTMF_DIGITS:
                    raise _fail("missing-field", "dtmf: 'digit' must be one of 0-9 * # A-D")
                track = _str(body, "track", "dtmf").removesuffix("_track")
                return [Anomaly("dtmf", digit, track)]
            body = _obj(msg, "stop", "stop")
            _str(body, "accountSid", "stop")
            if _str(body, "callSid", "stop") != self._call_sid:
                raise _fail("wrong-stream", "stop: callSid differs from the start message")
            return self._finish("stop")
        raise _fail("unknown-event", f"unknown event {event[:40]!r}")

    def close(self) -> list[Event]:
        """The WebSocket ended: report loss and close the session if ``stop`` never came."""
        if self._state == "open":
            return self._finish("disconnect")
        self._state = "closed"
        return []

    # ------------------------------------------------------------------ internals

    def _parse(self, data: str | bytes) -> dict[str, Any]:
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            if len(raw) > self._max:
                raise _fail("oversize", f"message of {len(raw)} bytes exceeds {self._max}")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _fail("bad-json", f"message is not UTF-8: {exc}") from exc
        elif isinstance(data, str):
            text = data
            if len(text) > self._max // 4 and (
                len(text) > self._max or len(text.encode("utf-8", "surrogatepass")) > self._max
            ):
                raise _fail("oversize", f"message exceeds {self._max} bytes")
        else:
            raise _fail("bad-json", f"message must be text, got {type(data).__name__}")
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise _fail("bad-json", f"message is not JSON: {exc}") from exc
        if not isinstance(msg, dict):
            raise _fail("bad-json", "message is not a JSON object")
        return msg

    def _check_open(self, msg: dict[str, Any], event: str) -> None:
        if self._state != "open":
            raise _fail("wrong-order", f"{event!r} while {self._state}")
        _num(msg, "sequenceNumber", event)
        if _str(msg, "streamSid", event) != self._sid:
            raise _fail("wrong-stream", f"{event}: streamSid is not this stream's")

    def _start(self, msg: dict[str, Any]) -> list[Event]:
        if self._state not in ("idle", "connected"):
            raise _fail("wrong-order", f"'start' while {self._state}")
        _num(msg, "sequenceNumber", "start")
        # The SIDs are checked for their form: the callSid becomes the call's guid, and a
        # guid that start-streaming would refuse (400-201) makes a call nobody can start.
        sid = _sid(msg, "streamSid", "MZ", "start")
        body = _obj(msg, "start", "start")
        if _str(body, "streamSid", "start") != sid:
            raise _fail("wrong-stream", "start: start.streamSid differs from streamSid")
        account = _sid(body, "accountSid", "AC", "start")
        call_sid = _sid(body, "callSid", "CA", "start")
        tracks = body.get("tracks")
        if (
            not isinstance(tracks, list)
            or not tracks
            or not all(isinstance(t, str) and t in TRACKS for t in tracks)
            or len(set(tracks)) != len(tracks)
        ):
            raise _fail("missing-field", "start: 'tracks' must list 'inbound'/'outbound' once")
        fmt = _obj(body, "mediaFormat", "start")
        encoding = _str(fmt, "encoding", "start.mediaFormat")
        rate = _int(fmt, "sampleRate", "start.mediaFormat")
        channels = _int(fmt, "channels", "start.mediaFormat")
        if (encoding, rate, channels) != ("audio/x-mulaw", SAMPLE_RATE, 1):
            raise _fail("bad-format", f"unsupported media {encoding} {rate} Hz x{channels}")
        params = body.get("customParameters", {})
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise _fail("missing-field", "start: 'customParameters' must map to strings")
        self._state = "open"
        self._sid = sid
        self._call_sid = call_sid
        self._tracks = {t: _Track() for t in tracks}
        info = {
            "streamSid": sid,
            "accountSid": account,
            "customParameters": dict(params),
            "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": channels},
        }
        return [SessionOpened(call_sid, tuple(tracks), info)]

    def _media(self, msg: dict[str, Any]) -> list[Event] | MuLawFrame:
        self._check_open(msg, "media")
        body = _obj(msg, "media", "media")
        name = body.get("track")
        track = self._tracks.get(name) if isinstance(name, str) else None
        if track is None or not isinstance(name, str):
            raise _fail("missing-field", "media: 'track' is not one of the stream's tracks")
        chunk = _num(body, "chunk", "media", minimum=1)
        ts = _num(body, "timestamp", "media")
        if ts > MAX_TIMESTAMP_MS:
            raise _fail("missing-field", f"media: timestamp {ts} ms is beyond one day")
        payload = body.get("payload")
        if not isinstance(payload, str):
            raise _fail("missing-field", "media: 'payload' must be a string")
        try:
            # b64decode(validate=True) without its wrapper; non-ASCII text is a ValueError.
            codes = binascii.a2b_base64(payload, strict_mode=True)
        except ValueError as exc:
            raise _fail("bad-base64", f"media: payload is not base64: {exc}") from exc

        kind = track.take_chunk(chunk)
        if kind == "next" and ts >= track.latest_ts and codes:
            # The usual message: no anomaly to report.
            track.latest_ts = ts
            track.frames += 1
            track.bytes += len(codes)
            return MuLawFrame(name, ts * (SAMPLE_RATE // 1000), codes)
        events: list[Event] = []
        if kind == "dup":
            track.duplicates += 1
            return [Anomaly("duplicate", f"chunk {chunk} again", name)]
        if kind == "gap":
            skipped = chunk - track.holes[-1][0]
            events.append(Anomaly("gap", f"chunk {chunk} after a gap", name, skipped))
        if ts < track.latest_ts:
            track.reordered += 1
            events.append(Anomaly("reorder", f"timestamp {ts} < {track.latest_ts}", name))
        else:
            track.latest_ts = ts
        track.frames += 1
        track.bytes += len(codes)
        if codes:
            events.append(AudioChunk(name, ts * (SAMPLE_RATE // 1000), ulaw_decode(codes)))
        return events

    def _finish(self, reason: str) -> list[Event]:
        events: list[Event] = [
            Anomaly("loss", f"{t.missing} chunks never arrived", name, t.missing)
            for name, t in self._tracks.items()
            if t.missing
        ]
        self._state = "closed"
        events.append(SessionClosed(reason))
        return events
