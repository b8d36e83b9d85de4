from __future__ import annotations

import base64
import contextlib
import doctest
import json
import random
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.errors import ConfigError, MediaError
from mgsim.media import twilio
from mgsim.media._base import (
    Anomaly,
    AudioChunk,
    Event,
    SessionClosed,
    SessionOpened,
    StereoCall,
    Wire,
)
from mgsim.media.g711 import ulaw_decode, ulaw_encode
from mgsim.media.twilio import (
    CLOSE_CODES,
    DEFAULT_ACCOUNT_SID,
    MAX_MESSAGE_BYTES,
    TwilioDecoder,
    TwilioError,
    encode,
    stream_sid_for,
)

GUID = "CA" + "1234abcd" * 4
SID = stream_sid_for(GUID)


def make_call(
    seconds: float = 2.0, seed: int = 7, agent_seconds: float | None = None
) -> StereoCall:
    rng = np.random.default_rng(seed)

    def tone(freq: float, secs: float) -> np.ndarray[Any, np.dtype[np.int16]]:
        t = np.arange(int(secs * 8000)) / 8000
        x = 6000 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 800, t.size)
        return np.clip(x, -32768, 32767).astype(np.int16)

    return StereoCall(tone(440, seconds), tone(1250, agent_seconds or seconds))


def quantized(x: np.ndarray[Any, np.dtype[np.int16]], n: int) -> np.ndarray[Any, Any]:
    out = np.zeros(n, dtype=np.int16)
    out[: len(x)] = ulaw_decode(ulaw_encode(x))
    return out


def run(messages: list[Wire | str | bytes]) -> tuple[TwilioDecoder, list[Event]]:
    dec = TwilioDecoder()
    events = [e for m in messages for e in dec.feed(m)]
    return dec, events + dec.close()


def assemble(events: list[Event], n: int) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    for e in events:
        if isinstance(e, AudioChunk):
            buf = out.setdefault(e.channel, np.zeros(n, dtype=np.int16))
            buf[e.start_sample : e.end_sample] = e.pcm
    return out


def anomalies(events: list[Event], kind: str) -> list[Anomaly]:
    return [e for e in events if isinstance(e, Anomaly) and e.kind == kind]


def split(wires: list[Wire]) -> tuple[list[Wire], list[Wire], Wire]:
    """(connected+start, media, stop)."""
    return wires[:2], wires[2:-1], wires[-1]


def media(track: Any = "inbound", chunk: Any = "1", ts: Any = "0", **over: Any) -> str:
    msg: dict[str, Any] = {
        "event": "media",
        "sequenceNumber": "2",
        "media": {
            "track": track,
            "chunk": chunk,
            "timestamp": ts,
            "payload": base64.b64encode(b"\xff" * 160).decode(),
        },
        "streamSid": SID,
    }
    for key, value in over.items():
        if key in msg["media"]:
            msg["media"][key] = value
        else:
            msg[key] = value
    return json.dumps(msg)


def start(**over: Any) -> str:
    body: dict[str, Any] = {
        "accountSid": DEFAULT_ACCOUNT_SID,
        "streamSid": SID,
        "callSid": GUID,
        "tracks": ["inbound", "outbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {},
    }
    msg: dict[str, Any] = {"event": "start", "sequenceNumber": "1", "start": body, "streamSid": SID}
    for key, value in over.items():
        if key in ("encoding", "sampleRate", "channels"):
            body["mediaFormat"][key] = value
        elif key == "top_streamSid":
            msg["streamSid"] = value
        elif value is None:
            body.pop(key)
        else:
            body[key] = value
    return json.dumps(msg)


STOP = json.dumps(
    {
        "event": "stop",
        "sequenceNumber": "9",
        "stop": {"accountSid": DEFAULT_ACCOUNT_SID, "callSid": GUID},
        "streamSid": SID,
    }
)
CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def test_doctests() -> None:
    assert doctest.testmod(twilio).failed == 0


# ------------------------------------------------------------------ encoder shape


def test_message_sequence_follows_twilio() -> None:
    call = make_call(seconds=0.1)
    params = {"customerId": "c-1", "note": 'quote " and é'}
    wires = list(encode(call, guid=GUID, custom_parameters=params))
    msgs = [json.loads(w.data) for w in wires]
    assert all(w.channel == "ws" and isinstance(w.data, str) for w in wires)
    assert msgs[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    st_ = msgs[1]["start"]
    assert st_["callSid"] == GUID and st_["tracks"] == ["inbound", "outbound"]
    assert st_["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert st_["customParameters"] == params and st_["accountSid"] == DEFAULT_ACCOUNT_SID
    assert re.fullmatch(r"MZ[0-9a-f]{32}", SID) and st_["streamSid"] == SID
    assert re.fullmatch(r"AC[0-9a-f]{32}", DEFAULT_ACCOUNT_SID)
    media_msgs = msgs[2:-1]
    assert [m["media"]["track"] for m in media_msgs] == ["inbound", "outbound"] * 5
    assert [m["media"]["chunk"] for m in media_msgs[::2]] == ["1", "2", "3", "4", "5"]
    assert [m["media"]["timestamp"] for m in media_msgs[1::2]] == ["0", "20", "40", "60", "80"]
    assert [w.at_ms for w in wires[2:-1:2]] == [0.0, 20.0, 40.0, 60.0, 80.0]
    seqs = [int(m["sequenceNumber"]) for m in msgs[1:]]
    assert seqs == list(range(1, 13))
    assert all(isinstance(m["sequenceNumber"], str) for m in msgs[1:])
    assert {len(base64.b64decode(m["media"]["payload"])) for m in media_msgs} == {160}
    assert msgs[-1]["stop"] == {"accountSid": DEFAULT_ACCOUNT_SID, "callSid": GUID}
    assert wires[-1].at_ms == pytest.approx(100.0)
    assert all(m.get("streamSid") == SID for m in msgs[1:])


def test_stream_sid_is_deterministic_and_overridable() -> None:
    call = make_call(seconds=0.02)
    assert stream_sid_for(GUID) != stream_sid_for(GUID + "x")
    assert json.loads(list(encode(call, guid=GUID))[1].data)["streamSid"] == SID
    custom = list(encode(call, guid=GUID, stream_sid="MZ" + "f" * 32))
    assert json.loads(custom[2].data)["streamSid"] == "MZ" + "f" * 32


@pytest.mark.parametrize(
    "kwargs",
    [
        {"guid": ""},
        {"guid": GUID, "customer_track": "both"},
        {"guid": GUID, "frame_ms": 0},
        {"guid": GUID, "frame_ms": 2000},
        {"guid": GUID, "frame_ms": 20.0},
        {"guid": GUID, "custom_parameters": {"a": 1}},
        {"guid": GUID, "stream_sid": ""},
        {"guid": GUID, "account_sid": ""},
    ],
)
def test_encoder_rejects_bad_arguments_eagerly(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        encode(make_call(seconds=0.02), **kwargs)


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("customer_track", ["inbound", "outbound"])
@pytest.mark.parametrize("frame_ms", [20, 30])
def test_round_trip_recovers_each_participant(customer_track: str, frame_ms: int) -> None:
    call = make_call(seconds=1.013, agent_seconds=0.7)  # unequal, not a whole frame
    n = call.n_samples
    wires = list(
        encode(call, guid=GUID, customer_track=customer_track, frame_ms=frame_ms)  # type: ignore[arg-type]
    )
    dec, events = run(list(wires))
    opened = events[0]
    assert isinstance(opened, SessionOpened)
    assert opened.guid == GUID and opened.channels == ("inbound", "outbound")
    assert opened.info["streamSid"] == SID and opened.info["accountSid"] == DEFAULT_ACCOUNT_SID
    assert opened.info["mediaFormat"]["encoding"] == "audio/x-mulaw"
    assert events[-1] == SessionClosed("stop")
    assert not [e for e in events if isinstance(e, Anomaly)]
    frames = -(-n // (frame_ms * 8))
    padded = frames * frame_ms * 8  # the last frame is whole, padded with silence
    audio = assemble(events, padded)
    agent_track = "outbound" if customer_track == "inbound" else "inbound"
    assert np.array_equal(audio[customer_track], quantized(call.customer, padded))
    assert np.array_equal(audio[agent_track], quantized(call.agent, padded))
    for s in dec.stats.values():
        assert (s.frames, s.bytes, s.duplicates, s.reordered, s.gaps) == (frames, padded, 0, 0, 0)


@pytest.mark.parametrize("seconds", [1.013, 0.2, 0.0125])
def test_every_media_message_carries_a_whole_20_ms_frame(seconds: float) -> None:
    """Twilio forwards whole 20 ms RTP packets: 160 bytes of µ-law in every media message,
    the last one of each track too (it was 104 bytes for a 1.013 s call)."""
    wires = list(encode(make_call(seconds=seconds), guid=GUID))
    sizes = {
        len(base64.b64decode(json.loads(str(w.data))["media"]["payload"]))
        for w in wires
        if '"media"' in str(w.data)
    }
    assert sizes == {160}


def test_feed_accepts_str_and_bytes_alike() -> None:
    call = make_call(seconds=0.2)
    wires = list(encode(call, guid=GUID))
    _, from_wire = run(list(wires))
    _, from_str = run([w.data for w in wires])
    _, from_bytes = run([str(w.data).encode() for w in wires])
    for a, b in [(from_wire, from_str), (from_wire, from_bytes)]:
        assert len(a) == len(b)
        assert all(
            np.array_equal(x.pcm, y.pcm) and x.start_sample == y.start_sample
            for x, y in zip(a, b, strict=True)
            if isinstance(x, AudioChunk) and isinstance(y, AudioChunk)
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_media_still_recovers_exactly(seed: int) -> None:
    call = make_call(seconds=1.0, seed=seed)
    head, body, stop = split(list(encode(call, guid=GUID)))
    random.Random(seed).shuffle(body)
    dec, events = run([*head, *body, stop])
    audio = assemble(events, call.n_samples)
    assert np.array_equal(audio["inbound"], quantized(call.customer, call.n_samples))
    assert np.array_equal(audio["outbound"], quantized(call.agent, call.n_samples))
    reorders = anomalies(events, "reorder")
    stats = dec.stats
    assert len(reorders) == sum(s.reordered for s in stats.values()) > 20
    assert sum(a.count for a in anomalies(events, "gap")) >= len(reorders)
    assert not anomalies(events, "loss") and not anomalies(events, "duplicate")
    assert all(s.gaps == 0 and s.frames == 50 for s in stats.values())


def test_per_track_bursts_are_not_anomalies() -> None:
    call = make_call(seconds=2.0)
    head, body, stop = split(list(encode(call, guid=GUID)))
    # Deliver a second of one track at once, then the same second of the other.
    bursts: list[Wire] = []
    for i in range(0, len(body), 100):
        block = body[i : i + 100]
        bursts += [w for w in block if '"outbound"' in str(w.data)]
        bursts += [w for w in block if '"inbound"' in str(w.data)]
    dec, events = run([*head, *bursts, stop])
    assert not [e for e in events if isinstance(e, Anomaly)]
    audio = assemble(events, call.n_samples)
    assert np.array_equal(audio["inbound"], quantized(call.customer, call.n_samples))
    assert all(s.frames == 100 for s in dec.stats.values())


def test_omitted_silence_leaves_zeros_and_no_loss() -> None:
    call = make_call(seconds=1.0)
    customer, agent = call.customer.copy(), call.agent.copy()
    customer[4000:] = 0  # customer silent in the second half
    agent[:3200] = 0  # agent silent for the first 400 ms
    call = StereoCall(customer, agent)
    wires = list(encode(call, guid=GUID, omit_silence=True))
    assert len(wires) == 3 + 25 + 30
    msgs = [json.loads(w.data) for w in wires[2:-1]]
    chunks = [m["media"]["chunk"] for m in msgs if m["media"]["track"] == "outbound"]
    assert chunks == [str(i) for i in range(1, 31)]  # counters do not skip
    dec, events = run(list(wires))
    assert not [e for e in events if isinstance(e, Anomaly)]
    audio = assemble(events, call.n_samples)
    assert np.array_equal(audio["inbound"], quantized(customer, call.n_samples))
    assert np.array_equal(audio["outbound"], quantized(agent, call.n_samples))
    assert dec.stats["inbound"].frames == 25 and dec.stats["inbound"].gaps == 0


def test_duplicates_are_dropped_and_counted() -> None:
    call = make_call(seconds=0.2)
    head, body, stop = split(list(encode(call, guid=GUID)))
    dec, events = run([*head, *body[:4], body[2], body[0], *body[4:], body[5], stop])
    dups = anomalies(events, "duplicate")
    assert [(a.channel, a.detail) for a in dups] == [
        ("inbound", "chunk 2 again"),
        ("inbound", "chunk 1 again"),
        ("outbound", "chunk 3 again"),
    ]
    assert dec.stats["inbound"].duplicates == 2 and dec.stats["outbound"].duplicates == 1
    assert dec.stats["inbound"].frames == 10
    assert sum(isinstance(e, AudioChunk) for e in events) == 20


def test_lost_frames_are_gaps_then_loss() -> None:
    call = make_call(seconds=0.4)
    head, body, stop = split(list(encode(call, guid=GUID)))
    kept = [w for i, w in enumerate(body) if i not in (4, 6, 8, 31)]  # inbound 3,4,5; out 16
    dec, events = run([*head, *kept, stop])
    gaps = anomalies(events, "gap")
    assert [(a.channel, a.count) for a in gaps] == [("inbound", 3), ("outbound", 1)]
    loss = anomalies(events, "loss")
    assert [(a.channel, a.count) for a in loss] == [("inbound", 3), ("outbound", 1)]
    assert dec.stats["inbound"].gaps == 3 and dec.stats["outbound"].gaps == 1
    assert events[-1] == SessionClosed("stop")


def test_late_frame_fills_its_gap() -> None:
    call = make_call(seconds=0.2)
    head, body, stop = split(list(encode(call, guid=GUID)))
    late = body.pop(2)  # inbound chunk 2
    body.insert(7, late)
    dec, events = run([*head, *body, stop])
    assert [(a.kind, a.count) for a in events if isinstance(a, Anomaly)] == [
        ("gap", 1),
        ("reorder", 1),
    ]
    assert dec.stats["inbound"].gaps == 0 and dec.stats["inbound"].reordered == 1
    audio = assemble(events, call.n_samples)
    assert np.array_equal(audio["inbound"], quantized(call.customer, call.n_samples))


# ------------------------------------------------------------------ other events


def test_dtmf_and_mark() -> None:
    dtmf = json.dumps(
        {
            "event": "dtmf",
            "streamSid": SID,
            "sequenceNumber": "5",
            "dtmf": {"track": "inbound_track", "digit": "5"},
        }
    )
    mark = json.dumps(
        {"event": "mark", "sequenceNumber": "4", "streamSid": SID, "mark": {"name": "greet"}}
    )
    dec = TwilioDecoder()
    dec.feed(CONNECTED)
    dec.feed(start())
    assert dec.feed(dtmf) == [Anomaly("dtmf", "5", "inbound")]
    assert dec.feed(mark) == []
    assert dec.feed(STOP) == [SessionClosed("stop")]


def test_close_without_stop_reports_disconnect_and_is_idempotent() -> None:
    dec = TwilioDecoder()
    dec.feed(start())
    dec.feed(media(chunk="2", ts="20"))
    assert dec.close() == [
        Anomaly("loss", "1 chunks never arrived", "inbound", 1),
        SessionClosed("disconnect"),
    ]
    assert dec.close() == [] and dec.state == "closed"
    with pytest.raises(TwilioError) as info:
        dec.feed(media())
    assert info.value.reason == "wrong-order"


def test_close_before_start_is_quiet() -> None:
    dec = TwilioDecoder()
    dec.feed(CONNECTED)
    assert dec.close() == [] and dec.stats == {}


# ------------------------------------------------------------------ errors

OPEN = [CONNECTED, start()]
LONG = "x" * (MAX_MESSAGE_BYTES + 1)

ERROR_CASES: list[tuple[str, list[str], str | bytes, str, int]] = [
    ("truncated", [], "{", "bad-json", 1007),
    ("array", [], "[1, 2]", "bad-json", 1007),
    ("not-utf8", [], b"\xff\xfe{}", "bad-json", 1007),
    ("deep", [], "[" * 50_000, "bad-json", 1007),
    ("bad-payload", OPEN, media(payload="!!not base64!!"), "bad-base64", 1007),
    ("bad-padding", OPEN, media(payload="abc"), "bad-base64", 1007),
    ("unknown", [], '{"event": "hello"}', "unknown-event", 1003),
    ("media-first", [CONNECTED], media(), "wrong-order", 1008),
    ("stop-first", [], STOP, "wrong-order", 1008),
    ("second-start", OPEN, start(), "wrong-order", 1008),
    ("connected-late", OPEN, CONNECTED, "wrong-order", 1008),
    ("after-stop", [*OPEN, STOP], media(), "wrong-order", 1008),
    ("no-event", [], '{"streamSid": "MZ"}', "missing-field", 1007),
    ("no-chunk", OPEN, media(chunk=None), "missing-field", 1007),
    ("chunk-text", OPEN, media(chunk="abc"), "missing-field", 1007),
    ("chunk-negative", OPEN, media(chunk="-1"), "missing-field", 1007),
    ("chunk-zero", OPEN, media(chunk="0"), "missing-field", 1007),
    ("chunk-superscript", OPEN, media(chunk="²"), "missing-field", 1007),
    ("timestamp-int", OPEN, media(ts=160), "missing-field", 1007),
    ("timestamp-huge", OPEN, media(ts="99999999999"), "missing-field", 1007),
    ("track-both", OPEN, media(track="both"), "missing-field", 1007),
    ("payload-int", OPEN, media(payload=5), "missing-field", 1007),
    ("no-sequence", OPEN, media(sequenceNumber=None), "missing-field", 1007),
    ("no-callsid", [], start(callSid=None), "missing-field", 1007),
    ("tracks-bad", [], start(tracks=["inbound", "inbound"]), "missing-field", 1007),
    # Every SID is its prefix and 32 lowercase hex digits, the whole value: the callSid is
    # the call's guid, and start-streaming refuses any other form (400-201).
    ("callsid-short", [], start(callSid="CA" + "0" * 31), "bad-sid", 1007),
    ("callsid-newline", [], start(callSid=GUID + "\n"), "bad-sid", 1007),
    ("callsid-upper", [], start(callSid="CA" + "AB" * 16), "bad-sid", 1007),
    ("callsid-surrogate", [], start(callSid="\ud800"), "bad-sid", 1007),
    ("callsid-stream-prefix", [], start(callSid="MZ" + GUID[2:]), "bad-sid", 1007),
    ("callsid-not-hex", [], start(callSid="CA" + "g" * 32), "bad-sid", 1007),
    ("streamsid-bad", [], start(streamSid="MZ1", top_streamSid="MZ1"), "bad-sid", 1007),
    ("accountsid-bad", [], start(accountSid="AC…"), "bad-sid", 1007),
    ("params-bad", [], start(customParameters={"a": 1}), "missing-field", 1007),
    ("rate-text", [], start(sampleRate="8000"), "missing-field", 1007),
    ("alaw", [], start(encoding="audio/x-alaw"), "bad-format", 1003),
    ("wideband", [], start(sampleRate=16000), "bad-format", 1003),
    ("stereo", [], start(channels=2), "bad-format", 1003),
    ("oversize-str", [], LONG, "oversize", 1009),
    ("oversize-bytes", [], LONG.encode(), "oversize", 1009),
    ("oversize-utf8", [], "é" * (MAX_MESSAGE_BYTES // 2 + 1), "oversize", 1009),
    ("other-stream", OPEN, media(streamSid="MZ" + "0" * 32), "wrong-stream", 1008),
    ("start-sids-differ", [], start(top_streamSid="MZ" + "0" * 32), "wrong-stream", 1008),
    ("stop-other-call", OPEN, STOP.replace(GUID, "CA" + "9" * 32), "wrong-stream", 1008),
]


@pytest.mark.parametrize(
    ("before", "bad", "reason", "code"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_each_error_reason(before: list[str], bad: str | bytes, reason: str, code: int) -> None:
    dec = TwilioDecoder()
    for msg in before:
        dec.feed(msg)
    with pytest.raises(TwilioError) as info:
        dec.feed(bad)
    assert (info.value.reason, info.value.ws_close_code) == (reason, code)
    assert isinstance(info.value, MediaError) and isinstance(info.value, ValueError)


def test_every_reason_is_exercised_and_documented() -> None:
    assert {case[3] for case in ERROR_CASES} == set(CLOSE_CODES)
    with pytest.raises(ValueError):
        TwilioError("x", reason="nope")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=6,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text() | st.binary(), max_size=4))
def test_random_input_only_raises_twilio_error(messages: list[str | bytes]) -> None:
    dec = TwilioDecoder()
    for msg in [CONNECTED, start(), *messages]:
        with contextlib.suppress(TwilioError):
            dec.feed(msg)


FIELDS = [
    ("media", ("media", "track")),
    ("media", ("media", "chunk")),
    ("media", ("media", "timestamp")),
    ("media", ("media", "payload")),
    ("media", ("media",)),
    ("media", ("streamSid",)),
    ("media", ("sequenceNumber",)),
    ("media", ("event",)),
    ("start", ("start", "tracks")),
    ("start", ("start", "mediaFormat")),
    ("start", ("start", "customParameters")),
    ("start", ("start", "callSid")),
    ("start", ("start",)),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS), _json_values())
def test_mutated_fields_only_raise_twilio_error(
    field: tuple[str, tuple[str, ...]], value: Any
) -> None:
    kind, path = field
    msg = json.loads(media() if kind == "media" else start())
    target = msg
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    dec = TwilioDecoder()
    try:
        for m in ([] if kind == "start" else [start()]) + [json.dumps(msg), media(chunk="3")]:
            dec.feed(m)
    except TwilioError:
        pass
