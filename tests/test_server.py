"""The simulated router's HTTP semantics, every answer checked against the contract."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from conftest import GUIDS, HEADERS, code, start_extra
from conftest import call as sim_call

from mgsim.contract import validate
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.simulator import Simulator

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"

_RESPONSE_SCHEMA = {
    (START, 200): "StartStreamingResponse",
    (STOP, 200): "StopStreamingResponse",
}


def call(
    sim: Simulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """As conftest's ``call``; a start or stop answered 200 must match its response schema."""
    r = sim_call(sim, method, path, body, headers=headers, content=content)
    if (path, r.status_code) in _RESPONSE_SCHEMA:
        validate(_RESPONSE_SCHEMA[(path, r.status_code)], r.json())
    return r


def start_body(namespace: str = "siprec", **extra: Any) -> dict[str, Any]:
    body = {
        "namespace": namespace,
        "guid": GUIDS[namespace],
        "customerId": "cust-1",
        "agentId": "agent-7",
        **start_extra(namespace),
    }
    body.update(extra)
    return body


def open_call(sim: Simulator, namespace: str = "siprec") -> None:
    r = call(sim, "POST", "/_sim/v1/calls", {"namespace": namespace, "guid": GUIDS[namespace]})
    assert r.status_code == 201


@pytest.mark.parametrize("namespace", sorted(GUIDS))
def test_full_cycle_per_namespace(sim: Simulator, namespace: str) -> None:
    open_call(sim, namespace)
    started = call(sim, "POST", START, start_body(namespace))
    assert started.status_code == 200
    at = started.json()["autotranscribeResponse"]
    assert at["customer"]["status"] == {"code": 1000, "description": "OK"}
    assert at["customer"]["streamId"] != at["agent"]["streamId"]
    stopped = call(sim, "POST", STOP, {"namespace": namespace, "guid": GUIDS[namespace]})
    assert stopped.status_code == 200
    summary = stopped.json()["autotranscribeResponse"]["agent"]["summary"]
    assert summary == {
        "totalAudioBytes": 0,
        "audioDurationMs": 0,
        "streamingSeconds": 0,
        "transcripts": 0,
    }
    assert stopped.json()["autotranscribeResponse"]["agent"]["streamId"] == at["agent"]["streamId"]


def test_auth_missing_is_401_and_wrong_is_403(sim: Simulator) -> None:
    assert code(call(sim, "POST", STOP, {}, headers={})) == "401-01"
    assert code(call(sim, "POST", STOP, {}, headers={"asapp-api-id": "mgsim-local"})) == "401-01"
    wrong = {"asapp-api-id": "mgsim-local", "asapp-api-secret": "nope"}
    r = call(sim, "POST", STOP, {}, headers=wrong)
    assert r.status_code == 403 and code(r) == "403-01"
    assert "nope" not in r.text and "mgsim-local-secret" not in r.text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "400-01"),
        (b"[1, 2]", "400-01"),
        (b"\xff\xfe", "400-01"),
        (b"", "400-01"),
        (b"[" * 60_000, "400-01"),  # deeper than any parser recurses
        (b"[" * 1_100 + b"]" * 1_100, "400-01"),  # well-formed, but nested too deeply
    ],
)
def test_malformed_bodies(sim: Simulator, content: bytes, expected: str) -> None:
    assert code(call(sim, "POST", START, content=content)) == expected


@pytest.mark.parametrize(
    ("encode", "why"),
    [
        (lambda text: b"\xef\xbb\xbf" + text.encode(), "byte-order mark"),
        (lambda text: text.encode("utf-16"), "not UTF-8"),
    ],
)
def test_json_text_must_be_utf8_without_a_byte_order_mark(
    sim: Simulator, encode: Any, why: str
) -> None:
    # RFC 8259 section 8.1: JSON exchanged between systems is UTF-8, with no BOM added.
    open_call(sim)
    text = json.dumps(start_body())
    r = call(sim, "POST", START, content=encode(text))
    assert code(r) == "400-01" and why in r.json()["error"]["message"]
    assert call(sim, "POST", START, content=text.encode()).status_code == 200


@pytest.mark.parametrize(
    ("number", "named"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "1e999")],
)
def test_numbers_json_does_not_have_are_refused(sim: Simulator, number: str, named: str) -> None:
    # Words timed NaN or 1e999 (infinite) would be kept as a script no call can play.
    word = f'{{"speaker":"agent","text":"hi","startMs":{number},"endMs":1}}'
    for body in (f'{{"words":[{word}]}}', f'{{"sample":"card_payment","untilMs":{number}}}'):
        r = call(sim, "PUT", f"/_sim/v1/calls/{GUIDS['twilio']}/script", content=body.encode())
        assert r.status_code == 400 and code(r) == "400-01"
        assert named in r.json()["error"]["message"]


def test_integers_beyond_64_bits_are_read_exactly(sim: Simulator) -> None:
    # orjson would read them as floats; the body is read as sent.
    big = 10**30 + 7
    body = f'{{"error": "503-01", "count": {big}}}'.encode()
    r = call(sim, "POST", "/_sim/v1/faults", content=body)
    assert r.status_code == 201 and r.json()["count"] == big


def test_responses_are_compact_utf8_json(sim: Simulator) -> None:
    open_call(sim)
    assert call(sim, "POST", START, start_body()).status_code == 200
    r = call(sim, "POST", STOP, {"namespace": "siprec", "guid": GUIDS["siprec"]})
    body = r.json()
    assert r.content == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert r.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"namespace": "sip"}, "namespace"),
        ({"guid": ""}, "guid"),
        ({"customerId": 5}, "customerId"),
        ({"agentId": None}, "agentId"),
        ({"autotranscribeParams": {"detailedToken": "yes"}}, "autotranscribeParams.detailedToken"),
        (
            {"autotranscribeParams": {"redactionOutput": "masked"}},
            "autotranscribeParams.redactionOutput",
        ),
        ({"siprecParams": {"mediaLineOrder": "FIRST"}}, "siprecParams.mediaLineOrder"),
        ({"siprecParams": {"medialineorder": "AGENT_FIRST"}}, "siprecParams.medialineorder"),
        ({"namepsace": "siprec"}, "namepsace"),
        ({"guid": "CA123"}, "guid"),
    ],
)
def test_parameter_errors_name_the_field(
    sim: Simulator, change: dict[str, Any], field: str
) -> None:
    r = call(sim, "POST", START, {**start_body(), **change})
    assert code(r) == "400-201"
    assert field in r.json()["error"]["message"]


def test_missing_required_field(sim: Simulator) -> None:
    body = start_body()
    del body["agentId"]
    r = call(sim, "POST", START, body)
    assert code(r) == "400-201" and "agentId" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("namespace", "change"),
    [
        ("siprec", {"autotranscribeParams": {"detailedToken": True}}),
        (
            "siprec",
            {"autotranscribeParams": {"detailedToken": True, "redactionOutput": "redacted"}},
        ),
        (
            "siprec",
            {
                "autotranscribeParams": {
                    "detailedToken": True,
                    "redactionOutput": "redacted_and_unredacted",
                }
            },
        ),
        ("siprec", {"twilioParams": {"trackMap": {"inbound": "customer"}}}),
        ("twilio", {"siprecParams": {"mediaLineOrder": "AGENT_FIRST"}}),
        ("twilio", {"twilioParams": {"trackMap": {"inbound": "agent"}}}),
        (
            "amazonconnect",
            {
                "amazonConnectParams": {
                    "streamArn": start_extra("amazonconnect")["amazonConnectParams"]["streamArn"],  # type: ignore[index]
                    "startSelectorType": "FRAGMENT_NUMBER",
                }
            },
        ),
    ],
)
def test_bad_combinations_are_400_202(
    sim: Simulator, namespace: str, change: dict[str, Any]
) -> None:
    open_call(sim, namespace)
    assert code(call(sim, "POST", START, start_body(namespace, **change))) == "400-202"
    assert not sim.gateway.calls[GUIDS[namespace]].streaming  # nothing was accepted


@pytest.mark.parametrize("selector", [{}, {"startSelectorType": "NOW"}])
def test_now_with_after_fragment_number_is_accepted_and_reads_from_now(
    sim: Simulator, selector: dict[str, str]
) -> None:
    # Integrators forward the contact's StartFragmentNumber whichever selector they use;
    # with NOW it is ignored (documented in the contract), not refused.
    open_call(sim, "amazonconnect")
    kvs = {**start_extra("amazonconnect")["amazonConnectParams"], **selector}  # type: ignore[dict-item]
    kvs["afterFragmentNumber"] = "91343852333181432392682062622220590765191907586"
    r = call(sim, "POST", START, start_body("amazonconnect", amazonConnectParams=kvs))
    assert r.status_code == 200 and r.json()["isOk"] is True
    # Its form is still checked.
    stop = {"namespace": "amazonconnect", "guid": GUIDS["amazonconnect"]}
    assert call(sim, "POST", STOP, stop).status_code == 200
    kvs["afterFragmentNumber"] = "12\n"
    r = call(sim, "POST", START, start_body("amazonconnect", amazonConnectParams=kvs))
    assert code(r) == "400-201" and "afterFragmentNumber" in r.json()["error"]["message"]


def test_detailed_token_with_unredacted_output_is_accepted(sim: Simulator) -> None:
    open_call(sim)
    params = {"detailedToken": True, "redactionOutput": "unredacted"}
    assert call(sim, "POST", START, start_body(autotranscribeParams=params)).status_code == 200


def test_redacted_output_without_rules_is_400_202() -> None:
    with Simulator(SimulatorConfig(seed=1, redaction_rules_configured=False), virtual=True) as s:
        open_call(s)
        assert code(call(s, "POST", START, start_body())) == "400-202"
        unredacted = {"redactionOutput": "unredacted"}
        assert (
            call(s, "POST", START, start_body(autotranscribeParams=unredacted)).status_code == 200
        )


def test_amazonconnect_needs_a_valid_stream_arn(sim: Simulator) -> None:
    open_call(sim, "amazonconnect")
    body = start_body("amazonconnect")
    del body["amazonConnectParams"]
    assert code(call(sim, "POST", START, body)) == "400-201"
    body["amazonConnectParams"] = {"streamArn": "arn:aws:s3:::bucket"}
    r = call(sim, "POST", START, body)
    assert code(r) == "400-201" and "streamArn" in r.json()["error"]["message"]


def test_unknown_guid_is_400_203_and_state_conflicts_are_409_201(sim: Simulator) -> None:
    assert code(call(sim, "POST", START, start_body())) == "400-203"
    assert (
        code(call(sim, "POST", STOP, {"namespace": "siprec", "guid": GUIDS["siprec"]})) == "400-203"
    )
    open_call(sim)
    stop = {"namespace": "siprec", "guid": GUIDS["siprec"]}
    assert code(call(sim, "POST", STOP, stop)) == "409-201"
    assert call(sim, "POST", START, start_body()).status_code == 200
    assert code(call(sim, "POST", START, start_body())) == "409-201"
    # a guid opened in one namespace is unknown in another
    assert (
        code(call(sim, "POST", STOP, {"namespace": "twilio", "guid": GUIDS["twilio"]})) == "400-203"
    )


def test_unsupported_language_answers_stream_status_4050_and_starts_nothing(
    sim: Simulator,
) -> None:
    open_call(sim)
    r = call(sim, "POST", START, start_body(autotranscribeParams={"language": "fr-FR"}))
    assert r.status_code == 200
    assert r.json()["isOk"] is False and "fr-FR" in r.json()["errorMessage"]
    for role in ("customer", "agent"):
        assert r.json()["autotranscribeResponse"][role]["status"]["code"] == 4050
    # The streams did not start: the call is not streaming, a stop is "already stopped",
    # and the corrected start is accepted.
    state = call(sim, "GET", f"/_sim/v1/calls/{GUIDS['siprec']}").json()
    assert (state["streaming"], state["segments"]) == (False, 0)
    stop = {"namespace": "siprec", "guid": GUIDS["siprec"]}
    assert code(call(sim, "POST", STOP, stop)) == "409-201"
    r = call(sim, "POST", START, start_body())
    assert r.status_code == 200 and r.json()["isOk"] is True
    assert call(sim, "POST", STOP, stop).json()["isOk"] is True


def test_body_over_limit_is_413(sim: Simulator) -> None:
    big = start_body(customerId="x" * (70 * 1024))
    assert code(call(sim, "POST", START, big)) == "413-01"


def test_spike_arrest_and_daily_quota() -> None:
    cfg = SimulatorConfig(seed=1, spike_arrest_per_s=5, daily_quota=8)
    with Simulator(cfg, virtual=True) as s:
        stop = {"namespace": "siprec", "guid": GUIDS["siprec"]}
        codes = [code(call(s, "POST", STOP, stop)) for _ in range(6)]
        assert codes == ["400-203"] * 5 + ["429-01"]
        s.clock.advance(1.0)  # type: ignore[attr-defined]
        codes = [code(call(s, "POST", STOP, stop)) for _ in range(4)]
        assert codes == ["400-203"] * 3 + ["429-01"]  # 8 a day in all
        assert "Daily quota" in call(s, "POST", STOP, stop).json()["error"]["message"]
        s.clock.advance(86400.0)  # type: ignore[attr-defined]
        assert code(call(s, "POST", STOP, stop)) == "400-203"  # a new UTC day


def test_concurrent_request_for_same_guid_is_409_202() -> None:
    cfg = SimulatorConfig(seed=1, faults=Faults(latency_ms=200))
    with Simulator(cfg, virtual=True) as s:
        s.gateway.open_call("siprec", GUIDS["siprec"])

        async def both() -> list[httpx.Response]:
            transport = s.async_transport()
            async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
                return list(
                    await asyncio.gather(
                        http.post(START, json=start_body(), headers=HEADERS),
                        http.post(START, json=start_body(), headers=HEADERS),
                    )
                )

        first, second = asyncio.run(both())
        assert first.status_code == 200
        assert second.json()["error"]["code"] == "409-202"
        assert s.gateway.calls[GUIDS["siprec"]].segments[0].started_at == pytest.approx(0.2)


def test_injected_503_changes_nothing() -> None:
    cfg = SimulatorConfig(seed=3, faults=Faults(rate_503=1.0))
    with Simulator(cfg, virtual=True) as s:
        s.gateway.open_call("siprec", GUIDS["siprec"])
        assert code(call(s, "POST", START, start_body())) == "503-01"
        assert not s.gateway.calls[GUIDS["siprec"]].streaming


def test_twilio_url_token_is_checked_and_expires(sim: Simulator) -> None:
    r = call(sim, "GET", "/mg-autotranscribe/v1/twilio-media-stream-url")
    validate("TwilioMediaStreamUrlResponse", r.json())
    url = r.json()["streamingUrl"]
    assert url.startswith("ws://sim/mg-twilio-autotranscribe/twilio-media/")
    token = url.rsplit("/", 1)[1]
    tokens = sim.state.tokens
    assert tokens.check(token)["sub"] == "twilio-media"
    sim.clock.advance(299.0)  # type: ignore[attr-defined]
    tokens.check(token)  # still valid, and usable many times within the TTL
    sim.clock.advance(1.5)  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="expired"):
        tokens.check(token)
    with pytest.raises(Exception, match="invalid"):
        tokens.check(token[:-2] + "xx")


def test_conversation_messages(sim: Simulator) -> None:
    path = "/conversation/v1/conversation/messages"
    r = call(sim, "GET", path + "?externalId=" + GUIDS["siprec"])
    assert r.status_code == 200 and r.json() == {"items": []}
    validate("ConversationMessagesResponse", r.json())
    assert code(call(sim, "GET", path)) == "400-201"


def test_sim_call_control(sim: Simulator) -> None:
    open_call(sim)
    assert (
        code(call(sim, "POST", "/_sim/v1/calls", {"namespace": "siprec", "guid": GUIDS["siprec"]}))
        == "409-01"
    )
    r = call(sim, "GET", "/_sim/v1/calls/" + GUIDS["siprec"])
    validate("SimCall", r.json())
    assert r.json()["streaming"] is False
    assert call(sim, "DELETE", "/_sim/v1/calls/" + GUIDS["siprec"]).status_code == 204
    assert code(call(sim, "DELETE", "/_sim/v1/calls/" + GUIDS["siprec"])) == "404-01"
    assert (
        code(call(sim, "POST", "/_sim/v1/calls", {"namespace": "twilio", "guid": "x"})) == "400-201"
    )


def test_unknown_path_and_method_use_the_envelope(sim: Simulator) -> None:
    assert code(call(sim, "GET", "/nope")) == "404-01"
    r = call(sim, "GET", START)
    assert code(r) == "405-01" and r.headers["allow"] == "POST"
    # A path with a handler per method names them all (the contract lists both).
    r = call(sim, "DELETE", "/_sim/v1/media/stats")
    assert code(r) == "405-01" and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_unexpected_exception_is_500_201_in_the_envelope(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    open_call(sim)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sim.gateway, "start", boom)
    r = call(sim, "POST", START, start_body())
    assert r.status_code == 500 and code(r) == "500-201"
    assert "boom" not in r.text


def test_an_unexpected_exception_elsewhere_is_the_vendors_500_01(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # 500-201 is start/stop's own internal error; the vendor's default for the rest is 500-01.
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(sim.gateway, "conversation", boom)
    r = call(sim, "GET", f"/conversation/v1/conversation/messages?externalId={GUIDS['siprec']}")
    assert r.status_code == 500 and code(r) == "500-01" and "boom" not in r.text


def test_request_ids_are_fresh(sim: Simulator) -> None:
    ids = {call(sim, "POST", START, start_body()).json()["error"]["requestId"] for _ in range(20)}
    assert len(ids) == 20


def test_openapi_is_served(sim: Simulator) -> None:
    r = call(sim, "GET", "/openapi.yaml", headers={})
    assert r.status_code == 200 and "startStreaming" in r.text


def test_a_script_attached_over_http_transcribes_media_from_any_session(sim: Simulator) -> None:
    from mgsim.gateway.sessions import open_media_session
    from mgsim.media import twilio
    from mgsim.sim.call import load_sample

    sample = load_sample("card_payment")
    guid = GUIDS["twilio"]
    r = call(sim, "PUT", f"/_sim/v1/calls/{guid}/script", {"sample": "card_payment"})
    assert r.status_code == 200
    validate("SimScript", r.json())
    assert r.json() == {"guid": guid, "words": len(sample.words), "source": "sample:card_payment"}
    session = open_media_session(sim.gateway, "twilio")
    wires = list(twilio.encode(sample.audio, guid=guid))
    half = len(wires) // 2
    for wire in wires[:2]:
        session.feed(wire)
    assert call(sim, "POST", START, start_body("twilio")).status_code == 200
    for wire in wires[2:half]:
        session.feed(wire)
    stopped = call(sim, "POST", STOP, {"namespace": "twilio", "guid": guid}).json()
    streams = stopped["autotranscribeResponse"]
    counted = sum(streams[role]["summary"]["transcripts"] for role in ("customer", "agent"))
    stored = call(sim, "GET", f"/conversation/v1/conversation/messages?externalId={guid}")
    assert counted > 0 and counted == len(stored.json()["items"])


def test_a_sample_script_is_read_once_per_server_and_cut_per_request(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mgsim.server.app as app_module
    import mgsim.sim.call as call_module

    app_module._sample_script.cache_clear()
    loads: list[str] = []
    real = call_module.load_sample

    def counting(name: str, directory: Any = None) -> Any:
        loads.append(name)
        return real(name, directory)

    monkeypatch.setattr(call_module, "load_sample", counting)
    counts = []
    for i, until in enumerate((None, 20_000, 5_000)):
        body: dict[str, Any] = {"sample": "account_verification"}
        if until is not None:
            body["untilMs"] = until
        r = call(sim, "PUT", f"/_sim/v1/calls/CA{i:032x}/script", body)
        counts.append(r.json()["words"])
    assert loads == ["account_verification"]  # read once; every request still cut its own
    assert counts[0] > counts[1] > counts[2] > 0


HI = {"speaker": "agent", "text": "hi", "startMs": 0, "endMs": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"sample": "card_payment", "words": [HI]}, "body"),
        ({"sample": "no_such_call"}, "sample"),
        ({"words": [{"speaker": "agent", "text": "hi", "startMs": 5, "endMs": 1}]}, "words[0]"),
        ({"words": [HI], "untilMs": 1}, "untilMs"),
        ({"words": [{"speaker": "caller", "text": "hi", "startMs": 0, "endMs": 1}]}, "speaker"),
        ({"sample": "card_payment", "untilMs": -1}, "untilMs"),
    ],
)  # fmt: skip
def test_bad_scripts_are_refused_naming_the_field(
    sim: Simulator, body: dict[str, Any], field: str
) -> None:
    r = call(sim, "PUT", f"/_sim/v1/calls/{GUIDS['twilio']}/script", body)
    assert code(r) == "400-201"
    assert field in r.json()["error"]["message"]
