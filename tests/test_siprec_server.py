"""The SIPREC recording server's answers and accounting, as an SBC meets them.

Each test is a regression test for what a real SBC saw (issue 11): the 200 OK's Contact,
a UCID already recorded, a session refresh without a body, an SSRC change, RTCP, RTP
during a pause, a plain SDP INVITE, To tags, and the answer to a missing ``Require``.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import RECEIVER_REPORT, noise_call

from mgsim.clock import VirtualClock
from mgsim.gateway import Gateway
from mgsim.gateway.sessions import SiprecMediaSession, count_media, open_media_session
from mgsim.media import siprec
from mgsim.media._base import (
    Event,
    Reply,
    SessionPaused,
    SessionResumed,
    StereoCall,
    Wire,
)
from mgsim.media.rtp import unpack
from mgsim.media.sdp import parse_sdp
from mgsim.media.sip import SipError, SipMessage, header_param, parse_message
from mgsim.media.siprec_server import SiprecSession

UCID = "0867617078-0032318833-2221801472-0002236962"


@pytest.fixture(scope="module")
def stereo() -> StereoCall:
    call: StereoCall = noise_call(5, 16000)
    return call


def sip(wires: list[Wire]) -> list[Wire]:
    return [w for w in wires if w.channel == "sip"]


def replies(events: list[Event] | list[Reply]) -> list[SipMessage]:
    out = []
    for e in events:
        if isinstance(e, Reply):
            assert isinstance(e.data, bytes)
            out.append(parse_message(e.data))
    return out


def request(wire: Wire) -> SipMessage:
    assert isinstance(wire.data, bytes)
    return parse_message(wire.data)


def in_dialog(
    invite: SipMessage, method: str, cseq: int, body: bytes = b"", ctype: str = ""
) -> Wire:
    """An in-dialog request of the SBC (RFC 3261 12.2.1.1), built from its INVITE."""
    tag = siprec.server_tag(invite.call_id)
    headers = [
        ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK" + f"{method}{cseq}"),
        ("From", invite.get("From") or ""),
        ("To", f"{invite.get('To')};tag={tag}"),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", invite.get("Contact") or ""),
    ]
    if body:
        headers.append(("Content-Type", ctype or "application/sdp"))
    if method == "INVITE":
        headers.append(("Require", "siprec"))
    return Wire(0.0, "sip", SipMessage.request(method, invite.uri, headers, body).to_bytes())


def sdp_with(direction: str, version: int) -> bytes:
    return (
        f"v=0\r\no=sbc 1 {version} IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        f"m=audio 20000 RTP/AVP 0\r\na=label:1\r\na={direction}\r\n"
        f"m=audio 20002 RTP/AVP 0\r\na=label:2\r\na={direction}\r\n"
    ).encode()


# -- 1. Contact


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_the_200_contact_names_the_servers_host_port_transport_and_srs_feature(
    stereo: StereoCall, transport: str
) -> None:
    session = SiprecSession(address="127.0.0.1", sip_port=5090, sip_transport=transport)
    (ok,) = replies(session.feed(sip(list(siprec.encode(stereo, guid=UCID)))[0]))
    contact = ok.get("Contact") or ""
    # RFC 3261 8.1.1.8 / 12.1.1: the SBC's ACK, re-INVITE and BYE go to this URI.
    assert contact.startswith("<sip:srs@127.0.0.1:5090;transport=") and contact.endswith(
        ">;+sip.srs"
    )
    assert f";transport={transport}>" in contact
    assert session.info["contact"] == contact


# -- 2. a UCID already recorded


def test_an_invite_for_a_ucid_in_use_is_refused_with_486_saying_why(stereo: StereoCall) -> None:
    gw = Gateway(VirtualClock())
    first = open_media_session(gw, "siprec")
    a = list(siprec.encode(stereo, guid=UCID, vendor="cisco", seed=1))
    b = list(siprec.encode(stereo, guid=UCID, vendor="cisco", seed=2))  # another dialog
    assert request(a[0]).call_id != request(b[0]).call_id
    assert replies(first.feed(a[0]))[0].status == 200
    second = open_media_session(gw, "siprec")
    (answer,) = replies(second.feed(b[0]))
    assert answer.status == 486
    warning = answer.get("Warning") or ""
    assert warning.startswith("399 ") and UCID in warning and "already" in warning
    assert header_param(answer.get("To") or "", "tag")
    assert isinstance(second, SiprecMediaSession) and second.decoder.state == "idle"
    assert second.call is None and gw.calls[UCID] is first.call
    # The first dialog goes on untouched.
    for wire in a[1:]:
        first.feed(wire)
    first.close()
    assert first.call is not None and first.call.accounting.balanced(count_media("siprec", a))
    assert first.call.accounting.errors == {}


def test_a_ucid_opened_through_the_control_api_is_adopted_not_refused(stereo: StereoCall) -> None:
    gw = Gateway(VirtualClock())
    gw.open_call("siprec", UCID)
    session = open_media_session(gw, "siprec")
    wires = list(siprec.encode(stereo, guid=UCID, vendor="cisco"))
    assert replies(session.feed(wires[0]))[0].status == 200


# -- 3. a session refresh without a body


def test_a_reinvite_without_body_gets_an_offer_and_the_ack_carries_the_answer(
    stereo: StereoCall,
) -> None:
    session = SiprecSession(ports=(40100, 40102))
    wires = list(siprec.encode(stereo, guid=UCID))
    invite = request(wires[0])
    (first_ok,) = replies(session.feed(wires[0]))
    refresh = in_dialog(invite, "INVITE", 10)
    (ok,) = replies(session.feed(refresh))
    # RFC 3261 14.2: a 2xx to an INVITE without an offer carries one.
    assert ok.status == 200 and ok.get("Content-Type") == "application/sdp" and ok.body
    offer, before = parse_sdp(ok.body), parse_sdp(first_ok.body)
    assert [(m.port, m.direction, m.label) for m in offer.media] == [
        (40100, "recvonly", "1"),
        (40102, "recvonly", "2"),
    ]
    assert offer.origin == before.origin  # unchanged session: same o= version (RFC 3264 8)
    # The answer comes in the ACK; an inactive answer pauses, a later re-offer resumes.
    events = session.feed(in_dialog(invite, "ACK", 10, sdp_with("inactive", 2)))
    assert [type(e) for e in events] == [SessionPaused] and session.state == "paused"
    events = session.feed(in_dialog(invite, "INVITE", 11, sdp_with("sendonly", 3)))
    assert [type(e) for e in events] == [Reply, SessionResumed]
    assert session.feed(in_dialog(invite, "ACK", 11)) == []


# -- 4. an SSRC change


def restamped(wires: list[Wire], channel: str, after: int, ssrc: int, seq: int) -> list[Wire]:
    """Wires where ``channel``'s packets from the ``after``-th on come from a new source:
    another SSRC, sequence and timestamp base, as an SBC re-anchoring media sends."""
    out, n = [], 0
    for w in wires:
        if w.channel == channel:
            assert isinstance(w.data, bytes)
            if n >= after:
                p = unpack(w.data)
                head = struct.pack(">BBHII", w.data[0], w.data[1], seq + n, 999 + 160 * n, ssrc)
                w = Wire(w.at_ms, channel, head + p.payload)
            n += 1
        out.append(w)
    return out


def test_an_ssrc_change_is_followed_by_its_m_line_and_counted(stereo: StereoCall) -> None:
    gw = Gateway(VirtualClock())
    plain = list(siprec.encode(stereo, guid=UCID))
    wires = restamped(plain, "rtp:0", after=40, ssrc=0xFEEDBEEF, seq=30000)
    session = open_media_session(gw, "siprec")
    for w in wires:
        session.feed(w)
    session.close()
    call = session.call
    assert call is not None
    acc = call.accounting
    assert acc.received == count_media("siprec", wires) and acc.lost == 0
    assert acc.errors == {} and acc.dropped == {}
    assert acc.anomalies["ssrc-change"] == 1
    # The audio is where it was before the change: the same timeline as without it.
    reference = open_media_session(Gateway(VirtualClock()), "siprec")
    for w in plain:
        reference.feed(w)
    assert reference.call is not None
    got, want = call.timelines["0"], reference.call.timelines["0"]
    assert len(got) == len(want) and np.array_equal(got.audio(), want.audio())


# -- 5. RTCP


def test_rtcp_on_its_own_port_or_multiplexed_is_counted_never_an_error(stereo: StereoCall) -> None:
    gw = Gateway(VirtualClock())
    wires = list(siprec.encode(stereo, guid=UCID))
    session = open_media_session(gw, "siprec")
    session.feed(wires[0])
    rtcp = [Wire(0, "rtcp:0", RECEIVER_REPORT), Wire(0, "rtcp:1", RECEIVER_REPORT)]
    rtcp.append(Wire(0, "rtp:1", RECEIVER_REPORT))  # RFC 5761 multiplexing
    for w in rtcp + wires[1:]:
        session.feed(w)
    session.close()
    assert isinstance(session, SiprecMediaSession) and session.call is not None
    acc = session.call.accounting
    assert acc.errors == {} and acc.dropped == {}
    assert acc.balanced(count_media("siprec", wires))  # RTCP is not a media message
    assert {ch: s["rtcp"] for ch, s in session.decoder.stats().items()} == {"0": 1, "1": 2}


# -- 6. RTP during a pause


def test_rtp_sent_during_a_pause_is_dropped_once_as_paused_not_also_lost(
    stereo: StereoCall,
) -> None:
    """An SBC that keeps sending RTP while the recording is paused: 570 packets sent must
    be 570 accounted for (issue 11 saw 590: each paused packet also counted lost)."""
    paused = list(siprec.encode(stereo, guid=UCID, pauses=[(0.4, 1.0)]))
    steady = list(siprec.encode(stereo, guid=UCID))  # the same dialog, RTP never stops
    assert request(paused[0]).call_id == request(steady[0]).call_id
    rtp = [w for w in steady if w.channel != "sip"]
    # SIP first at equal times: the re-INVITE at 400 ms pauses the packet of 400 ms.
    merged = sorted(sip(paused) + rtp, key=lambda w: (w.at_ms, w.channel != "sip"))
    gw = Gateway(VirtualClock())
    session = open_media_session(gw, "siprec")
    for w in merged:
        session.feed(w)
    session.close()
    assert session.call is not None
    acc = session.call.accounting
    in_pause = sum(400 <= w.at_ms < 1000 for w in rtp)
    assert in_pause == 60
    assert acc.dropped == {"paused": in_pause} and acc.lost == 0
    assert acc.total == len(rtp) and acc.received == len(rtp) - in_pause


# -- 7. smaller things


def test_a_plain_sdp_invite_is_a_recording_session_whose_metadata_may_follow(
    stereo: StereoCall,
) -> None:
    wires = list(siprec.encode(stereo, guid=UCID, vendor="cisco"))
    multipart = request(wires[0])
    sdp_part = multipart.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    plain = request(wires[0])
    plain.set("Content-Type", "application/sdp")
    plain.body = sdp_part
    gw = Gateway(VirtualClock())
    session = open_media_session(gw, "siprec")
    (ok,) = replies(session.feed(Wire(0, "sip", plain.to_bytes())))
    assert ok.status == 200 and session.call is not None and session.call.guid == UCID
    info = session.call.info
    assert info["metadata"] == {"present": "no"}
    assert info["channel_participants"] == {"0": None, "1": None}
    # RFC 7866 6.2: the metadata comes in a re-INVITE; the call learns its participants.
    reoffer = in_dialog(plain, "INVITE", 5, multipart.body, multipart.get("Content-Type") or "")
    (ok,) = replies(session.feed(reoffer))
    assert ok.status == 200
    assert set(session.call.info["channel_participants"].values()) != {None}
    assert session.call.info["metadata"]["namespace"] == "urn:ietf:params:xml:ns:recording:1"
    for w in wires[1:]:
        session.feed(w)
    session.close()
    assert session.call.accounting.received == count_media("siprec", wires)


def test_a_missing_require_siprec_gets_421_naming_it_and_an_unknown_tag_420(
    stereo: StereoCall,
) -> None:
    invite = request(next(iter(siprec.encode(stereo, guid=UCID))))
    invite.headers = [(k, v) for k, v in invite.headers if k != "Require"]
    session = SiprecSession()
    with pytest.raises(SipError) as info:
        session.feed(Wire(0, "sip", invite.to_bytes()))
    response = info.value.to_response()
    assert (
        response is not None and response.status == 421 and response.reason == "Extension Required"
    )
    assert response.tokens("Require") == ["siprec"]  # RFC 3261 21.4.15
    invite.headers.append(("Require", "siprec, 100rel, timer"))
    with pytest.raises(SipError) as info:
        session.feed(Wire(0, "sip", invite.to_bytes()))
    response = info.value.to_response()
    assert response is not None and response.status == 420  # RFC 3261 8.2.2.3
    assert response.tokens("Unsupported") == ["100rel", "timer"]


def test_every_response_but_100_carries_a_to_tag(stereo: StereoCall) -> None:
    """RFC 3261 8.2.6.2: errors and OPTIONS answers too, not only the dialog's 200s."""
    wires = sip(list(siprec.encode(stereo, guid=UCID)))
    session = SiprecSession()
    options = request(wires[0])
    options.method, options.body = "OPTIONS", b""
    options.set("CSeq", "7 OPTIONS")
    answers = replies(session.feed(Wire(0, "sip", options.to_bytes())))
    for bad in (
        wires[-1],
        Wire(0, "sip", request(wires[0]).to_bytes().replace(b"INVITE", b"REGISTER")),
    ):
        with pytest.raises(SipError) as info:
            session.feed(bad)
        response = info.value.to_response()
        assert response is not None
        answers.append(response)
    answers += replies(session.feed(wires[0]))
    assert [a.status for a in answers] == [200, 481, 405, 200]
    for answer in answers:
        assert header_param(answer.get("To") or "", "tag"), answer.start_line
