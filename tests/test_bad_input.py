"""Bad input, one table: every case gets its specific, documented answer, nothing crashes,
and a neighbouring call on the same gateway is not disturbed."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from conftest import GUIDS, HEADERS

from mgsim.clock import VirtualClock
from mgsim.contract import validate
from mgsim.gateway import Gateway
from mgsim.gateway.sessions import open_media_session
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import Wire
from mgsim.media.rtp import RtpPacket, pack
from mgsim.media.tones import two_tone_call
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
NEIGHBOUR = GUIDS["siprec"]
VALID_START = {"namespace": "siprec", "guid": NEIGHBOUR, "customerId": "c", "agentId": "a"}

HTTP_CASES: list[tuple[str, str, str, Any, dict[str, str] | None, int, str]] = [
    # (id, method, path, body (bytes = raw), headers (None = valid), status, code)
    ("no-credentials", "POST", START, VALID_START, {}, 401, "401-01"),
    ("only-id", "POST", START, VALID_START, {"asapp-api-id": "mgsim-local"}, 401, "401-01"),
    (
        "wrong-secret",
        "POST",
        START,
        VALID_START,
        {"asapp-api-id": "mgsim-local", "asapp-api-secret": "x"},
        403,
        "403-01",
    ),
    (
        "wrong-id",
        "POST",
        STOP,
        VALID_START,
        {"asapp-api-id": "x", "asapp-api-secret": "mgsim-local-secret"},
        403,
        "403-01",
    ),
    ("not-json", "POST", START, b"{nope", None, 400, "400-01"),
    ("json-array", "POST", START, b"[]", None, 400, "400-01"),
    ("json-string", "POST", STOP, b'"siprec"', None, 400, "400-01"),
    ("empty-body", "POST", STOP, b"", None, 400, "400-01"),
    ("invalid-utf8", "POST", STOP, b"\xff\xfe\xfd", None, 400, "400-01"),
    ("truncated-json", "POST", START, b'{"namespace": "siprec", "gu', None, 400, "400-01"),
    ("oversize", "POST", START, {**VALID_START, "customerId": "x" * 70000}, None, 413, "413-01"),
    ("missing-namespace", "POST", STOP, {"guid": NEIGHBOUR}, None, 400, "400-201"),
    ("missing-guid", "POST", STOP, {"namespace": "siprec"}, None, 400, "400-201"),
    ("unknown-namespace", "POST", STOP, {"namespace": "zoom", "guid": "1"}, None, 400, "400-201"),
    ("guid-wrong-type", "POST", STOP, {"namespace": "siprec", "guid": 1}, None, 400, "400-201"),
    (
        "guid-not-decimal",
        "POST",
        STOP,
        {"namespace": "siprec", "guid": "abc"},
        None,
        400,
        "400-201",
    ),
    (
        "twilio-guid-form",
        "POST",
        STOP,
        {"namespace": "twilio", "guid": "CA12"},
        None,
        400,
        "400-201",
    ),
    (
        "uuid-guid-form",
        "POST",
        STOP,
        {"namespace": "amazonconnect", "guid": "x"},
        None,
        400,
        "400-201",
    ),
    (
        "unknown-member",
        "POST",
        STOP,
        {"namespace": "siprec", "guid": "1", "x": 1},
        None,
        400,
        "400-201",
    ),
    ("customerId-empty", "POST", START, {**VALID_START, "customerId": ""}, None, 400, "400-201"),
    (
        "bad-redaction",
        "POST",
        START,
        {**VALID_START, "autotranscribeParams": {"redactionOutput": "none"}},
        None,
        400,
        "400-201",
    ),
    (
        "bad-language-tag",
        "POST",
        START,
        {**VALID_START, "autotranscribeParams": {"language": "english please"}},
        None,
        400,
        "400-201",
    ),
    (
        "detailedToken-redacted",
        "POST",
        START,
        {**VALID_START, "autotranscribeParams": {"detailedToken": True}},
        None,
        400,
        "400-202",
    ),
    (
        "params-of-other-namespace",
        "POST",
        START,
        {**VALID_START, "twilioParams": {"trackMap": {"inbound": "customer"}}},
        None,
        400,
        "400-202",
    ),
    ("unknown-guid", "POST", STOP, {"namespace": "siprec", "guid": "1-2-3"}, None, 400, "400-203"),
    (
        "guid-in-other-namespace",
        "POST",
        STOP,
        {"namespace": "genesysaudiohook", "guid": GUIDS["genesysaudiohook"]},
        None,
        400,
        "400-203",
    ),
    ("start-while-streaming", "POST", START, VALID_START, None, 409, "409-201"),
    ("unknown-path", "GET", "/mg-autotranscribe/v2/start-streaming", None, None, 404, "404-01"),
    ("wrong-method", "DELETE", STOP, None, None, 405, "405-01"),
    (
        "messages-without-id",
        "GET",
        "/conversation/v1/conversation/messages",
        None,
        None,
        400,
        "400-201",
    ),
    ("sim-hangup-unknown", "DELETE", "/_sim/v1/calls/999", None, None, 404, "404-01"),
]


@pytest.fixture
def sim_with_neighbour() -> Any:
    sim = Simulator(SimulatorConfig(seed=5, spike_arrest_per_s=None), virtual=True)
    sim.gateway.open_call("siprec", NEIGHBOUR)
    with httpx.Client(transport=sim.sync_transport(), base_url="http://sim") as http:
        assert http.post(START, json=VALID_START, headers=HEADERS).status_code == 200
        yield sim, http
    sim.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [case[1:] for case in HTTP_CASES],
    ids=[case[0] for case in HTTP_CASES],
)
def test_http_bad_input(
    sim_with_neighbour: Any,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    sim, http = sim_with_neighbour
    before = sim.gateway.calls[NEIGHBOUR].segments[-1].stream_ids
    raw = body if isinstance(body, bytes) else None
    response = http.request(
        method,
        path,
        content=raw,
        json=None if raw is not None else body,
        headers=HEADERS if headers is None else headers,
    )
    assert response.status_code == status
    validate("Error", response.json())
    assert response.json()["error"]["code"] == code
    neighbour = sim.gateway.calls[NEIGHBOUR]
    assert neighbour.streaming and neighbour.segments[-1].stream_ids == before


# --- the four wire formats ---------------------------------------------------------------

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-bad-input/1700000000000"
CALL = two_tone_call(1.0, seed=1)


def wires(namespace: str, guid: str, arn: str = ARN) -> list[Wire]:
    if namespace == "twilio":
        return list(twilio.encode(CALL, guid=guid))
    if namespace == "genesysaudiohook":
        return list(audiohook.encode(CALL, guid=guid, frame_ms=100))
    if namespace == "siprec":
        return list(siprec.encode(CALL, guid=guid))
    return list(kvs.encode(CALL, guid=guid, stream_arn=arn, fragment_ms=200))


def options(namespace: str, arn: str = ARN) -> dict[str, Any]:
    return {"stream_arn": arn} if namespace == "amazonconnect" else {}


def twilio_media(payload: str = "//8=", sid: str | None = None, **media: str) -> str:
    sid = sid or twilio.stream_sid_for(GUIDS["twilio"])
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": payload, **media}
    return json.dumps({"event": "media", "sequenceNumber": "3", "media": body, "streamSid": sid})


def rtp(**fields: Any) -> bytes:
    packet = RtpPacket(payload_type=0, sequence=1, timestamp=160, ssrc=1, payload=b"\xff" * 160)
    data = bytearray(pack(packet))
    for key, value in fields.items():
        if key == "version":
            data[0] = (data[0] & 0x3F) | (value << 6)
        if key == "pt":
            data[1] = value
    return bytes(data)


BIG = "x" * 70_000
WIRE_CASES: list[tuple[str, str, int, Wire]] = [
    # (id, namespace, wires of a good session to feed first, bad wire)
    ("twilio-bad-json", "twilio", 2, Wire(20, "ws", "{not json")),
    ("twilio-bad-base64", "twilio", 2, Wire(20, "ws", twilio_media(payload="@@@"))),
    ("twilio-unknown-event", "twilio", 2, Wire(20, "ws", json.dumps({"event": "nope"}))),
    ("twilio-second-start", "twilio", 2, None),  # filled below
    ("twilio-wrong-stream", "twilio", 2, Wire(20, "ws", twilio_media(sid="MZ" + "0" * 32))),
    ("twilio-oversize", "twilio", 2, Wire(20, "ws", BIG)),
    (
        "twilio-missing-payload",
        "twilio",
        2,
        Wire(20, "ws", twilio_media().replace('"payload"', '"p"')),
    ),
    ("twilio-media-before-start", "twilio", 1, Wire(20, "ws", twilio_media())),
    ("twilio-bytes", "twilio", 2, Wire(20, "ws", b"\x00\x01")),
    ("audiohook-bad-json", "genesysaudiohook", 1, Wire(20, "ws", "{bad")),
    ("audiohook-audio-before-open", "genesysaudiohook", 0, Wire(20, "ws", b"\xff" * 160)),
    ("audiohook-odd-frame", "genesysaudiohook", 1, Wire(20, "ws", b"\xff" * 161)),
    ("audiohook-oversize", "genesysaudiohook", 1, Wire(20, "ws", b"\xff" * 70_000)),
    ("audiohook-unknown-type", "genesysaudiohook", 1, None),
    ("audiohook-bad-seq", "genesysaudiohook", 1, None),
    ("audiohook-wrong-version", "genesysaudiohook", 1, None),
    ("audiohook-second-open", "genesysaudiohook", 1, None),
    ("siprec-garbage", "siprec", 0, Wire(0, "sip", b"\x00\x01 not SIP")),
    ("siprec-no-require", "siprec", 0, None),
    ("siprec-one-mline", "siprec", 0, None),
    ("siprec-bye-unknown-dialog", "siprec", 2, None),
    (
        "siprec-oversize",
        "siprec",
        0,
        Wire(0, "sip", b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 20000),
    ),
    ("rtp-truncated", "siprec", 2, Wire(20, "rtp:0", b"\x80\x00\x00")),
    ("rtp-bad-version", "siprec", 2, Wire(20, "rtp:0", rtp(version=1))),
    ("rtp-bad-payload-type", "siprec", 2, Wire(20, "rtp:0", rtp(pt=8))),
    ("kvs-random-bytes", "amazonconnect", 0, Wire(200, "kvs", b"\x1a\x45\xdf\xa3garbage")),
    ("kvs-truncated", "amazonconnect", 1, None),
    ("kvs-not-ebml", "amazonconnect", 0, Wire(200, "kvs", b"hello")),
    ("kvs-empty", "amazonconnect", 0, Wire(200, "kvs", b"")),
]


def _fill(case_id: str, good: list[Wire]) -> Wire:
    """Bad wires derived from a good session's own messages."""
    if case_id == "twilio-second-start":
        return good[1]
    if case_id.startswith("audiohook-"):
        opened = json.loads(str(good[0].data))
        if case_id == "audiohook-unknown-type":
            return Wire(20, "ws", json.dumps({**opened, "type": "dance", "seq": 2}))
        if case_id == "audiohook-bad-seq":
            return Wire(20, "ws", json.dumps({**opened, "type": "ping", "seq": 7}))
        if case_id == "audiohook-wrong-version":
            return Wire(20, "ws", json.dumps({**opened, "type": "ping", "seq": 2, "version": "1"}))
        return Wire(20, "ws", json.dumps({**opened, "seq": 2}))
    if case_id == "siprec-no-require":
        return Wire(0, "sip", bytes(good[0].data).replace(b"Require: siprec\r\n", b""))  # type: ignore[arg-type]
    if case_id == "siprec-one-mline":
        data = bytes(good[0].data)  # type: ignore[arg-type]
        second = data.index(b"m=audio", data.index(b"m=audio") + 1)
        return Wire(0, "sip", data[:second].replace(b"Content-Length", b"X-Old-Length"))
    if case_id == "siprec-bye-unknown-dialog":
        bye = next(w for w in good if isinstance(w.data, bytes) and w.data.startswith(b"BYE"))
        return Wire(20, "sip", bye.data.replace(b"Call-ID: ", b"Call-ID: other-"))  # type: ignore[union-attr]
    if case_id == "kvs-truncated":
        return Wire(400, "kvs", bytes(good[1].data)[:300])  # type: ignore[arg-type]
    raise AssertionError(case_id)


# SIP discards a datagram it cannot parse into a request (RFC 3261 18.3): nothing to answer.
UNANSWERABLE = {"siprec-garbage", "siprec-oversize"}


@pytest.mark.parametrize(
    ("case_id", "namespace", "prefix", "bad"), WIRE_CASES, ids=[c[0] for c in WIRE_CASES]
)
def test_wire_bad_input(case_id: str, namespace: str, prefix: int, bad: Wire | None) -> None:
    gateway = Gateway(VirtualClock())
    guid = GUIDS[namespace]
    good = wires(namespace, guid)
    bad = bad or _fill(case_id, good)
    # a neighbouring call on the same gateway, half played
    other_guid = {
        "siprec": "1111-2222",
        "twilio": "CA" + "ab" * 16,
        "genesysaudiohook": "00000000-0000-4000-8000-00000000abcd",
        "amazonconnect": "00000000-0000-4000-8000-00000000abcd",
    }[namespace]
    other_arn = ARN.replace("bad-input", "neighbour")
    neighbour_wires = wires(namespace, other_guid, other_arn)
    neighbour = open_media_session(gateway, namespace, **options(namespace, other_arn))
    half = len(neighbour_wires) // 2
    for w in neighbour_wires[:half]:
        neighbour.feed(w)

    victim = open_media_session(gateway, namespace, **options(namespace))
    for w in good[:prefix]:
        victim.feed(w)
    errors_before = sum(victim.errors.values())
    replies = victim.feed(bad)
    assert sum(victim.errors.values()) == errors_before + 1, (case_id, victim.errors)
    if namespace == "twilio":
        assert victim.close_code in (1003, 1007, 1008, 1009)
    elif namespace == "genesysaudiohook":
        assert victim.close_code is not None or any(
            json.loads(str(r.data)).get("type") == "disconnect" for r in replies
        )
    elif namespace == "siprec" and bad.channel == "sip":
        if case_id in UNANSWERABLE:
            assert replies == []  # counted, and discarded: there is no Via to answer to
        else:
            status = int(bytes(replies[0].data).split(b" ")[1])  # type: ignore[arg-type]
            assert 400 <= status < 600
    elif namespace == "amazonconnect":
        assert replies and b"ERROR" in (
            replies[0].data if isinstance(replies[0].data, bytes) else replies[0].data.encode()
        )

    for w in neighbour_wires[half:]:
        neighbour.feed(w)
    neighbour.close()
    assert neighbour.call is not None and neighbour.call.guid == other_guid
    assert not neighbour.errors and neighbour.accounting.balanced(None) in (True, None)


def test_there_are_at_least_fifty_cases() -> None:
    assert len(HTTP_CASES) + len(WIRE_CASES) >= 50


def test_twilio_payload_helper_is_valid_base64() -> None:
    assert base64.b64decode(json.loads(twilio_media())["media"]["payload"]) == b"\xff\xff"
