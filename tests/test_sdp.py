from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.errors import ConfigError
from mgsim.media.sdp import (
    build_answer,
    build_offer,
    check_recording_offer,
    parse_sdp,
)
from mgsim.media.sip import SipError

VENDOR_OFFER = (
    "v=0\r\n"
    "o=SBC 123 456 IN IP4 10.1.1.1\r\n"
    "s=-\r\n"
    "c=IN IP4 10.1.1.1\r\n"
    "t=0 0\r\n"
    "m=audio 16000 RTP/AVP 18 0 101\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=label:1\r\n"
    "a=sendonly\r\n"
    "m=audio 16002 RTP/AVP 0\r\n"
    "c=IN IP4 10.1.1.2\r\n"
    "a=label:2\r\n"
    "a=sendonly\r\n"
)


@pytest.mark.parametrize("direction", ["sendonly", "inactive", "sendrecv"])
def test_offer_round_trip(direction: str) -> None:
    offer = build_offer(
        address="10.0.0.1", ports=(20000, 20002), labels=("1", "2"), direction=direction
    )
    parsed = parse_sdp(offer.to_bytes())
    assert parsed.to_text() == offer.to_text()
    assert [(m.port, m.label, m.direction) for m in parsed.media] == [
        (20000, "1", direction),
        (20002, "2", direction),
    ]
    assert all(
        m.rtpmap() == {0: "PCMU/8000"} and m.attribute("ptime") == "20" for m in parsed.media
    )


def test_vendor_offer_with_other_codecs() -> None:
    sdp = parse_sdp(VENDOR_OFFER)
    top, second = check_recording_offer(sdp)
    assert (top.label, second.label, second.connection) == ("1", "2", "IN IP4 10.1.1.2")
    assert top.offers_pcmu and top.rtpmap()[18] == "G729/8000"


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("sendonly", "recvonly"), ("sendrecv", "recvonly"), ("inactive", "inactive")],
)
def test_answer_directions_and_ports(offered: str, answered: str) -> None:
    offer = build_offer(address="10.0.0.1", ports=(1, 3), labels=("a", "b"), direction=offered)
    answer = parse_sdp(
        build_answer(offer, address="10.9.9.9", ports=(40000, 40002), version=3).to_bytes()
    )
    assert [(m.port, m.direction, m.label, m.formats) for m in answer.media] == [
        (40000, answered, "a", ("0",)),
        (40002, answered, "b", ("0",)),
    ]
    assert answer.origin.endswith("3 IN IP4 10.9.9.9")


def test_answer_refuses_lines_without_pcmu() -> None:
    text = VENDOR_OFFER.replace("RTP/AVP 0\r\n", "RTP/AVP 8\r\n")
    answer = build_answer(parse_sdp(text), address="h", ports=(40000, 40002))
    assert [m.port for m in answer.media] == [40000, 0]


def test_session_level_direction_is_inherited() -> None:
    text = VENDOR_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n").replace(
        "a=sendonly\r\n", ""
    )
    assert [m.direction for m in parse_sdp(text).media] == ["inactive", "inactive"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (VENDOR_OFFER.replace("RTP/AVP 18 0 101", "RTP/AVP 18 101"), "no-pcmu"),
        (VENDOR_OFFER.split("m=audio 16002")[0], "not-two-audio"),
        (VENDOR_OFFER + "m=audio 16004 RTP/AVP 0\r\n", "not-two-audio"),
        (VENDOR_OFFER.replace("m=audio 16002", "m=video 16002"), "not-two-audio"),
    ],
)
def test_unacceptable_offers_are_488(text: str, reason: str) -> None:
    with pytest.raises(SipError) as info:
        check_recording_offer(parse_sdp(text))
    assert (info.value.sip_status, info.value.reason) == (488, reason)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=x 1 1 IN IP4 h\r\n",
        "v=1\r\no=x\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=x\r\nm=audio\r\n",
        "v=0\r\no=x\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=x\r\nm=audio \u00b2 RTP/AVP 0\r\n",
        "v=0\r\no=x\r\nbogus line\r\n",
    ],
)
def test_malformed_sdp_is_400(text: str) -> None:
    with pytest.raises(SipError) as info:
        parse_sdp(text)
    assert (info.value.sip_status, info.value.reason) == (400, "bad-sdp")


def test_non_utf8_sdp_is_400() -> None:
    with pytest.raises(SipError):
        parse_sdp(b"v=0\r\no=\xff\r\n")


def test_offer_arguments_are_checked() -> None:
    with pytest.raises(ConfigError):
        build_offer(address="h", ports=(1,), labels=("1", "2"))
    with pytest.raises(ConfigError):
        build_offer(address="h", ports=(1,), labels=("1",), direction="sideways")


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("vmoac=0123456789 \r\n/:RTPAVP\u00b2x")), max_size=200)
)
def test_random_sdp_raises_only_sip_error(text: str) -> None:
    try:
        sdp = parse_sdp(text)
    except SipError:
        return
    for m in sdp.media:
        assert isinstance(m.offers_pcmu, bool)
    try:
        check_recording_offer(sdp)
    except SipError as exc:
        assert exc.sip_status == 488
