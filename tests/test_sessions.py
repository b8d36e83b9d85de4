"""Media sessions: decoder events become call state; errors stay inside their session."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.clock import VirtualClock
from mgsim.contract import Problem
from mgsim.gateway import Gateway, StartParams
from mgsim.gateway.sessions import (
    AudioHookMediaSession,
    KvsMediaSession,
    MediaSession,
    count_media,
    is_media,
    open_media_session,
)
from mgsim.gateway.timeline import MAX_SAMPLES
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.media.impair import Impairment
from mgsim.sim.play import play

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-connect-demo/1700000000000"
CONTACT_A = "1117e864-690f-4e1e-9dcf-6fbfcc288e41"
CONTACT_B = "2227e864-690f-4e1e-9dcf-6fbfcc288e42"
CONVERSATION = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
UCID = "0867617078-0032318833-2221801472-0002236962"


def sid(n: int) -> str:
    return "CA" + f"{n:032x}"


@pytest.fixture
def gw() -> Gateway:
    return Gateway(VirtualClock())


@pytest.fixture
def stereo() -> StereoCall:
    rng = np.random.default_rng(5)
    return StereoCall(
        rng.integers(-8000, 8000, 8000).astype(np.int16),
        rng.integers(-8000, 8000, 8000).astype(np.int16),
    )


def feed_all(session: MediaSession, wires: list[Wire]) -> list[Any]:
    return [r for w in wires for r in session.feed(w)]


@pytest.mark.parametrize("namespace", ["siprec", "twilio", "genesysaudiohook", "amazonconnect"])
def test_open_media_session_picks_the_namespace_adapter(gw: Gateway, namespace: str) -> None:
    options = {"stream_arn": ARN} if namespace == "amazonconnect" else {}
    session = open_media_session(gw, namespace, **options)
    assert session.namespace == namespace and session.call is None


def test_unknown_namespace_is_refused(gw: Gateway) -> None:
    with pytest.raises(ValueError, match="unknown namespace"):
        open_media_session(gw, "skype")


@pytest.mark.parametrize(
    ("namespace", "wire", "media"),
    [
        ("twilio", Wire(0, "ws", '{"event": "media", "media": {}}'), True),
        ("twilio", Wire(0, "ws", '{"event":"start"}'), False),
        ("genesysaudiohook", Wire(0, "ws", b"\xff\xff"), True),
        ("genesysaudiohook", Wire(0, "ws", "{}"), False),
        ("siprec", Wire(0, "rtp:1", b""), True),
        ("siprec", Wire(0, "sip", b"INVITE"), False),
        ("amazonconnect", Wire(0, "kvs", b""), True),
    ],
)
def test_is_media(namespace: str, wire: Wire, media: bool) -> None:
    assert is_media(namespace, wire) is media


def test_a_twilio_error_ends_only_its_own_session(gw: Gateway, stereo: StereoCall) -> None:
    bad_wires = list(twilio.encode(stereo, guid=sid(1)))
    good_wires = list(twilio.encode(stereo, guid=sid(2)))
    bad, good = open_media_session(gw, "twilio"), open_media_session(gw, "twilio")
    feed_all(bad, bad_wires[:6])
    feed_all(good, good_wires[:6])
    assert bad.feed(Wire(0.1, "ws", '{"event":"media", "oops"')) == []
    assert bad.errors == {"bad-json": 1} and bad.close_code == 1007
    assert bad.call is not None and bad.call.closed_at is not None  # the socket is closed
    assert bad.feed(bad_wires[6]) == []
    assert bad.accounting.dropped == {"decode-error": 1, "after-close": 1}
    feed_all(good, good_wires[6:])
    good.close()
    assert good.errors == {} and good.accounting.dropped == {}
    assert good.accounting.balanced(count_media("twilio", good_wires))
    assert good.call is not None and good.call.timeline("inbound").received_samples == 8000


def test_twilio_duplicates_and_loss_balance_the_books(gw: Gateway, stereo: StereoCall) -> None:
    wires = list(twilio.encode(stereo, guid=sid(3)))
    media = [i for i, w in enumerate(wires) if is_media("twilio", w)]
    lost = {media[10], media[11], media[40]}
    delivered = [w for i, w in enumerate(wires) if i not in lost]
    delivered.insert(20, wires[media[5]])  # a repeat
    result = play(gw, "twilio", delivered)
    acc = result.accounting
    assert (acc.lost, acc.dropped["duplicate"]) == (3, 1)
    assert acc.balanced(len(media) + 1)  # the sender sent every frame, one of them twice
    assert acc.anomalies["gap"] == 3 and acc.anomalies["loss"] == 3


def test_media_after_stop_is_dropped_after_close(gw: Gateway, stereo: StereoCall) -> None:
    wires = list(twilio.encode(stereo, guid=sid(4)))
    session = open_media_session(gw, "twilio")
    feed_all(session, wires)  # ends with "stop": the call hangs up
    assert session.call is not None and sid(4) in gw.ended
    session.feed(wires[5])
    assert session.accounting.dropped == {"after-close": 1}


def test_a_call_opened_by_the_control_api_is_adopted(gw: Gateway, stereo: StereoCall) -> None:
    call = gw.open_call("twilio", sid(5))
    gw.start("twilio", sid(5), StartParams("c", "a"))
    result = play(gw, "twilio", twilio.encode(stereo, guid=sid(5)))
    assert result.call is call and call.source == "twilio-ws"
    assert call.segments[0].samples == {"customer": 8000, "agent": 8000}


def test_a_second_stream_for_an_open_call_is_refused(gw: Gateway, stereo: StereoCall) -> None:
    first = open_media_session(gw, "twilio")
    feed_all(first, list(twilio.encode(stereo, guid=sid(6)))[:4])
    second = open_media_session(gw, "twilio")
    feed_all(second, list(twilio.encode(stereo, guid=sid(6)))[:4])
    assert second.errors["guid-in-use"] == 1
    assert second.close_code == 1008  # the platform's doing, not the gateway's (1011)
    assert gw.calls[sid(6)] is first.call


def test_audiohook_error_answers_disconnect_then_waits_for_close(
    gw: Gateway, stereo: StereoCall
) -> None:
    wires = list(audiohook.encode(stereo, guid=CONVERSATION, frame_ms=100))
    session = open_media_session(gw, "genesysaudiohook")
    assert isinstance(session, AudioHookMediaSession)
    feed_all(session, wires[:3])
    replies = session.feed(Wire(0.3, "ws", b"\xff"))  # odd size: not whole stereo samples
    assert [json.loads(r.data)["type"] for r in replies] == ["disconnect"]
    assert json.loads(replies[0].data)["parameters"]["reason"] == "error"
    assert session.errors == {"bad-frame": 1} and session.close_code == 1008
    session.feed(wires[3])  # audio while the server waits for close
    assert session.accounting.dropped == {"decode-error": 1, "after-error": 1}
    call = session.call
    assert call is not None and call.closed_at is None
    decoder = session.decoder
    text = json.dumps(
        {
            "version": "2",
            "id": decoder.session_id,
            "type": "close",
            "seq": decoder.clientseq + 1,
            "serverseq": decoder.seq,
            "position": audiohook.format_position(decoder.position),
            "parameters": {"reason": "end"},
        }
    )
    assert [json.loads(r.data)["type"] for r in session.feed(Wire(0.4, "ws", text))] == ["closed"]
    assert call.closed_at is not None


def test_audiohook_probe_opens_no_call(gw: Gateway, stereo: StereoCall) -> None:
    session = open_media_session(gw, "genesysaudiohook")
    assert isinstance(session, AudioHookMediaSession)
    replies = feed_all(session, list(audiohook.encode(stereo, guid=CONVERSATION, probe=True)))
    assert [json.loads(r.data)["type"] for r in replies] == ["opened", "closed"]
    assert session.probe and session.call is None and gw.calls == {} and gw.ended == {}


@pytest.mark.parametrize("namespace", ["genesysaudiohook", "siprec"])
def test_paused_audio_is_not_on_the_timeline(
    gw: Gateway, stereo: StereoCall, namespace: str
) -> None:
    if namespace == "siprec":
        wires = siprec.encode(stereo, guid=UCID, pauses=[(0.2, 0.5)])
    else:
        wires = audiohook.encode(stereo, guid=CONVERSATION, frame_ms=20, pauses=[(200, 500)])
    result = play(gw, namespace, wires)
    assert result.call is not None and result.call.pauses == [(1600, 4000)]
    for role in ("customer", "agent"):
        received = result.received[role]
        assert not received[1600:4000].any() and received[:1600].all() and received[4000:].all()
    assert result.balanced()


def test_audio_sent_while_paused_is_dropped_as_paused(gw: Gateway, stereo: StereoCall) -> None:
    wires = list(audiohook.encode(stereo, guid=CONVERSATION, frame_ms=100, pauses=[(200, 500)]))
    paused_at = next(i for i, w in enumerate(wires) if '"paused"' in str(w.data))
    wires.insert(paused_at + 1, Wire(0.25, "ws", b"\xff" * 200))
    result = play(gw, "genesysaudiohook", wires)
    assert result.accounting.dropped == {"paused": 1} and result.balanced()


def test_siprec_bye_holds_the_call_in_409_203_until_close(gw: Gateway, stereo: StereoCall) -> None:
    result = play(gw, "siprec", siprec.encode(stereo, guid=UCID), close=False)
    call = result.call
    assert call is not None and call.bye_in_progress
    with pytest.raises(Problem) as exc:
        gw.start("siprec", UCID, StartParams("c", "a"))
    assert exc.value.code == "409-203"
    result.session.feed(Wire(1001.0, "rtp:0", b"\x80" * 20))  # stray RTP after the BYE
    assert result.accounting.dropped == {"after-close": 1}
    result.session.close()
    assert not call.bye_in_progress and call.closed_at is not None
    with pytest.raises(Problem) as exc:
        gw.start("siprec", UCID, StartParams("c", "a"))
    assert exc.value.code == "400-203"


def test_siprec_errors_get_sip_answers_or_nothing_for_rtp(gw: Gateway, stereo: StereoCall) -> None:
    wires = list(siprec.encode(stereo, guid=UCID))
    session = open_media_session(gw, "siprec")
    feed_all(session, wires[:4])
    assert session.feed(Wire(0.05, "rtp:0", b"\x00\x01")) == []  # truncated RTP
    info = b"INFO sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
    info += b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 9 INFO\r\n"
    info += b"Content-Length: 0\r\n\r\n"
    replies = session.feed(Wire(0.06, "sip", info))
    assert len(replies) == 1 and replies[0].data[:11] == b"SIP/2.0 405"
    assert session.errors == {"truncated": 1, "bad-method": 1}
    assert session.accounting.dropped == {"decode-error": 1}
    feed_all(session, wires[4:])
    session.close()
    assert session.accounting.balanced(count_media("siprec", wires) + 1)


def test_siprec_packet_loss_is_counted(gw: Gateway, stereo: StereoCall) -> None:
    # Seed 3 loses 7 packets, none of them the last of its stream (a trailing loss leaves
    # no later sequence number to reveal it).
    result = play(gw, "siprec", siprec.encode(stereo, guid=UCID, loss=0.1, seed=3))
    acc = result.accounting
    assert acc.lost == acc.anomalies["loss"] == 7
    assert acc.balanced(2 * 50)  # 1 s of 20 ms packets on two streams, as the SBC meant


# -- Amazon Connect


def fragments(call: StereoCall, contact: str, epoch_ms: int = kvs.DEFAULT_EPOCH_MS) -> list[Wire]:
    return list(
        kvs.encode(call, guid=contact, stream_arn=ARN, fragment_ms=100, start_ms_epoch=epoch_ms)
    )


def test_kvs_fragments_open_the_call_and_ack(gw: Gateway, stereo: StereoCall) -> None:
    session = open_media_session(gw, "amazonconnect", stream_arn=ARN)
    acks = [json.loads(r.data) for r in feed_all(session, fragments(stereo, CONTACT_A))]
    assert {a["EventType"] for a in acks} == {"PERSISTED"}
    numbers = [f.number for f in gw.kvs.get(ARN).fragments]
    assert [a["FragmentNumber"] for a in acks] == numbers
    call = gw.calls[CONTACT_A]
    assert call.source == "kvs" and call.info["stream_arn"] == ARN and call.media is not None
    assert call.accounting.received == 10 and call.accounting.streamed == 0


def test_kvs_contact_change_ends_the_previous_call(gw: Gateway, stereo: StereoCall) -> None:
    session = open_media_session(gw, "amazonconnect", stream_arn=ARN)
    first = fragments(stereo, CONTACT_A)
    feed_all(session, first[:5])
    gw.start("amazonconnect", CONTACT_A, StartParams("c", "a"))
    feed_all(session, first[5:])
    feed_all(session, fragments(stereo, CONTACT_B, kvs.DEFAULT_EPOCH_MS + 60_000)[:3])
    old = gw.ended[CONTACT_A]
    assert old.closed_at is not None and not old.streaming
    assert (old.accounting.ended_by, old.accounting.end_reason) == ("platform", "contact-changed")
    assert old.segments[0].samples == {"customer": 4000, "agent": 4000}
    assert gw.calls[CONTACT_B].timeline("AUDIO_FROM_CUSTOMER").received_samples == 2400
    assert session.call is gw.calls[CONTACT_B]
    assert gw.kvs_media.reader_fragments(CONTACT_A) is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"streamArn": ARN.replace("demo", "other")}, "amazonConnectParams.streamArn"),
        (
            {"streamArn": ARN, "startSelectorType": "FRAGMENT_NUMBER", "afterFragmentNumber": "9"},
            "amazonConnectParams.afterFragmentNumber",
        ),
    ],
)
def test_kvs_start_problems_name_the_field(
    gw: Gateway, stereo: StereoCall, params: dict[str, str], field: str
) -> None:
    session = open_media_session(gw, "amazonconnect", stream_arn=ARN)
    feed_all(session, fragments(stereo, CONTACT_A)[:2])
    body = {"amazonConnectParams": params}
    with pytest.raises(Problem) as exc:
        gw.start("amazonconnect", CONTACT_A, StartParams("c", "a", body=body))
    assert exc.value.code == "400-201" and exc.value.message.startswith(field)
    assert not gw.calls[CONTACT_A].streaming and gw.calls[CONTACT_A].segments == []


def test_kvs_corrupt_fragment_is_acked_as_error(gw: Gateway, stereo: StereoCall) -> None:
    session = open_media_session(gw, "amazonconnect", stream_arn=ARN)
    assert isinstance(session, KvsMediaSession)
    wires = fragments(stereo, CONTACT_A)
    feed_all(session, wires[:2])
    (ack,) = session.feed(Wire(0.25, "kvs", b"\x1a\x45\xdf\xa3\x81"))
    assert json.loads(ack.data)["EventType"] == "ERROR"
    feed_all(session, wires[2:])
    session.close()
    assert session.errors == {"corrupt-ebml": 1}
    assert session.accounting.balanced(len(wires) + 1)
    assert session.call is not None and session.call.closed_at is not None


def test_kvs_start_with_unknown_stream_through_the_http_api(stereo: StereoCall) -> None:
    from mgsim.client import Client
    from mgsim.contract.models import AmazonConnectParams
    from mgsim.errors import BadRequestError
    from mgsim.simulator import Simulator

    with Simulator(virtual=True, seed=1) as sim, Client(simulator=sim) as client:
        session = open_media_session(sim.gateway, "amazonconnect", stream_arn=ARN)
        feed_all(session, fragments(stereo, CONTACT_A)[:2])
        other = AmazonConnectParams(ARN.replace("demo", "other"))
        with pytest.raises(BadRequestError) as exc:
            client.start_streaming("amazonconnect", CONTACT_A, "c", "a", params=other)
        assert exc.value.code == "400-201" and "streamArn" in exc.value.message


def test_only_recently_ended_kinesis_streams_keep_their_fragments(stereo: StereoCall) -> None:
    gw = Gateway(VirtualClock(), keep_audio_of=2)
    arns = [ARN.replace("demo", f"demo-{i}") for i in range(4)]
    contacts = [str(uuid.UUID(int=i + 1)) for i in range(4)]
    for arn, contact in zip(arns, contacts, strict=True):
        session = open_media_session(gw, "amazonconnect", stream_arn=arn)
        wires = list(kvs.encode(stereo, guid=contact, stream_arn=arn, fragment_ms=100))
        feed_all(session, wires)
        session.close()
    held = [len(gw.kvs_media.stream(arn)) for arn in arns]
    assert held[:2] == [0, 0] and held[2] > 0 and held[3] > 0
    assert [gw.kvs_media.stream(arn).released > 0 for arn in arns] == [True, True, False, False]
    # The calls and their books stay.
    assert all(gw.ended[c].accounting.received > 0 for c in contacts)


def _run_twilio(
    wires: list[Wire], cuts: set[int], *, hold: bool, toggle: bool
) -> tuple[Gateway, MediaSession]:
    """Feed ``wires`` (held or one by one); at each index in ``cuts`` flush and, with
    ``toggle``, start or stop streaming, as a scenario does between batches."""
    clock = VirtualClock()
    gw = Gateway(clock)
    session = open_media_session(gw, "twilio")
    for i, wire in enumerate(wires):
        if i in cuts:
            session.flush()
            call = session.call
            if toggle and call is not None and call.closed_at is None:
                if call.streaming:
                    gw.stop("twilio", call.guid)
                else:
                    gw.start("twilio", call.guid, StartParams("c1", "a1"))
        clock.advance(max(0.0, wire.at_ms / 1000.0 - clock.now()))
        session.feed(wire, hold=hold)
    session.close()
    return gw, session


def _state(session: MediaSession) -> dict[str, Any]:
    call = session.call
    assert call is not None
    acc = call.accounting
    covered = {}
    for seg in call.segments:
        for channel, runs in seg.streamed_runs.items():
            covered[(seg.index, channel)] = sorted((a, b) for a, b, _ in runs)
    return {
        "accounting": (acc.received, acc.streamed, acc.lost, acc.dropped, acc.anomalies),
        "errors": (dict(acc.errors), dict(session.errors), session.close_code),
        "end": (acc.ended_by, acc.end_reason, call.closed_at, call.last_audio_at),
        "samples": [dict(seg.samples) for seg in call.segments],
        "timelines": {
            ch: (tl.audio().tolist(), tl.received_mask().tolist(), tl.streamed_mask().tolist())
            for ch, tl in call.timelines.items()
        },
    }


@settings(max_examples=40, deadline=None)
@given(
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    burst=st.sampled_from([0.0, 0.05]),
    jitter_ms=st.sampled_from([0.0, 40.0]),
    shuffle=st.sampled_from([0.0, 0.05, 0.2]),
    seed=st.integers(0, 1000),
    cuts=st.sets(st.integers(0, 120), max_size=8),
    bad_at=st.one_of(st.none(), st.integers(3, 100)),
)
def test_held_twilio_media_ends_as_fed_one_by_one(
    loss: float,
    burst: float,
    jitter_ms: float,
    shuffle: float,
    seed: int,
    cuts: set[int],
    bad_at: int | None,
) -> None:
    rng = np.random.default_rng(seed)
    customer, agent = (rng.integers(-8000, 8000, 9000).astype(np.int16) for _ in "ca")
    call = StereoCall(customer, agent)
    spec = Impairment(loss=loss, burst=burst, jitter_ms=jitter_ms, seed=seed)
    wires = list(spec.apply(twilio.encode(call, guid=sid(9)), "twilio"))
    # Twilio's TCP never duplicates or reorders, but a broken proxy may: repeat and swap
    # some messages, so held runs also meet duplicates, reorders and gaps.
    for i in range(3, len(wires) - 2):
        draw = rng.random()
        if draw < shuffle / 2:
            wires[i], wires[i + 1] = wires[i + 1], wires[i]
        elif draw < shuffle:
            wires.insert(i, wires[i - 2])
    if bad_at is not None:  # a malformed message ends the session mid-run
        bad_at = min(bad_at, len(wires) - 1)
        wires.insert(bad_at, Wire(wires[bad_at].at_ms, "ws", '{"event":"media"'))
    _, one_by_one = _run_twilio(wires, cuts, hold=False, toggle=True)
    _, held = _run_twilio(wires, cuts, hold=True, toggle=True)
    assert _state(held) == _state(one_by_one)
    assert held.call is not None and held.call.accounting.received > 0


def test_held_twilio_media_is_placed_in_runs(stereo: StereoCall) -> None:
    wires = list(twilio.encode(stereo, guid=sid(10)))
    _, session = _run_twilio(wires, set(), hold=True, toggle=False)
    call = session.call
    assert call is not None and call.timeline("inbound").received_samples == 8000
    # One placement per track: the whole call was one run of in-order frames.
    assert {ch: tl.placements for ch, tl in call.timelines.items()} == {
        "inbound": 1,
        "outbound": 1,
    }
    assert call.accounting.balanced(count_media("twilio", wires))


def test_held_twilio_media_beyond_the_timeline_is_dropped_frame_by_frame(gw: Gateway) -> None:
    session = open_media_session(gw, "twilio")
    call = StereoCall(np.ones(320, np.int16), np.ones(320, np.int16))
    wires = list(twilio.encode(call, guid=sid(11)))
    last_ms = MAX_SAMPLES // 8 - 20  # the second frame of each track ends past the end

    def shifted(wire: Wire) -> Wire:
        msg = json.loads(wire.data)
        if msg["event"] == "media":
            msg["media"]["timestamp"] = str(int(msg["media"]["timestamp"]) + last_ms)
        return Wire(wire.at_ms, wire.channel, json.dumps(msg))

    for wire in wires[:-1]:
        session.feed(shifted(wire), hold=True)
    session.flush()
    acc = session.accounting
    assert (acc.received, acc.dropped) == (2, {"out-of-range": 2})
