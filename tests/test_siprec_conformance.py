"""What the recording server sends, checked against RFC 3261, 3264, 7865 and 7866.

The requests here are written from the RFCs' own examples and rules (two Vias and a
Record-Route as a proxy leaves them, an offer with several codecs and a video line, the
RFC 7865 metadata example), not produced by mgsim's SBC encoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mgsim.media._base import AudioChunk, Reply, SessionOpened, Wire
from mgsim.media.rsmetadata import NAMESPACE, parse_metadata
from mgsim.media.rtp import RtpError, RtpPacket, pack
from mgsim.media.sdp import parse_sdp
from mgsim.media.sip import SipError, SipMessage, header_param, parse_content_type, parse_message
from mgsim.media.siprec_server import SiprecSession

METADATA = (Path(__file__).parent / "sipp" / "rs-metadata.xml").read_bytes()
CALL_ID = "d253c800-b0d1ea39-4a7dd-3f0e20a"
VIAS = [
    "SIP/2.0/UDP src.example.com:5060;branch=z9hG4bKdf6b622b648d9",
    "SIP/2.0/UDP proxy.example.com;branch=z9hG4bK2d4790;received=192.0.2.3",
]
FROM = "<sip:2000@example.com>;tag=35e195d2-947d-4585-946f-09839247"
TO = "<sip:recorder@example.com>"


def offer(direction: str = "sendonly", version: int = 1, video: bool = True) -> str:
    """RFC 7866's shape: one labelled m-line per participant; here with PCMA and G.723
    beside PCMU, a t= of the offerer's choosing and a video line the SRS must refuse."""
    lines = [
        "v=0",
        f"o=SRC 2890844526 {version} IN IP4 198.51.100.1",
        "s=-",
        "c=IN IP4 198.51.100.1",
        "t=3034423619 0",
        "m=audio 12240 RTP/AVP 8 0 4",
        f"a={direction}",
        "a=label:1",
        "m=audio 12242 RTP/AVP 8 0 4",
        f"a={direction}",
        "a=label:2",
    ]
    if video:
        lines += ["m=video 12244 RTP/AVP 31", "a=sendonly", "a=label:3"]
    return "\r\n".join(lines) + "\r\n"


def request(
    method: str,
    cseq: int,
    body: bytes = b"",
    content_type: str = "",
    to: str = TO,
    extra: tuple[tuple[str, str], ...] = (),
) -> SipMessage:
    headers = [("Via", VIAS[0]), ("Via", VIAS[1])]
    if method == "INVITE":
        headers += [("Record-Route", "<sip:proxy.example.com;lr>")]
    headers += [
        ("From", FROM),
        ("To", to),
        ("Call-ID", CALL_ID),
        ("CSeq", f"{cseq} {method}"),
        ("Max-Forwards", "70"),
        ("Contact", "<sip:2000@src.example.com>;+sip.src"),
        *extra,
    ]
    if method in ("INVITE",):
        headers.append(("Require", "siprec"))
    if body:
        headers.append(("Content-Type", content_type))
    return SipMessage.request(method, "sip:recorder@example.com", headers, body)


def invite() -> SipMessage:
    body = (
        b"--foobar\r\nContent-Type: application/sdp\r\n\r\n"
        + offer().encode()
        + b"\r\n--foobar\r\nContent-Type: application/rs-metadata+xml\r\n"
        + b"Content-Disposition: recording-session\r\n\r\n"
        + METADATA
        + b"\r\n--foobar--\r\n"
    )
    return request("INVITE", 101, body, "multipart/mixed;boundary=foobar")


def invite_without_require() -> SipMessage:
    msg = invite()
    msg.headers = [(k, v) for k, v in msg.headers if k != "Require"]
    return msg


def feed(session: SiprecSession, msg: SipMessage) -> SipMessage:
    """The one response ``msg`` gets (a 2xx or an error)."""
    try:
        events = session.feed(Wire(0.0, "sip", msg.to_bytes()))
    except SipError as exc:
        response = exc.to_response()
        assert response is not None
        return parse_message(response.to_bytes())
    (reply,) = [e for e in events if isinstance(e, Reply)]
    assert isinstance(reply.data, bytes)
    return parse_message(reply.data)


def opened() -> tuple[SiprecSession, SipMessage]:
    session = SiprecSession(address="203.0.113.5", sip_port=5070, ports=(40100, 40102))
    return session, feed(session, invite())


def assert_echoes(response: SipMessage, req: SipMessage) -> None:
    """RFC 3261 8.2.6.2: From, Call-ID, CSeq and every Via (in order) are copied; To is
    copied and gains a tag unless it had one."""
    assert response.get_all("Via") == req.get_all("Via")
    assert (response.get("From"), response.call_id, response.get("CSeq")) == (
        req.get("From"),
        req.call_id,
        req.get("CSeq"),
    )
    to_sent, to_got = req.get("To") or "", response.get("To") or ""
    sent_tag = header_param(to_sent, "tag")
    if sent_tag is None:
        assert to_got.startswith(to_sent + ";tag=") and header_param(to_got, "tag")
    else:
        assert to_got == to_sent


def test_the_200_to_invite_echoes_the_request_and_adds_a_to_tag() -> None:
    req = invite()
    _, ok = opened()
    assert ok.status == 200 and ok.reason == "OK"
    assert_echoes(ok, req)
    # RFC 3261 12.1.1: the dialog-establishing response copies Record-Route, in order.
    assert ok.get_all("Record-Route") == req.get_all("Record-Route")


def test_the_200_contact_is_one_reachable_sip_uri_with_the_srs_feature() -> None:
    _, ok = opened()
    (contact,) = ok.get_all("Contact")
    # RFC 3261 12.1.1: a SIP URI the peer sends in-dialog requests to; RFC 7866 6.1.2
    # and RFC 3840: the SRS marks itself with +sip.srs.
    assert contact == "<sip:srs@203.0.113.5:5070;transport=udp>;+sip.srs"


def test_the_answer_is_application_sdp_with_the_length_of_its_body() -> None:
    _, ok = opened()
    assert parse_content_type(ok.get("Content-Type") or "")[0] == "application/sdp"
    assert int(ok.get("Content-Length") or "-1") == len(ok.body)


def test_the_sdp_answer_follows_rfc3264_for_each_m_line() -> None:
    _, ok = opened()
    sent, answer = parse_sdp(offer().encode()), parse_sdp(ok.body)
    # 6: as many m-lines as offered, in order, same media and transport.
    assert [(m.media, m.proto) for m in answer.media] == [(m.media, m.proto) for m in sent.media]
    # 6: t= equals the offer's; 5 (c=): a connection address for the media.
    assert answer.timing == sent.timing and answer.connection == "IN IP4 203.0.113.5"
    audio, video = answer.media[:2], answer.media[2]
    for got, was in zip(audio, sent.media[:2], strict=True):
        # 6.1: formats taken from the offer (PCMU, the one mgsim records), a direction
        # that fits (sendonly offered → recvonly), its own port for the stream.
        assert set(got.formats) <= set(was.formats) and got.formats == ("0",)
        assert got.direction == "recvonly" and got.port in (40100, 40102)
        assert got.label == was.label
    assert [m.port for m in audio] == [40100, 40102]
    # 6: a stream the answerer does not take is refused with port 0, still listed.
    assert video.port == 0 and video.media == "video"


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        (("inactive", "inactive"), ("inactive", "inactive")),
        (("inactive", "sendonly"), ("inactive", "recvonly")),
        (("sendrecv", "recvonly"), ("recvonly", "inactive")),
    ],
)
def test_a_reoffer_gets_directions_rfc3264_allows_and_a_new_version(
    offered: tuple[str, str], answered: tuple[str, str]
) -> None:
    session, ok = opened()
    tag = header_param(ok.get("To") or "", "tag")
    sdp = offer(version=2, video=False).split("\r\n")
    sdp[6], sdp[9] = f"a={offered[0]}", f"a={offered[1]}"
    reoffer = request(
        "INVITE", 102, "\r\n".join(sdp).encode(), "application/sdp", f"{TO};tag={tag}"
    )
    again = feed(session, reoffer)
    assert again.status == 200
    assert_echoes(again, reoffer)
    got = parse_sdp(again.body)
    assert tuple(m.direction for m in got.media) == answered
    # RFC 3264 8: a changed session description is a new version of the same session.
    first = parse_sdp(ok.body).origin.split()
    second = got.origin.split()
    assert second[:2] == first[:2] and int(second[2]) == int(first[2]) + 1


def test_the_dialogs_responses_keep_one_to_tag_and_the_bye_is_answered() -> None:
    session, ok = opened()
    tag = header_param(ok.get("To") or "", "tag")
    bye = request("BYE", 103, to=f"{TO};tag={tag}")
    answer = feed(session, bye)
    assert answer.status == 200 and header_param(answer.get("To") or "", "tag") == tag
    assert_echoes(answer, bye)


@pytest.mark.parametrize(
    ("req", "status", "check"),
    [
        (request("BYE", 5, to=f"{TO};tag=nope"), 481, None),
        (request("SUBSCRIBE", 5), 405, ("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS")),
        (invite_without_require(), 421, ("Require", "siprec")),
        (request("INVITE", 5, b"x", "text/plain"), 415, ("Accept", None)),
        (request("OPTIONS", 5), 200, ("Supported", "siprec")),
    ],
)  # fmt: skip
def test_every_answer_echoes_its_request_and_carries_a_to_tag(
    req: SipMessage, status: int, check: tuple[str, str | None] | None
) -> None:
    session = SiprecSession()
    if req.method == "BYE":
        feed(session, invite())
    response = feed(session, req)
    assert response.status == status
    assert_echoes(response, req)
    if check is not None:
        name, value = check
        assert response.get(name) is not None and (value is None or response.get(name) == value)


def test_rfc7865_example_metadata_is_read_as_the_rfc_means() -> None:
    meta = parse_metadata(METADATA)
    assert meta.session_id == "hVpd7YQgRW2nD22h7q60JQ=="
    names = {p.participant_id: (p.aor, p.name) for p in meta.participants}
    assert names == {
        "srfBElmCRp2QB23b7Mpk0w==": ("sip:bob@biloxi.example.com", "Bob"),
        "zSfPoSvdSDCmU3A3TRDxAw==": ("sip:alice@atlanta.example.com", "Alice"),
    }
    assert {s.stream_id: (s.label, s.session_id) for s in meta.streams} == {
        "UAAMm5GRQKSCMVvLyl4rFw==": ("1", meta.session_id),
        "i1Pz3to5hGk8fuXl+PbwCw==": ("2", meta.session_id),
    }
    # participantstreamassoc's <send> says who sends which stream: Alice the label-1
    # stream, Bob the label-2 one (their <recv> is the other's).
    assert meta.label_map() == {"1": "zSfPoSvdSDCmU3A3TRDxAw==", "2": "srfBElmCRp2QB23b7Mpk0w=="}
    assert meta.found["namespace"] == NAMESPACE
    assert meta.found["associations"] == "participantstreamassoc"


def test_the_session_maps_m_lines_to_the_rfc7865_participants() -> None:
    session = SiprecSession()
    events = session.feed(Wire(0.0, "sip", invite().to_bytes()))
    (opening,) = [e for e in events if isinstance(e, SessionOpened)]
    assert opening.guid == CALL_ID  # no vendor UCID: the Call-ID names the call
    assert opening.info["channel_participants"] == {
        "0": "zSfPoSvdSDCmU3A3TRDxAw==",
        "1": "srfBElmCRp2QB23b7Mpk0w==",
    }


def test_pcmu_offered_as_a_dynamic_payload_type_is_answered_and_received_as_that_type() -> None:
    """RFC 3264 6.1: the answer's formats come from the offer; RFC 3551 lets PCMU be
    mapped to a dynamic payload type by a=rtpmap."""
    sdp = offer(video=False).replace("RTP/AVP 8 0 4", "RTP/AVP 96 8")
    sdp = sdp.replace("a=label:1", "a=label:1\r\na=rtpmap:96 PCMU/8000")
    sdp = sdp.replace("a=label:2", "a=label:2\r\na=rtpmap:96 PCMU/8000")
    session = SiprecSession()
    ok = feed(session, request("INVITE", 101, sdp.encode(), "application/sdp"))
    assert ok.status == 200
    answer = parse_sdp(ok.body)
    assert [m.formats for m in answer.media] == [("96",), ("96",)]
    assert [m.rtpmap() for m in answer.media] == [{96: "PCMU/8000"}] * 2
    ok_packet = pack(
        RtpPacket(sequence=1, timestamp=0, ssrc=9, payload=b"\xff" * 160, payload_type=96)
    )
    (chunk,) = session.feed(Wire(0.0, "rtp:0", ok_packet))
    assert isinstance(chunk, AudioChunk) and len(chunk.pcm) == 160
    wrong = pack(RtpPacket(sequence=2, timestamp=160, ssrc=9, payload=b"\xff" * 160))
    with pytest.raises(RtpError) as info:
        session.feed(Wire(20.0, "rtp:0", wrong))
    assert info.value.reason == "bad-payload-type"
