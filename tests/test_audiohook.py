from __future__ import annotations

import doctest
import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mgsim.media.audiohook as audiohook
from mgsim.errors import ConfigError, MediaError
from mgsim.media._base import (
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
from mgsim.media.audiohook import (
    EXTERNAL_OFFER,
    NULL_UUID,
    STEREO_OFFER,
    AudioHookError,
    AudioHookSession,
    encode,
    format_position,
    parse_position,
)
from mgsim.media.g711 import ulaw_decode, ulaw_encode
from mgsim.media.tones import two_tone_call

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
SID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
ORG = "d7934305-0972-4844-938e-9060eef73d05"
PARTICIPANT = {"id": GUID, "ani": "+15555550100", "aniName": "A", "dnis": "+15555550199"}


def make_call(seconds: float = 3.0, agent_seconds: float | None = None) -> StereoCall:
    agent_n = round((agent_seconds or seconds * 0.8) * 8000)
    call = two_tone_call(max(seconds, agent_n / 8000), seed=20240611, noise=800)
    return StereoCall(call.customer[: round(seconds * 8000)], call.agent[:agent_n])


def quantized(x: np.ndarray[Any, np.dtype[np.int16]], n: int) -> np.ndarray[Any, Any]:
    padded = np.zeros(n, np.int16)
    padded[: len(x)] = x
    return ulaw_decode(ulaw_encode(padded))


def play(wires: Iterable[Wire], session: AudioHookSession | None = None) -> list[Event]:
    session = session or AudioHookSession()
    return [event for wire in wires for event in session.feed(wire)]


def assemble(events: Sequence[Event], channel: str, n: int) -> tuple[np.ndarray[Any, Any], Any]:
    """The channel's timeline, and a mask of the samples some chunk covered (at most once)."""
    out = np.zeros(n, np.int16)
    covered = np.zeros(n, np.int16)
    for e in events:
        if isinstance(e, AudioChunk) and e.channel == channel:
            out[e.start_sample : e.end_sample] = e.pcm
            covered[e.start_sample : e.end_sample] += 1
    assert covered.max() <= 1
    return out, covered.astype(bool)


def replies(events: Sequence[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if isinstance(e, Reply) and isinstance(e.data, str)]


def msg(
    type_: str,
    seq: int,
    params: dict[str, Any] | None = None,
    /,
    *,
    position: str = "PT0S",
    serverseq: int = 1,
    **fields: Any,
) -> str:
    body: dict[str, Any] = {
        "version": "2",
        "id": SID,
        "type": type_,
        "seq": seq,
        "serverseq": serverseq,
        "position": position,
        "parameters": {} if params is None else params,
    }
    body.update(fields)
    return json.dumps(body)


def open_msg(media: list[dict[str, Any]] | None = None, conversation: str = GUID) -> str:
    params = {
        "organizationId": ORG,
        "conversationId": conversation,
        "participant": PARTICIPANT,
        "media": [STEREO_OFFER, EXTERNAL_OFFER] if media is None else media,
        "language": "en-US",
    }
    return msg("open", 1, params, serverseq=0)


def opened_session() -> AudioHookSession:
    session = AudioHookSession(SID)
    session.feed(open_msg())
    return session


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "framing",
    [
        {"frame_ms": 20},
        {"frame_ms": 100},
        {"frame_ms": 200},
        {"frame_sizes": (2, 1602, 94, 6000, 10)},
        {"frame_sizes": (64000, 6)},
    ],
    ids=["20ms", "100ms", "200ms", "irregular", "max-and-tiny"],
)
def test_stereo_round_trip_recovers_both_channels(framing: dict[str, Any]) -> None:
    call = make_call(3.0)
    n = call.n_samples
    events = play(encode(call, guid=GUID, **framing))

    opened = [e for e in events if isinstance(e, SessionOpened)]
    assert opened == [opened[0]]
    assert opened[0].guid == GUID
    assert opened[0].channels == ("external", "internal")
    assert opened[0].info["media"] == [STEREO_OFFER]
    assert opened[0].info["organizationId"] and opened[0].info["probe"] is False
    assert replies(events)[0]["type"] == "opened"
    assert replies(events)[0]["parameters"]["media"] == [STEREO_OFFER]

    external, ext_mask = assemble(events, "external", n)
    internal, int_mask = assemble(events, "internal", n)
    assert ext_mask.all() and int_mask.all()
    np.testing.assert_array_equal(external, quantized(call.customer, n))
    np.testing.assert_array_equal(internal, quantized(call.agent, n))
    assert events[-1] == SessionClosed("end")
    assert replies(events)[-1]["type"] == "closed"


def test_frames_have_the_requested_sizes() -> None:
    wires = list(encode(make_call(1.0), guid=GUID, frame_sizes=(2, 1602, 94)))
    sizes = [len(w.data) for w in wires if isinstance(w.data, bytes)]
    assert sizes[:6] == [2, 1602, 94, 2, 1602, 94]
    assert sum(sizes) == 2 * 8000


def test_client_messages_follow_the_protocol() -> None:
    wires = list(encode(make_call(2.0), guid=GUID, session_id=SID, ping_every_ms=500))
    texts = [json.loads(w.data) for w in wires if isinstance(w.data, str)]
    assert [t["seq"] for t in texts] == list(range(1, len(texts) + 1))
    assert {t["id"] for t in texts} == {SID} and {t["version"] for t in texts} == {"2"}
    opening = texts[0]
    assert opening["type"] == "open" and opening["position"] == "PT0S"
    assert opening["serverseq"] == 0
    assert opening["parameters"]["media"] == [STEREO_OFFER, EXTERNAL_OFFER]
    assert set(opening["parameters"]["participant"]) == {"id", "ani", "aniName", "dnis"}
    assert [t["type"] for t in texts[1:]] == ["ping"] * 3 + ["close"]
    # Position counts audio sent: pings at 0.5 s, 1 s, 1.5 s after 0.4 s, 1.0 s, 1.4 s of frames.
    assert [t["position"] for t in texts[1:]] == ["PT0.4S", "PT1S", "PT1.4S", "PT2S"]
    assert [t["serverseq"] for t in texts[1:]] == [1, 2, 3, 4]
    assert texts[-1]["parameters"] == {"reason": "end"}
    assert all(a.at_ms <= b.at_ms for a, b in itertools.pairwise(wires))


def test_ping_gets_pong_with_clientseq() -> None:
    events = play(encode(make_call(2.0), guid=GUID, session_id=SID, ping_every_ms=500))
    answers = replies(events)
    assert [a["type"] for a in answers] == ["opened", "pong", "pong", "pong", "closed"]
    assert [a["seq"] for a in answers] == [1, 2, 3, 4, 5]
    assert [a["clientseq"] for a in answers] == [1, 2, 3, 4, 5]
    assert all(a["id"] == SID for a in answers)


@pytest.mark.parametrize("frame_ms", [20, 200])
def test_pauses_leave_exactly_their_samples_out(frame_ms: int) -> None:
    call = make_call(4.0)
    n = call.n_samples
    pauses = [(1000.0, 2500.0), (3010.0, 3030.5)]
    events = play(encode(call, guid=GUID, frame_ms=frame_ms, pauses=pauses, ping_every_ms=300))
    gap = np.zeros(n, bool)
    gap[8000:20000] = gap[24080:24244] = True
    for channel, source in (("external", call.customer), ("internal", call.agent)):
        timeline, covered = assemble(events, channel, n)
        np.testing.assert_array_equal(covered, ~gap)
        np.testing.assert_array_equal(timeline[~gap], quantized(source, n)[~gap])
    marks = [e for e in events if isinstance(e, SessionPaused | SessionResumed)]
    assert marks == [
        SessionPaused(8000),
        SessionResumed(20000),
        SessionPaused(24080),
        SessionResumed(24244),
    ]


def test_discarded_audio_advances_the_position() -> None:
    call = make_call(2.0)
    n = call.n_samples
    events = play(encode(call, guid=GUID, discards=[(500.0, 700.0)]))
    timeline, covered = assemble(events, "external", n)
    assert not covered[4000:5600].any() and covered[:4000].all() and covered[5600:].all()
    np.testing.assert_array_equal(timeline[5600:], quantized(call.customer, n)[5600:])
    losses = [e for e in events if isinstance(e, Anomaly)]
    assert [e.kind for e in losses] == ["loss"] and "1600 samples" in losses[0].detail


def test_update_changes_language() -> None:
    session = AudioHookSession(SID)
    events = play(
        encode(make_call(1.0), guid=GUID, session_id=SID, updates=[(500.0, "es-US")]), session
    )
    assert "updated" in [r["type"] for r in replies(events)]
    assert session.language == "es-US"


def test_single_channel_offer_carries_the_customer_only() -> None:
    call = make_call(1.5)
    events = play(encode(call, guid=GUID, channels="external", frame_sizes=(161, 7, 999)))
    opened = next(e for e in events if isinstance(e, SessionOpened))
    assert opened.channels == ("external",)
    assert {e.channel for e in events if isinstance(e, AudioChunk)} == {"external"}
    timeline, covered = assemble(events, "external", call.n_samples)
    assert covered.all()
    np.testing.assert_array_equal(timeline, quantized(call.customer, call.n_samples))


def test_server_prefers_stereo_pcmu_wherever_it_is_offered() -> None:
    l16 = {**STEREO_OFFER, "format": "L16"}
    events = AudioHookSession(SID).feed(open_msg([l16, EXTERNAL_OFFER, STEREO_OFFER]))
    assert replies(events)[0]["parameters"]["media"] == [STEREO_OFFER]


def test_no_acceptable_media_is_opened_with_empty_media_and_no_audio() -> None:
    session = AudioHookSession(SID)
    events = session.feed(open_msg([{**STEREO_OFFER, "format": "L16"}]))
    assert replies(events)[0]["parameters"]["media"] == []
    assert next(e for e in events if isinstance(e, SessionOpened)).channels == ()
    with pytest.raises(AudioHookError) as info:
        session.feed(b"\xff\xff")
    assert (info.value.reason, info.value.code) == ("bad-media", 415)


def test_probe_gets_opened_but_is_not_a_call() -> None:
    session = AudioHookSession()
    events = play(encode(make_call(1.0), guid=GUID, probe=True), session)
    assert [r["type"] for r in replies(events)] == ["opened", "closed"]
    assert all(isinstance(e, Reply) for e in events)
    assert session.probe and session.conversation_id == NULL_UUID
    assert session.close() == []


def test_session_adopts_the_first_id_and_reports_a_lost_connection() -> None:
    session = AudioHookSession()
    wires = list(encode(make_call(1.0), guid=GUID, session_id=SID))
    play(wires[:-1], session)
    assert session.session_id == SID
    assert session.close() == [SessionClosed("connection-lost")]
    assert session.close() == []


def test_audio_while_paused_is_dropped() -> None:
    session = opened_session()
    session.feed(msg("paused", 2))
    events = session.feed(b"\xff" * 320)
    assert [type(e) for e in events] == [Anomaly] and events[0].kind == "late"  # type: ignore[union-attr]
    session.feed(msg("ping", 3, position="PT1S"))
    resumed = msg("resumed", 4, {"start": "PT0S", "discarded": "PT2S"}, position="PT2S")
    assert session.feed(resumed) == [SessionResumed(16000)]
    chunk = session.feed(b"\xff\xff")[0]
    assert isinstance(chunk, AudioChunk) and chunk.start_sample == 16000


def test_server_pause_resume_and_disconnect_builders() -> None:
    session = opened_session()
    pause = json.loads(str(session.pause().data))
    assert pause == {
        "version": "2",
        "id": SID,
        "type": "pause",
        "seq": 2,
        "clientseq": 1,
        "parameters": {},
    }
    assert json.loads(str(session.resume().data))["type"] == "resume"
    done = json.loads(str(session.disconnect("completed", info="bye").data))
    assert (done["seq"], done["parameters"]) == (4, {"reason": "completed", "info": "bye"})
    # The client may now acknowledge up to serverseq 4.
    assert session.feed(msg("ping", 2, serverseq=4))[0].data  # type: ignore[union-attr]
    with pytest.raises(ConfigError):
        AudioHookSession(SID).pause()


@pytest.mark.parametrize(
    ("samples", "text"),
    [(0, "PT0S"), (98720, "PT12.34S"), (1, "PT0.000125S"), (8000 * 3661, "PT3661S")],
)
def test_position_format(samples: int, text: str) -> None:
    assert format_position(samples) == text
    assert parse_position(text) == samples


@pytest.mark.parametrize(("text", "samples"), [("PT1M2.5S", 500 * 8000 // 1000 + 496000)])
def test_position_parses_minutes(text: str, samples: int) -> None:
    assert parse_position(text) == samples


@given(st.integers(min_value=0, max_value=10**12))
def test_position_round_trips(samples: int) -> None:
    assert parse_position(format_position(samples)) == samples


# --- errors ---------------------------------------------------------------------------


def _feed_all(session: AudioHookSession, messages: Sequence[str | bytes]) -> None:
    for m in messages:
        session.feed(m)


ERROR_CASES: list[tuple[str, list[str | bytes], str, int]] = [
    ("not-json", ["{nope"], "bad-json", 400),
    ("json-array", ["[1, 2]"], "bad-json", 400),
    ("nan", ['{"version": NaN}'], "bad-json", 400),
    ("version", [msg("open", 1, version="1")], "bad-message", 400),
    ("seq-type", [msg("open", 1, seq="1")], "bad-message", 400),
    ("seq-bool", [msg("open", 1, seq=True)], "bad-message", 400),
    ("no-params", [msg("open", 1, parameters=None)], "bad-message", 400),
    ("open-no-conv", [msg("open", 1, {"organizationId": ORG}, serverseq=0)], "bad-message", 400),
    ("update-language", [open_msg(), msg("update", 2, {"language": 7})], "bad-message", 400),
    (
        "error-code",
        [open_msg(), msg("error", 2, {"code": 404, "message": "x"})],
        "bad-message",
        400,
    ),
    ("id", [open_msg(), msg("ping", 2, id=GUID)], "bad-id", 400),
    ("seq-skip", [open_msg(), msg("ping", 3)], "bad-seq", 400),
    ("seq-start", [msg("open", 2, serverseq=0)], "bad-seq", 400),
    ("serverseq-ahead", [open_msg(), msg("ping", 2, serverseq=5)], "bad-seq", 400),
    ("serverseq-back", [open_msg(), msg("ping", 2), msg("ping", 3, serverseq=0)], "bad-seq", 400),
    ("position-syntax", [open_msg(), msg("ping", 2, position="12s")], "bad-position", 400),
    ("position-sample", [open_msg(), msg("ping", 2, position="PT0.0001S")], "bad-position", 400),
    ("rtt-syntax", [open_msg(), msg("ping", 2, {"rtt": "2ms"})], "bad-message", 400),
    (
        "position-ahead",
        [open_msg(), b"\xff" * 16, msg("ping", 2, position="PT1S")],
        "bad-position",
        400,
    ),
    (
        "resumed-start",
        [
            open_msg(),
            msg("paused", 2),
            msg("resumed", 3, {"start": "PT1S", "discarded": "PT1S"}, position="PT2S"),
        ],
        "bad-position",
        400,
    ),
    (
        "discarded-sum",
        [open_msg(), msg("discarded", 2, {"start": "PT0S", "discarded": "PT1S"}, position="PT2S")],
        "bad-position",
        400,
    ),
    ("oversize-text", [" " * 64_001], "oversize", 413),
    ("oversize-binary", [open_msg(), b"\xff" * 64_002], "oversize", 413),
    ("media-not-list", [open_msg(media={"a": 1})], "bad-media", 415),  # type: ignore[arg-type]
    (
        "media-channels",
        [open_msg(media=[{**STEREO_OFFER, "channels": ["left"]}])],
        "bad-media",
        415,
    ),
    ("unknown-type", [open_msg(), msg("dance", 2)], "unknown-type", 405),
    ("server-type", [open_msg(), msg("opened", 2)], "unknown-type", 405),
    ("odd-stereo-frame", [open_msg(), b"\xff" * 3], "bad-frame", 400),
    ("audio-before-open", [b"\xff\xff"], "wrong-order", 409),
    ("ping-before-open", [msg("ping", 1, serverseq=0)], "wrong-order", 409),
    (
        "second-open",
        [open_msg(), msg("open", 2, json.loads(open_msg())["parameters"])],
        "wrong-order",
        409,
    ),
    (
        "after-close",
        [open_msg(), msg("close", 2, {"reason": "end"}), msg("ping", 3, serverseq=2)],
        "wrong-order",
        409,
    ),
    (
        "audio-after-close",
        [open_msg(), msg("close", 2, {"reason": "end"}), b"\xff\xff"],
        "wrong-order",
        409,
    ),
    (
        "resumed-unpaused",
        [open_msg(), msg("resumed", 2, {"start": "PT0S", "discarded": "PT0S"})],
        "wrong-order",
        409,
    ),
    ("probe-audio", [open_msg(conversation=NULL_UUID), b"\xff\xff"], "wrong-order", 409),
]


@pytest.mark.parametrize(
    ("messages", "reason", "code"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_each_error_reason(messages: list[str | bytes], reason: str, code: int) -> None:
    session = AudioHookSession(SID)
    with pytest.raises(AudioHookError) as info:
        _feed_all(session, messages)
    err = info.value
    assert (err.reason, err.code) == (reason, code)
    assert isinstance(err, MediaError)
    assert err.ws_close_code in (1007, 1008, 1009)
    if session.state == "closed":
        return
    disconnect = json.loads(err.disconnect_message(session))
    assert disconnect["type"] == "disconnect" and disconnect["version"] == "2"
    assert disconnect["parameters"]["reason"] == "error"
    assert reason in disconnect["parameters"]["info"]
    assert disconnect["seq"] == session.seq


# --- what real clients send (issue: interoperating with clients written by others) ------


@pytest.mark.parametrize("rtt", ["PT0.001885396S", "PT0.000000001S", "PT1.5S", "PT0S"])
def test_ping_rtt_is_a_duration_not_a_position(rtt: str) -> None:
    """A real client's ``rtt`` has nanosecond precision; it is not on a sample boundary."""
    session = opened_session()
    events = session.feed(msg("ping", 2, {"rtt": rtt}))
    assert [r["type"] for r in replies(events)] == ["pong"]
    assert session.state == "active"
    assert session.rtt_s == pytest.approx(audiohook.parse_duration(rtt))


@pytest.mark.parametrize(
    "bad_close",
    [
        msg("close", 2, {"reason": "end"}, position="PT1S"),  # position ahead of the audio
        msg("close", 2, {"reason": "bored"}),  # no such reason
        msg("close", 5, {"reason": "end"}),  # seq skipped
        msg("close", 2, {"reason": "end"}, position="PT0.0001S"),  # not on a sample
    ],
    ids=["position", "reason", "seq", "position-syntax"],
)
def test_a_close_that_fails_validation_still_gets_closed(bad_close: str) -> None:
    session = opened_session()
    events = session.feed(bad_close)
    assert [r["type"] for r in replies(events)] == ["closed"]
    assert session.state == "closed"
    assert any(isinstance(e, Anomaly) and e.kind == "bad-close" for e in events)
    assert any(isinstance(e, SessionClosed) for e in events)
    # A repeated close is answered again, and nothing else happens.
    assert [r["type"] for r in replies(session.feed(msg("close", 3, {"reason": "end"})))] == [
        "closed"
    ]


def test_close_gets_closed_in_every_state() -> None:
    for prefix in ([], [open_msg()], [open_msg(), msg("paused", 2)]):
        session = AudioHookSession(SID)
        _feed_all(session, prefix)
        close = msg("close", len(prefix) + 1, {"reason": "end"}, serverseq=len(prefix) > 0)
        assert [r["type"] for r in replies(session.feed(close))] == ["closed"]


def test_a_second_paused_while_paused_is_tolerated() -> None:
    """A client paused on its own answers the server's ``pause`` with ``paused`` again."""
    session = opened_session()
    assert session.feed(msg("paused", 2)) == [SessionPaused(0)]
    session.pause()
    assert session.feed(msg("paused", 3, position="PT0.5S", serverseq=2)) == []
    assert session.state == "paused"
    gap = {"start": "PT0S", "discarded": "PT1S"}
    resumed = msg("resumed", 4, gap, position="PT1S", serverseq=2)
    assert session.feed(resumed) == [SessionResumed(8000)]


def test_a_zero_byte_frame_is_tolerated_on_a_probe_and_a_call() -> None:
    probe = AudioHookSession(SID)
    probe.feed(open_msg(conversation=NULL_UUID))
    assert probe.feed(b"") == []
    assert [r["type"] for r in replies(probe.feed(msg("close", 2, {"reason": "end"})))] == [
        "closed"
    ]
    session = opened_session()
    assert session.feed(b"") == []
    assert session.position == 0 and session.state == "active"


def test_conversation_id_is_reported_in_lower_case() -> None:
    session = AudioHookSession(SID)
    events = session.feed(open_msg(conversation=GUID.upper()))
    opened = [e for e in events if isinstance(e, SessionOpened)]
    assert opened[0].guid == GUID and session.conversation_id == GUID


@pytest.mark.parametrize("header", [ORG, ORG.upper()])
def test_the_signed_organization_must_be_the_open_one(header: str) -> None:
    AudioHookSession(SID, organization_id=header).feed(open_msg())  # case does not matter
    session = AudioHookSession(SID, organization_id=GUID)
    with pytest.raises(AudioHookError) as info:
        session.feed(open_msg())
    assert info.value.reason == "unauthorized"
    disconnect = json.loads(info.value.disconnect_message(session))
    assert disconnect["parameters"]["reason"] == "unauthorized"
    assert ORG in disconnect["parameters"]["info"]
    assert [r["type"] for r in replies(session.feed(msg("close", 2, {"reason": "error"})))] == [
        "closed"
    ]


def test_admit_can_refuse_a_conversation_before_opened() -> None:
    def refuse(conversation: str) -> None:
        raise AudioHookError(f"{conversation} is busy", reason="conflict")

    session = AudioHookSession(SID, admit=refuse)
    with pytest.raises(AudioHookError) as info:
        session.feed(open_msg())
    assert (info.value.reason, info.value.code) == ("conflict", 409)
    assert session.seq == 0  # no opened was made
    AudioHookSession(SID, admit=refuse).feed(open_msg(conversation=NULL_UUID))  # probes pass


def test_after_an_error_the_session_waits_for_close() -> None:
    session = opened_session()
    with pytest.raises(AudioHookError):
        session.feed(b"\xff" * 3)
    assert session.state == "failed"
    assert session.feed(b"\xff\xff") == []
    assert session.feed("{garbage") == []
    events = session.feed(msg("close", 9, {"reason": "error"}))
    assert events[-1] == SessionClosed("error")
    assert replies(events)[0]["type"] == "closed"
    assert session.close() == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"guid": "12345"}, "UUID"),
        ({"guid": GUID, "frame_sizes": (3,)}, "multiples"),
        ({"guid": GUID, "frame_sizes": (64_002,)}, "multiples"),
        ({"guid": GUID, "pauses": [(100, 300)], "discards": [(200, 400)]}, "overlap"),
        ({"guid": GUID, "pauses": [(300, 300)]}, "empty"),
    ],
)
def test_encoder_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        list(encode(make_call(1.0), **kwargs))


def test_error_code_must_be_an_audiohook_code() -> None:
    assert AudioHookError("slow", reason="timeout", code=408).code == 408
    with pytest.raises(ConfigError):
        AudioHookError("x", reason="teapot", code=418)


# --- robustness -----------------------------------------------------------------------

_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["2", 2, "1"]),
        "id": st.sampled_from([SID, GUID, "x"]),
        "type": st.sampled_from(
            [
                "open",
                "close",
                "ping",
                "paused",
                "resumed",
                "discarded",
                "update",
                "error",
                "opened",
                "x",
            ]
        ),
        "seq": st.integers(-1, 4) | st.booleans(),
        "serverseq": st.integers(-1, 4),
        "position": st.sampled_from(["PT0S", "PT1S", "PT", "P1D", "PT0.5S", ""])
        | st.text(max_size=8),
        "parameters": st.dictionaries(
            st.sampled_from(
                [
                    "reason",
                    "language",
                    "start",
                    "discarded",
                    "rtt",
                    "code",
                    "message",
                    "media",
                    "participant",
                    "conversationId",
                    "organizationId",
                ]
            ),
            _JSONISH,
            max_size=5,
        ),
    },
)
_NEAR_VALID = st.fixed_dictionaries(
    {
        "version": st.just("2"),
        "id": st.just(SID),
        "type": _FIELDS.map(lambda d: d.get("type", "ping")),
        "seq": st.integers(1, 2),
        "serverseq": st.integers(0, 1),
        "position": st.sampled_from(["PT0S", "PT0.5S", "PT1S"]),
        "parameters": _FIELDS.map(lambda d: d.get("parameters", {})),
    }
)
_GARBAGE = st.one_of(
    st.text(max_size=200),
    _NEAR_VALID.map(json.dumps),
    st.binary(max_size=600),
    _JSONISH.map(json.dumps),
    _FIELDS.map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(first=_GARBAGE, second=_GARBAGE)
def test_garbage_only_raises_audiohook_error(first: str | bytes, second: str | bytes) -> None:
    for session in (AudioHookSession(), AudioHookSession(SID), opened_session()):
        for item in (first, second):
            try:
                events = session.feed(item)
            except AudioHookError as err:
                assert err.code in audiohook.ERROR_CODES
                continue
            assert isinstance(events, list)


def test_doctests() -> None:
    from mgsim.media import audiohook_signature

    for module in (audiohook, audiohook_signature):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0
