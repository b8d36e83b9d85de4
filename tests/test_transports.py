"""Bad input over the real transports: each gets its protocol's answer, is counted, and
leaves every other call untouched."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import HEADERS
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mgsim.client import AsyncClient
from mgsim.contract import validate
from mgsim.errors import ConfigError
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.media.kvs import split_fragments
from mgsim.media.rtp import RtpPacket, pack
from mgsim.server.config import SimulatorConfig
from mgsim.transports.metrics import LatenessHistogram, SessionLateness
from mgsim.transports.playback import SocketPlayResult, play_over_sockets
from mgsim.transports.senders import AudioHookSender, SiprecSender
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]

ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-connect-bad/1700000000000"
OTHER_ARN = ARN.replace("bad", "good")
CONVERSATION = "30b0e395-84d3-4570-ac13-9a62d8f514c0"


def sid(n: int) -> str:
    return "CA" + f"{n:032x}"


@pytest.fixture(scope="module")
def stereo() -> StereoCall:
    rng = np.random.default_rng(11)
    return StereoCall(
        rng.integers(-8000, 8000, 8000).astype(np.int16),
        rng.integers(-8000, 8000, 8000).astype(np.int16),
    )


def counters(server: ServerThread) -> dict[str, int]:
    counts: dict[str, int] = server.sim.app.state.media.media_counters()
    return counts


async def good_call(server: ServerThread, namespace: str, wires: Any, **kw: Any) -> Any:
    return await play_over_sockets(server.endpoints, namespace, wires, realtime=False, **kw)


def assert_untouched(result: SocketPlayResult) -> None:
    acc = result.accounting
    assert result.balanced() and acc["received"] == result.sent
    assert acc["errors"] == {} and acc["dropped"] == {}


# -- Twilio


async def twilio_url(server: ServerThread) -> str:
    async with AsyncClient(server.base_url) as client:
        return await client.twilio_media_stream_url()


async def raw_twilio(url: str, messages: list[str | bytes]) -> tuple[int | None, str]:
    async with connect(url, proxy=None, max_size=1 << 21) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.wait_for(ws.recv(), 1.0)  # the server closes, or nothing comes
        except ConnectionClosed:
            pass
        except TimeoutError:
            await ws.close()  # a well-behaved stream: the platform hangs up
        return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize("token", ["forged", "expired"])
@pytest.mark.parametrize("server", [{"twilio_url_ttl_s": 0.3}], indirect=True)
def test_twilio_bad_token_is_closed_1008_before_any_media(
    server: ServerThread, stereo: StereoCall, token: str
) -> None:
    url = asyncio.run(twilio_url(server))
    if token == "forged":
        head, _, _ = url.rpartition("/")
        url = head + "/" + url.rpartition("/")[2][:-4] + "AAAA"
    else:
        asyncio.run(asyncio.sleep(0.4))
    messages: list[str | bytes] = [str(w.data) for w in twilio.encode(stereo, guid=sid(1))][:6]
    code, _ = asyncio.run(raw_twilio(url, messages))
    assert code == 1008
    assert counters(server)["media.twilio.rejected.token"] == 1
    assert "media.twilio.sessions" not in counters(server)
    assert server.sim.gateway.calls == {} and server.sim.gateway.ended == {}


def test_many_streams_share_one_url(server: ServerThread, stereo: StereoCall) -> None:
    url = asyncio.run(twilio_url(server))

    async def both() -> list[tuple[int | None, str]]:
        return await asyncio.gather(
            *(
                raw_twilio(url, [str(w.data) for w in twilio.encode(stereo, guid=sid(n))])
                for n in (1, 2)
            )
        )

    assert [code for code, _ in asyncio.run(both())] == [1000, 1000]
    gw = server.sim.gateway
    for n in (1, 2):
        assert gw.ended[sid(n)].timeline("inbound").received_samples == 8000


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        ('{"event":"media", "oops"', 1007, "bad-json"),
        (
            '{"event":"media","sequenceNumber":"9","media":{"track":"inbound","chunk":"9",'
            '"timestamp":"160","payload":"%%%not base64"},"streamSid":"'
            + twilio.stream_sid_for(sid(5))
            + '"}',
            1007,
            "bad-base64",
        ),
        ('{"event":"hello","streamSid":"S"}', 1003, "unknown-event"),
        ("x" * 70_000, 1009, "oversize"),
    ],
)
def test_twilio_bad_message_closes_with_its_code_and_spares_other_calls(
    server: ServerThread, stereo: StereoCall, bad: str, code: int, reason: str
) -> None:
    url = asyncio.run(twilio_url(server))
    wires = [str(w.data) for w in twilio.encode(stereo, guid=sid(5))]

    async def scenario() -> tuple[tuple[int | None, str], SocketPlayResult]:
        return await asyncio.gather(
            raw_twilio(url, [*wires[:6], bad, *wires[6:]]),
            good_call(server, "twilio", twilio.encode(stereo, guid=sid(6))),
        )

    (got_code, got_reason), good = asyncio.run(scenario())
    assert (got_code, got_reason) == (code, reason)
    assert counters(server)[f"media.twilio.error.{reason}"] == 1
    bad_call = server.sim.gateway.ended[sid(5)]
    assert bad_call.accounting.errors == {reason: 1}
    assert_untouched(good)


def test_twilio_media_before_start_is_a_policy_violation(
    server: ServerThread, stereo: StereoCall
) -> None:
    url = asyncio.run(twilio_url(server))
    wires = [str(w.data) for w in twilio.encode(stereo, guid=sid(7))]
    code, reason = asyncio.run(raw_twilio(url, [wires[0], wires[3]]))  # connected, media
    assert (code, reason) == (1008, "wrong-order")
    assert counters(server)["media.twilio.error.wrong-order"] == 1


def test_twilio_start_with_a_malformed_call_sid_opens_no_call(
    server: ServerThread, stereo: StereoCall
) -> None:
    url = asyncio.run(twilio_url(server))
    wires = [str(w.data) for w in twilio.encode(stereo, guid=sid(8))]
    bad_start = wires[1].replace(sid(8), sid(8) + "\\n")  # the JSON escape of a newline
    code, reason = asyncio.run(raw_twilio(url, [wires[0], bad_start, *wires[2:6]]))
    assert (code, reason) == (1007, "bad-sid")
    assert counters(server)["media.twilio.error.bad-sid"] == 1
    gw = server.sim.gateway
    assert sid(8) not in gw.calls and sid(8) not in gw.ended and gw.calls == {}


def test_twilio_second_stream_for_a_call_sid_in_use_is_a_policy_violation(
    server: ServerThread, stereo: StereoCall
) -> None:
    url = asyncio.run(twilio_url(server))
    wires = [str(w.data) for w in twilio.encode(stereo, guid=sid(9))]
    other = [str(w.data) for w in twilio.encode(stereo, guid=sid(9), stream_sid="MZ" + "e" * 32)]

    async def scenario() -> tuple[int | None, str]:
        async with connect(url, proxy=None) as first:
            for m in wires[:6]:
                await first.send(m)
            # The first stream is open (its media placed) before the second one starts.
            await _until(lambda: sid(9) in server.sim.gateway.calls)
            result = await raw_twilio(url, other[:6])
            for m in wires[6:]:
                await first.send(m)
            await first.close()
            return result

    assert asyncio.run(scenario()) == (1008, "guid-in-use")
    assert counters(server)["media.twilio.error.guid-in-use"] == 1
    call = server.sim.gateway.ended[sid(9)]  # the first stream's call, whole and unhurt
    assert call.info["streamSid"] == twilio.stream_sid_for(sid(9))
    assert call.timeline("inbound").received_samples == 8000
    assert call.accounting.errors == {}


async def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds (bounded: fails after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


# -- AudioHook


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sign": False}, "missing-header"),
        ({"client_secret": "d3Jvbmcgc2VjcmV0"}, "mismatch"),
        ({"api_key": "someone-else"}, "unknown-keyid"),
    ],
)
def test_audiohook_bad_signature_is_refused_with_401(
    server: ServerThread, stereo: StereoCall, change: dict[str, Any], reason: str
) -> None:
    wires = list(audiohook.encode(stereo, guid=CONVERSATION, frame_ms=100))
    sender = AudioHookSender(server.endpoints.ws_base + "/audiohook/ws", **change)
    with pytest.raises(InvalidStatus) as exc:
        asyncio.run(sender.open(wires[0]))
    assert exc.value.response.status_code == 401
    assert counters(server)[f"media.genesysaudiohook.rejected.{reason}"] == 1
    assert server.sim.gateway.calls == {}


def test_audiohook_protocol_error_disconnects_and_spares_other_calls(
    server: ServerThread, stereo: StereoCall
) -> None:
    bad_wires = list(audiohook.encode(stereo, guid=CONVERSATION, frame_ms=100))
    other = "40b0e395-84d3-4570-ac13-9a62d8f514c1"

    async def bad_session() -> AudioHookSender:
        sender = AudioHookSender(server.endpoints.ws_base + "/audiohook/ws")
        await sender.open(bad_wires[0])
        for wire in bad_wires[:3]:
            await sender.send(wire)
        await sender.send(Wire(0.3, "ws", b"\xff"))  # odd size: not whole stereo samples
        await asyncio.sleep(0.2)
        await sender.send(bad_wires[-1])  # the client's close
        await sender.finish()
        return sender

    async def scenario() -> tuple[AudioHookSender, SocketPlayResult]:
        return await asyncio.gather(
            bad_session(),
            good_call(
                server, "genesysaudiohook", audiohook.encode(stereo, guid=other, frame_ms=100)
            ),
        )

    sender, good = asyncio.run(scenario())
    assert sender.reply_types() == ["opened", "disconnect", "closed"]
    disconnect = json.loads(sender.replies[1])
    assert disconnect["parameters"]["reason"] == "error"
    assert counters(server)["media.genesysaudiohook.error.bad-frame"] == 1
    assert_untouched(good)


# -- SIPREC

UCID = "0867617078-0032318833-2221801472-0002236962"
OTHER_UCID = "0867617078-0032318833-2221801472-0002236963"


async def sip_exchange(server: ServerThread, data: bytes, transport: str = "udp") -> bytes | None:
    assert server.endpoints.sip is not None
    host, port = server.endpoints.sip
    sender = SiprecSender(host, port, transport=transport, timeout_s=1.0)
    await sender.open(Wire(0.0, "sip", data))
    try:
        response = await sender.request(data)
    except Exception:
        response = None
    await sender.finish()
    return None if response is None else response.to_bytes()


def sip_request(method: str, call_id: str = "nobody@x", extra: str = "") -> bytes:
    return (
        f"{method} sip:srs@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK7\r\n"
        f"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: {call_id}\r\nCSeq: 3 {method}\r\n"
        f"{extra}Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("data", "status", "counter"),
    [
        (sip_request("BYE"), b"SIP/2.0 481", "media.siprec.error.no-dialog"),
        (sip_request("INVITE"), b"SIP/2.0 421", "media.siprec.error.no-siprec"),
        (sip_request("INVITE", extra="Require: siprec\r\n"), b"SIP/2.0 415", None),
    ],
)
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sip_errors_are_answered_as_sip_responses(
    server: ServerThread, data: bytes, status: bytes, counter: str | None, transport: str
) -> None:
    response = asyncio.run(sip_exchange(server, data, transport))
    assert response is not None and response.startswith(status)
    if counter is not None:
        assert counters(server)[counter] == 1
    assert server.sim.app.state.media.sip.dialogs == {}


def test_unparseable_sip_is_counted_and_dropped(server: ServerThread) -> None:
    assert server.endpoints.sip is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"this is not SIP at all", server.endpoints.sip)
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(2048)
    assert any(k.startswith("media.siprec.error.") for k in counters(server))


def test_oversize_sip_over_tcp_gets_513(server: ServerThread) -> None:
    assert server.endpoints.sip is not None
    body = b"x" * 70_000
    head = sip_request("OPTIONS").replace(b"Content-Length: 0", b"Content-Length: 70000")
    with socket.create_connection(server.endpoints.sip, timeout=5) as s:
        s.sendall(head + body + sip_request("OPTIONS"))
        received = b""
        while received.count(b"SIP/2.0 ") < 2:
            received += s.recv(65536)
    # The oversize message is refused; the stream stays framed for the next one.
    assert received.startswith(b"SIP/2.0 513") and b"SIP/2.0 200" in received
    assert counters(server)["media.siprec.error.too-large"] == 1


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x80\x00\x01", "truncated"),
        (
            pack(RtpPacket(sequence=1, timestamp=1, ssrc=1, payload=b"\xff" * 160, payload_type=8)),
            "bad-payload-type",
        ),
    ],
)
def test_bad_rtp_is_counted_on_its_call_only(
    server: ServerThread, stereo: StereoCall, packet: bytes, reason: str
) -> None:
    wires = list(siprec.encode(stereo, guid=UCID))
    # Insert the bad packet on the first m-line after 10 good ones.
    rtp0 = [i for i, w in enumerate(wires) if w.channel == "rtp:0"]
    wires.insert(rtp0[10] + 1, Wire(wires[rtp0[10]].at_ms, "rtp:0", packet))

    async def scenario() -> list[SocketPlayResult]:
        return await asyncio.gather(
            good_call(server, "siprec", wires, guid=UCID),
            good_call(
                server, "siprec", siprec.encode(stereo, guid=OTHER_UCID, seed=1), guid=OTHER_UCID
            ),
        )

    bad, good = asyncio.run(scenario())
    assert bad.balanced() and bad.accounting["errors"] == {reason: 1}
    assert bad.accounting["dropped"] == {"decode-error": 1}
    assert counters(server)[f"media.siprec.error.{reason}"] == 1
    assert_untouched(good)


# -- Amazon Connect (Kinesis Video over HTTP)


def kvs_wires(stereo: StereoCall, arn: str, contact: str) -> list[Wire]:
    return list(kvs.encode(stereo, guid=contact, stream_arn=arn, fragment_ms=100))


def test_corrupt_ebml_gets_a_kvs_error_and_spares_other_streams(
    server: ServerThread, stereo: StereoCall
) -> None:
    contact = "1117e864-690f-4e1e-9dcf-6fbfcc288e41"
    other = "2227e864-690f-4e1e-9dcf-6fbfcc288e42"
    wires = kvs_wires(stereo, ARN, contact)
    with httpx.Client(base_url=server.base_url) as http:
        head = {"x-amzn-stream-arn": ARN}
        assert http.put("/putMedia", content=wires[0].data, headers=head).status_code == 200
        r = http.put("/putMedia", content=b"\x1a\x45\xdf\xa3\x81", headers=head)
        assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "InvalidArgumentException"
        body = r.json()
        assert body["__type"] == "InvalidArgumentException"
        assert body["Acks"][0]["EventType"] == "ERROR"
        # Several fragments in one body are stored in order.
        rest = b"".join(bytes(w.data) for w in wires[1:])  # type: ignore[arg-type]
        r = http.put("/putMedia", content=rest, headers=head)
        assert r.status_code == 200 and len(r.json()["Acks"]) == len(wires) - 1
        assert http.delete("/putMedia", headers=head).json()["ContactId"] == contact
        got = http.post(
            "/getMedia",
            json={"StreamARN": ARN, "StartSelector": {"StartSelectorType": "EARLIEST"}},
        )
        assert got.status_code == 200 and len(split_fragments(got.content)) == len(wires)
    good = asyncio.run(
        good_call(
            server, "amazonconnect", kvs_wires(stereo, OTHER_ARN, other), stream_arn=OTHER_ARN
        )
    )
    assert_untouched(good)
    call = server.sim.gateway.ended[contact]
    assert call.accounting.errors == {"corrupt-ebml": 1}
    assert call.accounting.received == len(wires)
    assert counters(server)["media.amazonconnect.error.corrupt-ebml"] == 1


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "aws"),
    [
        ("PUT", "/putMedia", {"content": b"x"}, 400, "InvalidArgumentException"),
        (
            "PUT",
            "/putMedia",
            {"content": b"x", "headers": {"x-amzn-stream-arn": "arn:nope"}},
            400,
            "InvalidArgumentException",
        ),
        (
            "DELETE",
            "/putMedia",
            {"headers": {"x-amzn-stream-arn": ARN}},
            404,
            "ResourceNotFoundException",
        ),
        (
            "POST",
            "/getMedia",
            {"json": {"StreamARN": ARN, "StartSelector": {"StartSelectorType": "NOW"}}},
            404,
            "ResourceNotFoundException",
        ),
        (
            "POST",
            "/getMedia",
            {"json": {"StreamARN": ARN, "StartSelector": {"StartSelectorType": "SOMETIME"}}},
            400,
            "InvalidArgumentException",
        ),
        ("POST", "/getMedia", {"content": b"{"}, 400, "InvalidArgumentException"),
        ("POST", "/getMedia", {"content": b"[" * 60_000}, 400, "InvalidArgumentException"),
        ("POST", "/getMedia", {"content": b" " * (8 << 20 | 1)}, 400, "InvalidArgumentException"),
    ],
)
def test_kvs_request_errors_use_the_aws_shape(
    server: ServerThread, method: str, path: str, kwargs: dict[str, Any], status: int, aws: str
) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        r = http.request(method, path, **kwargs)
    assert r.status_code == status and r.json()["__type"] == aws


_SELECT = '"StartSelector": {"StartSelectorType": "NOW"}'


@pytest.mark.parametrize(
    ("content", "content_type", "says"),
    [
        # Each was read by json.loads: the first four then met the stream lookup (404) or
        # a 500 (NaN and Infinity as StartTimestamp), the last two were taken as JSON.
        (f'{{"StreamARN": "{ARN}", {_SELECT}, "\\ud800": 1}}'.encode(), None, "lone surrogate"),
        (
            f'{{"StreamARN": "{ARN}", "StartSelector": {{"StartSelectorType": '
            '"SERVER_TIMESTAMP", "StartTimestamp": NaN}}'.encode(),
            None,
            "NaN is not a JSON number",
        ),
        (
            f'{{"StreamARN": "{ARN}", "StartSelector": {{"StartSelectorType": '
            '"SERVER_TIMESTAMP", "StartTimestamp": Infinity}}'.encode(),
            None,
            "Infinity is not a JSON number",
        ),
        (f'{{"StreamARN": "{ARN}", {_SELECT}}}'.encode("utf-16"), None, "not UTF-8"),
        (f'\ufeff{{"StreamARN": "{ARN}", {_SELECT}}}'.encode(), None, "byte-order mark"),
        (f'{{"StreamARN": "{ARN}", {_SELECT}}}'.encode(), "text/plain", "application/json"),
        (
            f'{{"StreamARN": "{ARN}", {_SELECT}}}'.encode(),
            "application/json; charset=latin-1",
            "must be UTF-8",
        ),
    ],
    ids=["surrogate-name", "nan", "infinity", "utf-16", "bom", "text-plain", "latin-1"],
)
def test_get_media_reads_its_body_as_every_json_body_is_read(
    server: ServerThread, content: bytes, content_type: str | None, says: str
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    with httpx.Client(base_url=server.base_url) as http:
        r = http.post("/getMedia", content=content, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["x-amzn-ErrorType"] == "InvalidArgumentException"
    assert r.json()["__type"] == "InvalidArgumentException" and says in r.json()["message"]
    assert counters(server)["media.amazonconnect.rejected.bad-selector"] == 1


@pytest.mark.parametrize("content_type", ["application/json", "application/x-amz-json-1.1"])
def test_get_media_takes_the_json_types_aws_sdks_declare(
    server: ServerThread, content_type: str
) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        r = http.post(
            "/getMedia",
            content=f'{{"StreamARN": "{ARN}", {_SELECT}}}'.encode(),
            headers={"content-type": content_type},
        )
    assert (r.status_code, r.json()["__type"]) == (404, "ResourceNotFoundException")


# -- statistics, configuration, lateness


def test_media_stats_need_credentials(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        assert http.get("/_sim/v1/media/stats").status_code == 401
        stats = http.get("/_sim/v1/media/stats", headers=HEADERS).json()
        assert stats["sip"]["udp"] == server.endpoints.sip[1]  # type: ignore[index]
        assert http.get("/_sim/v1/media/calls/nobody", headers=HEADERS).status_code == 404


def test_media_answers_of_a_real_server_fit_the_contract(
    server: ServerThread, stereo: StereoCall
) -> None:
    """Under a real server ``sip`` and ``loop`` are objects (null in process, which the
    contract table covers), and a call that came over a socket has its accounting."""
    asyncio.run(good_call(server, "twilio", twilio.encode(stereo, guid=sid(12))))
    with httpx.Client(base_url=server.base_url, headers=HEADERS) as http:
        stats = http.get("/_sim/v1/media/stats").json()
        validate("SimMediaStats", stats)
        assert stats["sip"] is not None and stats["loop"] is not None
        assert stats["counters"]["media.twilio.sessions"] >= 1
        assert stats["lateness"]["count"] > 0
        kept = http.post("/_sim/v1/media/stats", json={"reset_lateness": False}).json()
        validate("SimMediaStats", kept)
        assert kept["lateness"]["count"] == stats["lateness"]["count"]
        fresh = http.post("/_sim/v1/media/stats").json()
        validate("SimMediaStats", fresh)
        assert fresh["lateness"]["count"] == 0 and fresh["counters"] == stats["counters"]
        view = http.get(f"/_sim/v1/media/calls/{sid(12)}").json()
    validate("SimMediaCall", view)
    assert (view["namespace"], view["source"], view["open"]) == ("twilio", "twilio-ws", False)
    assert view["accounting"]["ended_by"] == "platform" and view["streams"] is None


def test_audiohook_secrets_stay_out_of_repr() -> None:
    config = SimulatorConfig(audiohook_api_key="k-123", audiohook_client_secret="c2VjcmV0")
    assert "k-123" not in repr(config) and "c2VjcmV0" not in repr(config)


@pytest.mark.parametrize("ports", [(5000, 5000), (80, 90), (60000, 70000)])
def test_rtp_port_range_is_checked(ports: tuple[int, int]) -> None:
    with pytest.raises(ConfigError):
        SimulatorConfig(rtp_ports=ports)


@pytest.mark.parametrize("server", [{"rtp_ports": (41000, 41003)}], indirect=True)
def test_rtp_ports_come_from_the_configured_range(server: ServerThread, stereo: StereoCall) -> None:
    result = asyncio.run(good_call(server, "siprec", siprec.encode(stereo, guid=UCID), guid=UCID))
    assert_untouched(result)
    ports = server.sim.gateway.ended[UCID].info["answer_ports"]
    assert all(41000 <= p <= 41003 for p in ports)


def test_session_lateness_is_measured_against_the_best_placed_message() -> None:
    h = LatenessHistogram()
    probe = SessionLateness(h)
    for arrival, media in [(5.0, 20.0), (25.0, 40.0), (70.0, 60.0), (80.0, 80.0)]:
        probe.observe(arrival, media)
    assert h.count == 4 and h.max_ms == 25.0 and h.percentile(50) == 0.0
    h.reset()
    assert h.as_dict() == {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}


def test_a_retransmitted_bye_gets_the_same_answer_not_481(
    server: ServerThread, stereo: StereoCall
) -> None:
    """Over UDP an SBC resends a request whose answer came late; the server's transaction
    answers the copy as it answered the original (RFC 3261 17.2) instead of treating it as
    a request for a dialog that has ended."""
    assert server.endpoints.sip is not None
    wires = list(siprec.encode(stereo, guid="5550001111", seed=4))
    sip = [w.data for w in wires if w.channel == "sip"]
    invite, bye = sip[0], sip[-1]
    assert isinstance(invite, bytes) and isinstance(bye, bytes)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)

        def final(data: bytes) -> bytes:
            s.sendto(data, server.endpoints.sip)
            while True:
                answer = s.recv(65536)
                if not answer.startswith(b"SIP/2.0 1"):  # skip 100 Trying
                    return answer

        assert final(invite).startswith(b"SIP/2.0 200")
        first = final(bye)
        again = final(bye)
    assert first.startswith(b"SIP/2.0 200") and again == first
    seen = counters(server)
    assert seen["media.siprec.retransmission"] == 1
    assert "media.siprec.error.no-dialog" not in seen
