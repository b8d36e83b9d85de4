from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.errors import MediaError
from mgsim.media.sip import (
    BodyPart,
    SipError,
    SipMessage,
    SipStreamParser,
    build_multipart,
    canonical_name,
    header_param,
    parse_content_type,
    parse_message,
    parse_multipart,
    response_to,
)

HEADERS = [
    ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a"),
    ("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-b"),
    ("From", "<sip:src@10.0.0.1>;tag=abc"),
    ("To", "<sip:srs@10.0.0.9>"),
    ("Call-ID", "call-1@10.0.0.1"),
    ("CSeq", "7 INVITE"),
    ("Require", "siprec"),
]


def invite(body: bytes = b"hello") -> SipMessage:
    return SipMessage.request("INVITE", "sip:srs@10.0.0.9", HEADERS, body)


def test_request_round_trip() -> None:
    msg = invite()
    parsed = parse_message(msg.to_bytes())
    assert parsed.method == "INVITE"
    assert parsed.uri == "sip:srs@10.0.0.9"
    assert parsed.body == b"hello"
    assert parsed.headers[:-1] == HEADERS
    assert parsed.get("content-length") == "5"
    assert parsed.cseq == (7, "INVITE")
    assert parsed.to_bytes() == msg.to_bytes()


def test_response_round_trip_copies_dialog_headers() -> None:
    ok = response_to(invite(), 200, to_tag="srv1", body=b"x", headers=[("c", "text/plain")])
    parsed = parse_message(ok.to_bytes())
    assert (parsed.status, parsed.reason, parsed.is_request) == (200, "OK", False)
    assert parsed.get_all("Via") == [HEADERS[0][1], HEADERS[1][1]]
    assert parsed.get("To") == "<sip:srs@10.0.0.9>;tag=srv1"
    assert parsed.get("Content-Type") == "text/plain"
    assert parsed.call_id == "call-1@10.0.0.1"
    assert header_param(parsed.get("To") or "", "tag") == "srv1"


@pytest.mark.parametrize(
    ("compact", "long"),
    [("i", "Call-ID"), ("v", "Via"), ("f", "From"), ("t", "To"), ("l", "Content-Length"),
     ("c", "Content-Type"), ("m", "Contact"), ("k", "Supported"), ("cseq", "CSeq")],
)  # fmt: skip
def test_compact_names_are_canonicalised(compact: str, long: str) -> None:
    assert canonical_name(compact) == long
    assert canonical_name(compact.upper()) == long


def test_parse_compact_form_message() -> None:
    raw = (
        b"BYE sip:srs@h SIP/2.0\r\nv: SIP/2.0/TCP h;branch=z9hG4bK1\r\nf: <sip:a@h>;tag=1\r\n"
        b"t: <sip:srs@h>;tag=2\r\ni: xyz\r\nCSeq: 3 BYE\r\nk: siprec, timer\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert msg.get("Call-ID") == msg.get("i") == "xyz"
    assert msg.tokens("Supported") == ["siprec", "timer"]
    assert msg.body == b""


def test_folded_headers_and_bare_lf() -> None:
    raw = (
        b"\r\n\r\nOPTIONS sip:srs@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"
        b"From: <sip:a@h>;tag=1\nTo: <sip:srs@h>\nCall-ID: c1\nCSeq: 1 OPTIONS\n"
        b"Subject: a long\n   subject\n\tacross lines\nRequire:  siprec ,\n  timer\n\n"
    )
    msg = parse_message(raw)
    assert msg.get("Subject") == "a long subject across lines"
    assert msg.tokens("Require") == ["siprec", "timer"]


def test_content_length_trims_extra_datagram_bytes() -> None:
    raw = invite(b"12345").to_bytes() + b"trailing junk"
    assert parse_message(raw).body == b"12345"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (b"HELLO\r\n\r\n", "bad-start-line"),
        (b"INVITE sip:x SIP/3.0\r\n\r\n", "bad-start-line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "bad-start-line"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: v\r\n\r\n", "missing-header"),
        (b"OPTIONS sip:x SIP/2.0\r\nno colon here\r\n\r\n", "bad-header"),
        (b"OPTIONS sip:x SIP/2.0\r\n folded first\r\n\r\n", "bad-header"),
        (b"OPTIONS sip:x SIP/2.0\r\nSubject: \xff\xfe\r\n\r\n", "bad-encoding"),
    ],
)
def test_malformed_messages_are_400(raw: bytes, reason: str) -> None:
    with pytest.raises(SipError) as info:
        parse_message(raw)
    assert info.value.sip_status == 400
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE"), "bad-cseq"),
        (lambda b: b.replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"), "bad-cseq"),
        (lambda b: b.replace(b"CSeq: 7 INVITE", "CSeq: \u00b2 INVITE".encode()), "bad-cseq"),
        (lambda b: b.replace(b"Content-Length: 5", b"Content-Length: 50"), "truncated"),
        (lambda b: b.replace(b"Content-Length: 5", b"Content-Length: -1"), "bad-length"),
    ],
)
def test_bad_framing_fields_are_400(mutate: object, reason: str) -> None:
    assert callable(mutate)
    with pytest.raises(SipError) as info:
        parse_message(mutate(invite().to_bytes()))
    assert (info.value.sip_status, info.value.reason) == (400, reason)


def test_too_large_message_is_513_with_an_answer() -> None:
    with pytest.raises(SipError) as info:
        parse_message(invite(b"x" * 2000).to_bytes(), max_size=1000)
    err = info.value
    assert err.sip_status == 513
    response = err.to_response()
    assert response is not None
    assert response.start_line == "SIP/2.0 513 Message Too Large"
    assert response.get("CSeq") == "7 INVITE"


def test_error_response_carries_extra_headers_and_skips_ack() -> None:
    err = SipError("nope", sip_status=415, headers=[("Accept", "application/sdp")])
    response = err.to_response(invite())
    assert response is not None
    assert (response.status, response.get("Accept")) == (415, "application/sdp")
    ack = SipMessage.request("ACK", "sip:x", [*HEADERS[:5], ("CSeq", "7 ACK")])
    assert err.to_response(ack) is None
    assert SipError("x").to_response() is None
    assert isinstance(err, MediaError)


def three_messages() -> list[bytes]:
    return [invite(b"first body").to_bytes(), invite().to_bytes(), invite(b"").to_bytes()]


def test_stream_parser_concatenated() -> None:
    parser = SipStreamParser()
    got = parser.feed(b"\r\n".join(three_messages()) + b"\r\n\r\n")
    assert [m.body for m in got if isinstance(m, SipMessage)] == [b"first body", b"hello", b""]
    assert parser.buffered == 0


def test_stream_parser_split_at_every_byte() -> None:
    stream = b"".join(three_messages())
    for cut in range(1, len(stream), 7):
        parser = SipStreamParser()
        got = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [m.body for m in got if isinstance(m, SipMessage)] == [
            b"first body",
            b"hello",
            b"",
        ], cut


def test_stream_parser_byte_by_byte() -> None:
    parser = SipStreamParser()
    got = [m for byte in b"".join(three_messages()) for m in parser.feed(bytes([byte]))]
    assert len(got) == 3
    assert all(isinstance(m, SipMessage) for m in got)


def test_stream_parser_reports_errors_and_resynchronises() -> None:
    no_length = b"OPTIONS sip:x SIP/2.0\r\n" + b"\r\n".join(
        f"{k}: {v}".encode() for k, v in [*HEADERS[:5], ("CSeq", "1 OPTIONS")]
    )
    huge = invite(b"y" * 3000).to_bytes()
    parser = SipStreamParser(max_size=2000)
    got = parser.feed(no_length + b"\r\n\r\n" + huge + invite().to_bytes())
    assert [type(m).__name__ for m in got] == ["SipError", "SipError", "SipMessage"]
    first, second, third = got
    assert isinstance(first, SipError) and first.reason == "bad-length"
    assert isinstance(second, SipError) and second.sip_status == 513
    assert isinstance(third, SipMessage) and third.body == b"hello"


def test_stream_parser_gives_up_on_endless_headers() -> None:
    parser = SipStreamParser(max_size=100)
    got = parser.feed(b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 40)
    assert len(got) == 1 and isinstance(got[0], SipError) and got[0].sip_status == 513
    assert parser.buffered == 0


def test_multipart_round_trip() -> None:
    parts = [
        BodyPart("application/sdp", b"v=0\r\n"),
        BodyPart("application/rs-metadata+xml", b"<x/>", (("Content-Disposition", "rs"),)),
    ]
    content_type, body = build_multipart(parts, "b0undary")
    assert parse_content_type(content_type) == ("multipart/mixed", {"boundary": "b0undary"})
    assert parse_multipart(content_type, body) == parts


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/sdp", b"v=0"),
        ("multipart/mixed", b"--x\r\n\r\nv=0\r\n--x--"),
        ("multipart/mixed;boundary=x", b"--x\r\nContent-Type: a/b\r\n\r\nbody"),
        ("multipart/mixed;boundary=x", b"--x\r\nContent-Type: a/b\r\nno end of head--x--"),
    ],
)
def test_bad_multipart_is_400(content_type: str, body: bytes) -> None:
    with pytest.raises(SipError) as info:
        parse_multipart(content_type, body)
    assert (info.value.sip_status, info.value.reason) == (400, "bad-multipart")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_sip_error(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_message(data)
    SipStreamParser(max_size=200).feed(data)
    with contextlib.suppress(SipError):
        parse_multipart("multipart/mixed;boundary=b", data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.integers(0, 400))
def test_mangled_requests_raise_only_sip_error(noise: bytes, at: int) -> None:
    raw = invite().to_bytes()
    at = min(at, len(raw))
    with contextlib.suppress(SipError):
        parse_message(raw[:at] + noise + raw[at:])
