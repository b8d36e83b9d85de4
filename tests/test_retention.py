"""What the gateway keeps per call served is bounded, so a long run stays in flat memory.

Ended calls (state and transcript messages), transcription engines, media sessions, idle
Kinesis streams, SIP answers kept for retransmissions, webhook records and fault-rule
counters each hold at most their bound however many calls are served; the most recent calls
are still served in full and released ones answer as documented.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest
from conftest import call

from mgsim.cli import main
from mgsim.client import Client
from mgsim.clock import VirtualClock
from mgsim.contract import validate
from mgsim.errors import ConfigError
from mgsim.gateway import Gateway, StartParams
from mgsim.gateway.calls import MESSAGE_RETENTION_S
from mgsim.media import kvs, twilio
from mgsim.media._base import StereoCall
from mgsim.server.config import SimulatorConfig
from mgsim.server.faults import FaultRule
from mgsim.server.webhooks import WebhookSink
from mgsim.simulator import Simulator
from mgsim.speech.engine import ScriptEngine, Word
from mgsim.transports.sip import ANSWER_KEPT_S, SipServer

WORDS = [Word("customer", "hello", 0, 40), Word("agent", "hi", 50, 90)]
TONE = np.full(800, 1000, dtype=np.int16)  # 100 ms of audible audio per channel


def script_word(w: Word) -> dict[str, Any]:
    return {"speaker": w.speaker, "text": w.text, "startMs": w.start_ms, "endMs": w.end_ms}


def guid(i: int) -> str:
    return "CA" + format(i, "032x")


def serve(gw: Gateway, first: int, count: int, *, script_first: bool = False) -> None:
    """``count`` short twilio calls, each streamed and transcribed (two messages)."""
    for i in range(first, first + count):
        g = guid(i)
        if script_first:
            gw.transcription.attach(g, ScriptEngine(WORDS))
        call = gw.open_call("twilio", g)
        if not script_first:
            gw.transcription.attach(g, ScriptEngine(WORDS))
        gw.start("twilio", g, StartParams("c", "a"))
        for channel in call.channels:
            call.receive(channel, 0, TONE, gw.clock.now())
        gw.stop("twilio", g)
        gw.hang_up(g)


# ------------------------------------------------------------------- the gateway itself


def test_serving_thousands_of_calls_keeps_only_the_most_recent() -> None:
    gw = Gateway(VirtualClock(), random.Random(0), keep_audio_of=10, keep_calls=100)
    sink = WebhookSink(keep=500)
    gw.transcription.webhooks = sink
    n = 3000
    for batch in range(0, n, 500):
        serve(gw, batch, 500, script_first=batch % 1000 == 0)
        assert len(gw.ended) <= 100 and len(gw.messages) <= 100
        assert gw.transcription.engines <= 10 and gw.transcription.waiting == 0
        assert len(sink.bodies) <= 500 and len(sink.records) <= 500
        assert sum(not c.audio_released for c in gw.ended.values()) <= 10
    assert gw.released == n - 100
    assert list(gw.ended) == [guid(i) for i in range(n - 100, n)]
    for i in range(n - 100, n):  # the most recent: state and messages in full
        assert len(gw.conversation(guid(i))) == 2
        assert gw.find(guid(i)) is gw.ended[guid(i)]
    for i in (0, 1, n - 101):  # released: gone, and the 404 says why
        assert gw.conversation(guid(i)) == [] and gw.find(guid(i)) is None
        problem = gw.not_found(guid(i))
        assert problem.code == "404-01"
        assert "most recent 100 ended calls" in problem.message
        assert "--keep-calls" in problem.message
    assert sink.counts["delivered"] == 2 * n == sink.offered  # counted, though not all kept


def test_open_calls_are_never_released() -> None:
    gw = Gateway(VirtualClock(), keep_audio_of=2, keep_calls=5)
    live = gw.open_call("twilio", "CA-live")
    gw.transcription.attach("CA-live", ScriptEngine(WORDS))
    gw.start("twilio", "CA-live", StartParams("c", "a"))
    for channel in live.channels:
        live.receive(channel, 0, TONE, 0.0)
    gw.stop("twilio", "CA-live")
    serve(gw, 0, 50)
    assert gw.calls["CA-live"] is live and len(gw.conversation("CA-live")) == 2
    assert gw.transcription.engines == 1 + 2  # the live call's and two ended calls'


def test_a_reopened_guid_counts_as_recent() -> None:
    gw = Gateway(VirtualClock(), keep_audio_of=2, keep_calls=3)
    serve(gw, 0, 3)  # ended: 0 1 2
    gw.open_call("twilio", guid(0))
    gw.hang_up(guid(0))  # ended: 1 2 0
    serve(gw, 3, 1)  # 1 is released, 0 stays
    assert list(gw.ended) == [guid(2), guid(0), guid(3)]
    assert gw.conversation(guid(0)) and not gw.conversation(guid(1))
    # Only the two most recent keep audio; the reopened call ended second-to-last.
    assert [gw.ended[g].audio_released for g in gw.ended] == [True, False, False]


def test_scripts_for_calls_that_never_open_are_bounded() -> None:
    gw = Gateway(VirtualClock(), keep_audio_of=5, keep_calls=20)
    for i in range(300):
        gw.transcription.attach(guid(i), ScriptEngine(WORDS))
    assert gw.transcription.waiting == 20 and gw.transcription.engines == 20
    serve(gw, 299, 1)  # the most recent script is still there when its call comes
    assert len(gw.conversation(guid(299))) == 2
    assert gw.transcription.waiting == 19


@pytest.mark.parametrize("kept_for", [0.0, MESSAGE_RETENTION_S - 1])
def test_messages_are_served_for_seven_days(kept_for: float) -> None:
    clock = VirtualClock()
    gw = Gateway(clock)
    serve(gw, 0, 1)
    clock.advance(kept_for)
    assert len(gw.conversation(guid(0))) == 2


def test_messages_older_than_seven_days_are_not_served() -> None:
    clock = VirtualClock()
    gw = Gateway(clock)
    g = guid(0)
    call = gw.open_call("twilio", g)
    gw.transcription.attach(g, ScriptEngine([*WORDS, Word("agent", "bye", 3000, 3040)]))
    gw.start("twilio", g, StartParams("c", "a"))
    for channel in call.channels:
        call.receive(channel, 0, TONE, clock.now())
    gw.stop("twilio", g)
    clock.advance(3 * 24 * 3600)  # a second window, three days later
    gw.start("twilio", g, StartParams("c", "a"))
    for channel in call.channels:
        call.receive(channel, 24000, TONE, clock.now())
    gw.stop("twilio", g)
    assert [m["text"] for m in gw.conversation(g)] == ["hello", "hi", "bye"]
    clock.advance(4 * 24 * 3600 + 1)  # the first window is now over 7 days old
    assert [m["text"] for m in gw.conversation(g)] == ["bye"]
    clock.advance(3 * 24 * 3600)
    assert gw.conversation(g) == [] and g not in gw.messages


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_calls": 0, "keep_audio_of": 0}, "keep_calls must be >= 1"),
        ({"keep_calls": 10}, r"keep_calls \(10\) must be >= keep_audio_of \(64\)"),
        ({"keep_calls": 5, "keep_audio_of": -1}, "keep_audio_of must be >= 0"),
        ({"keep_calls": 2.5}, "keep_calls must be an integer"),
        ({"keep_calls": True}, "keep_calls must be an integer"),
    ],
)
def test_gateway_retention_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Gateway(VirtualClock(), **kwargs)


@pytest.mark.parametrize(
    ("value", "message"),
    [(0, "keep_calls must be >= 1"), (-3, "keep_calls must be >= 1"), ("9", "integer")],
)
def test_config_keep_calls_is_validated(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimulatorConfig(keep_calls=value)


@pytest.mark.parametrize(("keep", "audio"), [(1000, 64), (100, 64), (10, 10), (1, 1)])
def test_the_simulator_passes_keep_calls_to_its_gateway(keep: int, audio: int) -> None:
    with Simulator(SimulatorConfig(keep_calls=keep), virtual=True) as sim:
        assert (sim.gateway.keep_calls, sim.gateway.keep_audio_of) == (keep, audio)
        assert sim.app.state.mgsim.gateway is sim.gateway


def test_cli_refuses_a_bad_keep_calls(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--keep-calls", "0"]) == 2
    assert "--keep-calls must be >= 1" in capsys.readouterr().err


def test_cli_passes_keep_calls_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app))
    assert main(["serve", "--keep-calls", "250", "--no-sip", "--quiet"]) == 0
    assert served["app"].state.mgsim.gateway.keep_calls == 250


# ------------------------------------------------------------------------------ HTTP


def test_released_calls_answer_over_http() -> None:
    config = SimulatorConfig(seed=3, keep_calls=3, spike_arrest_per_s=None, daily_quota=None)
    with Simulator(config, virtual=True) as sim, Client(simulator=sim) as client:
        for i in range(5):
            g = guid(i)
            client.open_call("twilio", g)
            script = {"words": [script_word(w) for w in WORDS]}
            assert client.request("PUT", f"/_sim/v1/calls/{g}/script", json=script).is_success
            client.start_streaming("twilio", g, "c", "a")
            call = sim.gateway.calls[g]
            for channel in call.channels:
                call.receive(channel, 0, TONE, sim.clock.now())
            client.stop_streaming("twilio", g)
            client.hang_up(g)
        for i in (2, 3, 4):
            assert [m["text"] for m in client.conversation_messages(guid(i))] == ["hello", "hi"]
            r = client.request("GET", f"/_sim/v1/calls/{guid(i)}")
            validate("SimCall", r.json())
            assert r.json() == {
                "namespace": "twilio",
                "guid": guid(i),
                "open": False,
                "streaming": False,
                "segments": 1,
            }
        for i in (0, 1):
            assert client.conversation_messages(guid(i)) == []
            r = client.request("GET", f"/_sim/v1/calls/{guid(i)}")
            assert r.status_code == 404
            validate("Error", r.json())
            error = r.json()["error"]
            assert error["code"] == "404-01"
            assert "only the most recent 3 ended calls are kept" in error["message"]
            assert "--keep-calls" in error["message"]


def test_an_unknown_guid_before_any_release_is_a_plain_404(sim: Simulator) -> None:
    r = call(sim, "GET", "/_sim/v1/calls/nobody")
    assert r.status_code == 404 and r.json()["error"]["message"] == "No call with guid nobody"


def test_messages_past_retention_are_an_empty_list_over_http() -> None:
    with Simulator(SimulatorConfig(seed=1), virtual=True) as sim, Client(simulator=sim) as c:
        serve(sim.gateway, 0, 1)
        assert len(c.conversation_messages(guid(0))) == 2
        assert isinstance(sim.clock, VirtualClock)
        sim.clock.advance(MESSAGE_RETENTION_S + 1)
        assert c.conversation_messages(guid(0)) == []


# ------------------------------------------------------------ transports and the server


def test_media_hub_keeps_open_sessions_and_the_most_recent_ended() -> None:
    with Simulator(SimulatorConfig(seed=1, keep_calls=5), virtual=True) as sim:
        hub = sim.app.state.media
        audio = StereoCall(np.ones(1600, np.int16), np.ones(1600, np.int16))

        def play(g: str, *, close: bool = True) -> Any:
            feeder = hub.open("twilio")
            for wire in twilio.encode(audio, guid=g):
                feeder.feed(wire.channel, wire.data)
            if close:
                feeder.close()
            return feeder

        live_guid = "CA" + "f" * 32  # a Call SID, as the Twilio decoder asks
        live = play(live_guid, close=False)
        for i in range(40):
            play(guid(i))
        assert len(hub.sessions) <= 5 + 1 and live_guid in hub.sessions
        assert [g for g in hub.sessions if g != live_guid] == [guid(i) for i in range(35, 40)]
        live.close()
        assert len(sim.gateway.ended) == 5


def test_idle_kinesis_streams_are_emptied_then_deleted() -> None:
    gw = Gateway(VirtualClock(), keep_audio_of=2, keep_calls=4)
    audio = StereoCall(np.ones(1600, np.int16), np.zeros(1600, np.int16))
    arns = [ARN.format(region="us-east-1", name=f"s{i}") for i in range(12)]
    arns.append(ARN.format(region="eu-west-1", name="x"))  # a store of its own
    for i, arn in enumerate(arns):
        contact = f"c0ffee00-0000-4000-8000-{i:012d}"
        for wire in kvs.encode(audio, guid=contact, stream_arn=arn, fragment_ms=100):
            gw.kvs_media.put(arn, wire)
        gw.kvs_media.end_stream(arn)
        assert gw.kvs_media.streams() <= 4 and len(gw.ended) <= 4
    assert [len(gw.kvs_media.stream(a)) for a in arns[-4:]] == [0, 0, 2, 2]
    assert arns[0] not in gw.kvs
    # A producer writing a deleted stream again starts it afresh.
    wire = next(
        iter(
            kvs.encode(
                audio,
                guid="c0ffee00-0000-4000-8000-999999999999",
                stream_arn=arns[0],
                fragment_ms=100,
            )
        )
    )
    assert gw.kvs_media.put(arns[0], wire).opened


ARN = "arn:aws:kinesisvideo:{region}:123456789012:stream/{name}/1700000000000"


def bye(call_id: str) -> bytes:
    return (
        f"BYE sip:srs@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@h>;tag=1\r\n"
        f"t: <sip:srs@h>;tag=2\r\ni: {call_id}\r\nCSeq: 3 BYE\r\nl: 0\r\n\r\n"
    ).encode()


def test_sip_answers_are_kept_for_retransmissions_only_32_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Simulator(SimulatorConfig(seed=1), virtual=True) as sim:
        server = SipServer(sim.app.state.media)
        now = [1000.0]
        monkeypatch.setattr("mgsim.transports.sip.time.monotonic", lambda: now[0])
        sent: list[bytes] = []

        async def exchange(data: bytes) -> None:
            await server._handle(data, sent.append)

        for i in range(200):  # one answered BYE a second
            asyncio.run(exchange(bye(f"call-{i}")))
            now[0] += 1.0
        assert server.answers_kept <= ANSWER_KEPT_S + 1
        counters = sim.state.counters
        asyncio.run(exchange(bye("call-199")))  # a retransmission within 32 s: same answer
        assert counters.get("media.siprec.retransmission") == 1 and sent[-1] == sent[-2]
        now[0] += ANSWER_KEPT_S
        asyncio.run(exchange(bye("call-199")))  # its transaction is over: handled anew
        assert counters.get("media.siprec.retransmission") == 1
        assert counters["media.siprec.error.no-dialog"] == 201 and server.answers_kept == 1


def test_webhook_sink_keeps_the_most_recent_and_counts_all() -> None:
    sink = WebhookSink(keep=5, drop_next=2)
    for i in range(12):
        sink.deliver_nowait({"externalConversationId": f"g{i}"})
    assert [b["externalConversationId"] for b in sink.bodies] == [f"g{i}" for i in range(7, 12)]
    assert len(sink.records) == 5 and sink.records[-1].guid == "g11"
    assert sink.counts == {"delivered": 10, "failed": 0, "dropped": 2}
    assert sink.offered == sum(sink.counts.values()) + sink.in_flight
    with pytest.raises(ConfigError, match="keep must be an integer >= 1"):
        WebhookSink(keep=0)


def test_removed_fault_rules_leave_no_counters() -> None:
    with Simulator(SimulatorConfig(seed=1), virtual=True) as sim:
        for i in range(50):  # a rule per call, removed when the call is done
            rule = sim.faults.add(
                FaultRule(endpoint="conversation-messages", guid=f"{1000 + i}", error="503-01")
            )
            r = call(sim, "GET", f"/conversation/v1/conversation/messages?externalId={1000 + i}")
            assert r.status_code == 503
            assert sim.state.counters[f"fault-rule:{rule.id}"] == 1
            sim.faults.remove(rule.id)
        sim.faults.add(FaultRule(endpoint="stop-streaming", error="503-01"))
        sim.faults.clear()
        assert not [k for k in sim.state.counters if k.startswith("fault-rule:")]
