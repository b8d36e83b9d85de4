from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.errors import ConfigError
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
from mgsim.media.g711 import ulaw_decode, ulaw_encode
from mgsim.media.rtp import RtpError, unpack
from mgsim.media.sdp import parse_sdp
from mgsim.media.sip import SipError, SipMessage, SipStreamParser, parse_message
from mgsim.media.siprec import (
    SiprecSession,
    encode,
    server_tag,
    ucid_from_uui,
    ucid_to_uui,
)
from mgsim.media.tones import two_tone_call

CISCO = "0867617078-0032318833-2221801472-0002236962"
AVAYA = "00002542391662063156"
Order = Literal["CUSTOMER_FIRST", "AGENT_FIRST"]
Vendor = Literal["generic", "cisco", "avaya"]
ORDERS: list[Order] = ["CUSTOMER_FIRST", "AGENT_FIRST"]
VENDORS: list[Vendor] = ["generic", "cisco", "avaya"]


def make_call(seconds: float = 3.0, seed: int = 7) -> StereoCall:
    call = two_tone_call(seconds, seed=seed, tones=(440, 660), levels=(6000, 5000), noise=500)
    # Different lengths: the encoder pads the shorter participant.
    return StereoCall(call.customer, call.agent[: len(call.agent) - 123])


CALL = make_call()


def quantized(pcm: npt.NDArray[np.int16], n: int) -> npt.NDArray[np.int16]:
    padded = np.zeros(n, dtype=np.int16)
    padded[: len(pcm)] = pcm
    return ulaw_decode(ulaw_encode(padded))


def play(wires: Iterable[Wire], session: SiprecSession | None = None) -> list[Event]:
    session = session or SiprecSession()
    events = [e for w in wires for e in session.feed(w)]
    return events + session.close()


def timeline(events: list[Event], n: int) -> dict[str, npt.NDArray[np.int16]]:
    out = {"0": np.zeros(n, dtype=np.int16), "1": np.zeros(n, dtype=np.int16)}
    for e in events:
        if isinstance(e, AudioChunk):
            out[e.channel][e.start_sample : e.end_sample] = e.pcm
    return out


def roles(order: Order) -> dict[str, str]:
    return (
        {"0": "customer", "1": "agent"}
        if order == "CUSTOMER_FIRST"
        else {
            "0": "agent",
            "1": "customer",
        }
    )


def expected(call: StereoCall, role: str, n: int) -> npt.NDArray[np.int16]:
    return quantized(call.customer if role == "customer" else call.agent, n)


def raw(item: Wire | Reply | Event) -> bytes:
    data = getattr(item, "data", None)
    assert isinstance(data, bytes)
    return data


def n_padded(call: StereoCall) -> int:
    return -(-call.n_samples // 160) * 160


def of_type(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("vendor", VENDORS)
def test_round_trip_recovers_both_participants(order: Order, vendor: Vendor) -> None:
    guid = {"generic": CISCO, "cisco": CISCO, "avaya": AVAYA}[vendor]
    session = SiprecSession(ports=(41000, 41002))
    events = play(encode(CALL, guid=guid, media_line_order=order, vendor=vendor, seed=3), session)
    n = n_padded(CALL)
    audio = timeline(events, n)
    for channel, role in roles(order).items():
        assert np.array_equal(audio[channel], expected(CALL, role, n)), (channel, role)
    (opened,) = of_type(events, SessionOpened)
    assert isinstance(opened, SessionOpened)
    assert (opened.guid, opened.channels) == (guid, ("0", "1"))
    info = opened.info
    assert info["vendor"] == vendor and info["labels"] == ("1", "2") and info["src_feature"]
    names = {p["participant_id"]: p["name"] for p in info["participants"]}
    by_channel = {ch: names[pid] for ch, pid in info["channel_participants"].items()}
    assert by_channel == {ch: role.capitalize() for ch, role in roles(order).items()}
    assert (info["associations"] is None) == (vendor == "avaya")
    assert not of_type(events, Anomaly)
    assert of_type(events, SessionClosed) == [SessionClosed("bye")]
    replies = [parse_message(raw(r)) for r in of_type(events, Reply)]
    assert [(r.status, r.cseq[1]) for r in replies] == [(200, "INVITE"), (200, "BYE")]
    answer = parse_sdp(replies[0].body)
    assert [(m.port, m.direction, m.label) for m in answer.media] == [
        (41000, "recvonly", "1"),
        (41002, "recvonly", "2"),
    ]
    assert session.state == "closed" and not session.errors


def test_invite_has_the_siprec_shape() -> None:
    wires = list(encode(CALL, guid=CISCO, vendor="cisco"))
    invite = parse_message(raw(wires[0]))
    assert invite.tokens("Require") == ["siprec"]
    assert "+sip.src" in (invite.get("Contact") or "")
    assert invite.get("Cisco-Guid") == CISCO
    assert (invite.get("Content-Type") or "").startswith("multipart/mixed;boundary=")
    assert b"a=label:1" in invite.body and b"a=rtpmap:0 PCMU/8000" in invite.body
    assert b"participantstreamassoc" in invite.body
    ack = parse_message(raw(wires[1]))
    assert ack.method == "ACK" and (ack.get("To") or "").endswith(server_tag(ack.call_id))
    rtp = [w for w in wires if w.channel.startswith("rtp")]
    assert [w.channel for w in rtp[:4]] == ["rtp:0", "rtp:1", "rtp:0", "rtp:1"]
    assert [w.at_ms for w in rtp[:4]] == [0.0, 0.0, 20.0, 20.0]
    first, second = unpack(raw(rtp[0])), unpack(raw(rtp[2]))
    assert (second.sequence - first.sequence) % 65536 == 1
    assert (second.timestamp - first.timestamp) % (1 << 32) == 160
    assert first.marker and not second.marker and len(first.payload) == 160
    assert unpack(raw(rtp[1])).ssrc != first.ssrc


@pytest.mark.parametrize(
    ("vendor", "guid", "source"),
    [
        ("generic", CISCO, "metadata"),
        ("cisco", CISCO, "Cisco-Guid"),
        ("avaya", AVAYA, "User-to-User"),
        ("avaya", "UCID-not-decimal", "X-UCID"),
    ],
)
def test_ucid_carried_where_the_vendor_puts_it(vendor: Vendor, guid: str, source: str) -> None:
    session = SiprecSession()
    first = next(iter(encode(CALL, guid=guid, vendor=vendor)))
    (_, opened) = session.feed(first)
    assert isinstance(opened, SessionOpened)
    assert (opened.guid, opened.info["guid_source"]) == (guid, source)


def test_uui_ucid_conversion() -> None:
    uui = ucid_to_uui(AVAYA)
    assert uui == "00FA080002D3DF63111234;encoding=hex"
    assert ucid_from_uui(uui) == AVAYA
    assert ucid_from_uui("FA080002D3DF63111234") == AVAYA
    assert ucid_to_uui(CISCO) is None and ucid_to_uui("99999000000000000000") is None
    assert ucid_from_uui("00C8") is None


def frames_received(wires: list[Wire], channel: str, ts0: int) -> list[int]:
    return sorted(
        ((unpack(raw(w)).timestamp - ts0) % (1 << 32)) // 160 for w in wires if w.channel == channel
    )


@pytest.mark.parametrize(
    ("loss", "reorder", "seed"), [(0.05, 0.0, 1), (0.1, 0.0, 2), (0.05, 0.1, 3)]
)
def test_seeded_loss_is_counted_exactly(loss: float, reorder: float, seed: int) -> None:
    clean = list(encode(CALL, guid=CISCO, seed=seed))
    lossy = list(encode(CALL, guid=CISCO, seed=seed, loss=loss, reorder=reorder))
    session = SiprecSession()
    events = play(lossy, session)
    n = n_padded(CALL)
    audio = timeline(events, n)
    for channel, role in roles("CUSTOMER_FIRST").items():
        ts0 = unpack(next(raw(w) for w in clean if w.channel == f"rtp:{channel}")).timestamp
        got = frames_received(lossy, f"rtp:{channel}", ts0)
        missing = set(range(n // 160)) - set(got)
        detectable = (got[-1] - got[0] + 1) - len(got)
        reported = sum(
            a.count for a in of_type(events, Anomaly) if isinstance(a, Anomaly) and
            a.kind == "loss" and a.channel == channel
        )  # fmt: skip
        assert missing and reported == detectable == session.stats()[channel]["lost"]
        want = expected(CALL, role, n).reshape(-1, 160).copy()
        want[sorted(missing)] = 0
        assert np.array_equal(audio[channel], want.reshape(-1))


@pytest.mark.parametrize("seed", [4, 5])
def test_reordering_keeps_audio_exact(seed: int) -> None:
    wires = list(encode(CALL, guid=CISCO, seed=seed, reorder=0.2))
    session = SiprecSession()
    events = play(wires, session)
    n = n_padded(CALL)
    audio = timeline(events, n)
    for channel, role in roles("CUSTOMER_FIRST").items():
        assert np.array_equal(audio[channel], expected(CALL, role, n))
    kinds = [a.kind for a in of_type(events, Anomaly) if isinstance(a, Anomaly)]
    assert kinds and set(kinds) == {"reorder"}
    assert sum(s["reordered"] for s in session.stats().values()) == len(kinds)


def wrapping_seed(frames: int) -> int:
    tiny = StereoCall(np.zeros(160, np.int16), np.zeros(160, np.int16))
    for seed in range(5000):
        first = next(w for w in encode(tiny, guid="1", seed=seed) if w.channel == "rtp:0")
        if 65536 - frames // 2 < unpack(raw(first)).sequence:
            return seed
    raise AssertionError("no seed wraps")


def test_sequence_wraps_past_65535() -> None:
    seed = wrapping_seed(len(CALL.customer) // 160)
    wires = list(encode(CALL, guid=CISCO, seed=seed, loss=0.02))
    seqs = [unpack(raw(w)).sequence for w in wires if w.channel == "rtp:0"]
    assert max(seqs) > 65500 and min(seqs) < 100
    session = SiprecSession()
    events = play(wires, session)
    clean = play(encode(CALL, guid=CISCO, seed=seed))
    n = n_padded(CALL)
    assert np.array_equal(timeline(clean, n)["0"], expected(CALL, "customer", n))
    lost = session.stats()["0"]["lost"]
    assert (
        0
        < lost
        == sum(
            a.count for a in of_type(events, Anomaly) if isinstance(a, Anomaly) and a.channel == "0"
        )
    )


@pytest.mark.parametrize(
    ("pauses", "windows"),
    [
        ([(1.0, 1.5)], [(8000, 12000)]),
        ([(0.5, 0.8), (2.0, 2.21)], [(4000, 6400), (16000, 17760)]),
        ([(0.5, 0.8), (0.7, 1.0)], [(4000, 8000)]),
    ],
)
def test_pause_windows_are_absent(
    pauses: list[tuple[float, float]], windows: list[tuple[int, int]]
) -> None:
    wires = list(encode(CALL, guid=CISCO, pauses=pauses, seed=9))
    session = SiprecSession()
    events = play(wires, session)
    n = n_padded(CALL)
    audio = timeline(events, n)
    assert [e.at_sample for e in events if isinstance(e, SessionPaused)] == [a for a, _ in windows]
    assert [e.at_sample for e in events if isinstance(e, SessionResumed)] == [b for _, b in windows]
    for channel, role in roles("CUSTOMER_FIRST").items():
        want = expected(CALL, role, n)
        for a, b in windows:
            want[a:b] = 0
        assert np.array_equal(audio[channel], want)
    assert not of_type(events, Anomaly)
    rtp_times = [w.at_ms * 8 for w in wires if w.channel.startswith("rtp")]
    assert not [t for t in rtp_times for a, b in windows if a <= t < b]
    directions = [
        parse_sdp(parse_message(raw(r)).body).media[0].direction
        for r in of_type(events, Reply)
        if b"application/sdp" in raw(r)
    ]
    assert directions == ["recvonly"] + ["inactive", "recvonly"] * len(windows)


def test_pause_until_the_end_and_from_the_start() -> None:
    events = play(encode(CALL, guid=CISCO, pauses=[(0.0, 0.1), (2.9, 5.0)]))
    assert [type(e).__name__ for e in events if isinstance(e, SessionPaused | SessionResumed)] == [
        "SessionPaused",
        "SessionResumed",
        "SessionPaused",
    ]
    audio = timeline(events, n_padded(CALL))
    assert not audio["0"][:800].any() and not audio["0"][23200:].any() and audio["0"][800:].any()


def sip_wires(**kwargs: Any) -> list[Wire]:
    return [w for w in encode(CALL, guid=CISCO, **kwargs) if w.channel == "sip"]


def edited_invite(edit: object) -> Wire:
    invite = parse_message(raw(sip_wires()[0]))
    assert callable(edit)
    edit(invite)
    return Wire(0.0, "sip", invite.to_bytes())


def drop_header(name: str) -> object:
    def edit(msg: SipMessage) -> None:
        msg.headers = [(k, v) for k, v in msg.headers if k != name]

    return edit


def add_header(name: str, value: str) -> object:
    def edit(msg: SipMessage) -> None:
        if name == "Content-Type":
            msg.set(name, value)
        else:
            msg.headers.append((name, value))

    return edit


def replace_body(old: bytes, new: bytes) -> object:
    def edit(msg: SipMessage) -> None:
        msg.body = msg.body.replace(old, new)

    return edit


def sdp_only(msg: SipMessage) -> None:
    msg.set("Content-Type", "application/sdp")
    msg.body = msg.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]


@pytest.mark.parametrize(
    ("wire", "status", "reason"),
    [
        (Wire(0, "sip", b"INVITE nonsense\r\n\r\n"), 400, "bad-start-line"),
        (edited_invite(drop_header("Require")), 421, "no-siprec"),
        (edited_invite(add_header("Require", "100rel")), 420, "bad-extension"),
        (edited_invite(add_header("Content-Type", "text/plain")), 415, "not-sdp"),
        (edited_invite(replace_body(b"application/sdp", b"text/plain")), 415, "no-sdp"),
        (edited_invite(replace_body(b"m=audio 20002 RTP/AVP 0", b"m=video 20002 RTP/AVP 0")),
         488, "not-two-audio"),
        (edited_invite(replace_body(b"RTP/AVP 0", b"RTP/AVP 8")), 488, "no-pcmu"),
        (edited_invite(replace_body(b"</recording>", b"</recordin>")), 400, "bad-metadata"),
        (edited_invite(replace_body(b"v=0", b"v=9")), 400, "bad-sdp"),
        (sip_wires()[-1], 481, "no-dialog"),
        (Wire(0, "sip", raw(sip_wires()[0]).replace(b"INVITE", b"REGISTER")), 405, "bad-method"),
    ],
)  # fmt: skip
def test_refused_requests_get_their_status(wire: Wire, status: int, reason: str) -> None:
    session = SiprecSession()
    with pytest.raises(SipError) as info:
        session.feed(wire)
    err = info.value
    assert (err.sip_status, err.reason) == (status, reason)
    assert session.errors == {f"sip-{status}": 1}
    response = err.to_response()
    if status != 400 or reason != "bad-start-line":
        assert response is not None and response.status == status
        assert parse_message(response.to_bytes()).call_id == parse_message(raw(wire)).call_id
    # Never fatal: the same session still takes a good call.
    events = play(encode(CALL, guid=CISCO), session)
    assert of_type(events, SessionOpened) and of_type(events, SessionClosed)


def test_too_large_and_busy_and_stale_dialog() -> None:
    session = SiprecSession(max_message=1000)
    with pytest.raises(SipError) as info:
        session.feed(sip_wires()[0])
    assert info.value.sip_status == 513 and info.value.to_response() is not None
    session = SiprecSession()
    session.feed(sip_wires()[0])
    with pytest.raises(SipError) as info:
        session.feed(sip_wires(seed=99)[0])
    assert info.value.sip_status == 486
    with pytest.raises(SipError) as info:
        session.feed(sip_wires(seed=99)[-1])
    assert info.value.sip_status == 481
    bye = parse_message(raw(sip_wires()[-1]))
    bye.set("To", "<sip:srs@x>;tag=wrong")
    with pytest.raises(SipError) as info:
        session.feed(Wire(0, "sip", bye.to_bytes()))
    assert info.value.sip_status == 481
    assert session.errors == {"sip-486": 1, "sip-481": 2}
    assert session.state == "active"


def test_bye_state_and_late_messages() -> None:
    session = SiprecSession()
    wires = sip_wires()
    session.feed(wires[0])
    assert session.feed(wires[1]) == []
    assert not session.bye_in_progress
    events = session.feed(wires[-1])
    assert [type(e).__name__ for e in events] == ["Reply", "SessionClosed"]
    assert session.bye_in_progress and session.state == "closing"
    with pytest.raises(SipError) as info:
        session.feed(wires[-1])
    assert info.value.sip_status == 481
    with pytest.raises(RtpError) as rtp_info:
        session.feed(next(w for w in encode(CALL, guid=CISCO) if w.channel == "rtp:0"))
    assert rtp_info.value.reason == "no-session"
    assert session.close() == [] and session.state == "closed" and not session.bye_in_progress


def test_close_without_bye_and_options_and_strays() -> None:
    session = SiprecSession()
    invite, ack = sip_wires()[:2]
    assert [type(e).__name__ for e in session.feed(ack)] == ["Anomaly"]
    options = raw(invite).replace(b"INVITE", b"OPTIONS")
    (reply,) = session.feed(Wire(0, "sip", options))
    assert parse_message(raw(reply)).status == 200
    ok = raw(reply)
    session.feed(invite)
    assert [type(e).__name__ for e in session.feed(Wire(0, "sip", ok))] == ["Anomaly"]
    assert session.close() == [SessionClosed("closed")]


def test_rtp_errors_are_counted_not_fatal() -> None:
    session = SiprecSession()
    wires = list(encode(CALL, guid=CISCO))
    rtp0 = [w for w in wires if w.channel == "rtp:0"]
    with pytest.raises(RtpError):
        session.feed(rtp0[0])
    session.feed(wires[0])
    session.feed(rtp0[0])
    bad = [
        Wire(20, "rtp:0", b"\x00" * 20),
        Wire(20, "rtp:0", b"\x80"),
        Wire(20, "rtp:0", raw(rtp0[1])[:1] + b"\x08" + raw(rtp0[1])[2:]),
        Wire(20, "rtp:0", "text"),
    ]
    for wire in bad:
        with pytest.raises(RtpError):
            session.feed(wire)
    assert session.errors == {
        "no-session": 1,
        "bad-version": 1,
        "truncated": 1,
        "bad-payload-type": 1,
        "bad-length": 1,
    }
    (chunk,) = session.feed(rtp0[1])
    assert isinstance(chunk, AudioChunk) and chunk.start_sample == 160
    with pytest.raises(ConfigError):
        session.feed(Wire(0, "ws", b""))


def test_rtp_while_paused_is_reported() -> None:
    wires = list(encode(CALL, guid=CISCO, pauses=[(1.0, 2.0)]))
    session = SiprecSession()
    reinvite_at = next(i for i, w in enumerate(wires) if w.channel == "sip" and w.at_ms == 1000)
    for wire in wires[: reinvite_at + 1]:
        session.feed(wire)
    assert session.state == "paused"
    stray = next(w for w in wires[reinvite_at:] if w.channel == "rtp:1")
    assert session.feed(stray) == [Anomaly("inactive", "RTP while the recording is paused", "1")]


def test_sip_over_tcp_framing_of_a_whole_dialog() -> None:
    messages = [raw(w) for w in encode(CALL, guid=CISCO, pauses=[(1.0, 1.2)]) if w.channel == "sip"]
    stream = b"".join(messages)
    rng = np.random.default_rng(0)
    cuts = sorted(rng.integers(0, len(stream), 12).tolist())
    parser = SipStreamParser()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += parser.feed(stream[a:b])
    assert [m.to_bytes() for m in got if isinstance(m, SipMessage)] == messages


@pytest.mark.parametrize(
    "kwargs",
    [
        {"media_line_order": "MIDDLE"},
        {"vendor": "sonus"},
        {"loss": 1.0},
        {"reorder": -0.1},
        {"pauses": [(2.0, 1.0)]},
        {"guid": "has space"},
        {"guid": ""},
    ],
)
def test_encode_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"guid": CISCO, **kwargs}
    with pytest.raises(ConfigError):
        list(encode(CALL, **args))


def test_encode_is_deterministic_per_seed() -> None:
    a = [w.data for w in encode(CALL, guid=CISCO, seed=1, loss=0.1, reorder=0.1)]
    b = [w.data for w in encode(CALL, guid=CISCO, seed=1, loss=0.1, reorder=0.1)]
    c = [w.data for w in encode(CALL, guid=CISCO, seed=2, loss=0.1, reorder=0.1)]
    assert a == b and a != c


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_into_a_session_raise_only_its_errors(data: bytes) -> None:
    session = SiprecSession()
    with contextlib.suppress(SipError):
        session.feed(Wire(0, "sip", data))
    session = SiprecSession()
    session.feed(sip_wires()[0])
    with contextlib.suppress(RtpError):
        session.feed(Wire(0, "rtp:1", data))
