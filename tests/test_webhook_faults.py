"""Webhook faults: drops (seeded rate, next N) and delays, every body accounted for."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from mgsim.clock import VirtualClock
from mgsim.errors import ConfigError
from mgsim.gateway import StartParams
from mgsim.media import twilio
from mgsim.server.config import SimulatorConfig
from mgsim.server.webhooks import WebhookFaults, WebhookSender, WebhookSink
from mgsim.sim.call import load_sample
from mgsim.sim.play import play
from mgsim.simulator import Simulator
from mgsim.speech.engine import ScriptEngine

GUID = "CA" + "3f" * 16
URL = "https://hooks.example.test/transcripts"


def body(i: int) -> dict[str, Any]:
    return {
        "type": "transcript",
        "externalConversationId": GUID,
        "sender": {"externalId": "cust-7", "role": "customer"},
        "autotranscribeResponse": {"message": "transcript", "start": 1000 * i, "end": 800},
    }


def accounted(target: WebhookSink | WebhookSender) -> bool:
    return target.offered == sum(target.counts.values()) + target.in_flight


def make_sink(**kw: Any) -> WebhookSink:
    return WebhookSink(clock=VirtualClock(), **kw)


def make_sender(seen: list[httpx.Request], **kw: Any) -> WebhookSender:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return WebhookSender(URL, client=client, clock=VirtualClock(), **kw)


@pytest.mark.parametrize("kind", ["sink", "sender"])
def test_drop_next_drops_exactly_the_next_n(kind: str) -> None:
    seen: list[httpx.Request] = []
    target = make_sink(drop_next=2) if kind == "sink" else make_sender(seen, drop_next=2)
    records = asyncio.run(_deliver_all(target, 5))
    assert [r.outcome for r in records] == ["dropped"] * 2 + ["delivered"] * 3
    assert records[0].error == "dropped by fault injection (drop_next)"
    assert [r.start for r in records if r.outcome == "delivered"] == [2000, 3000, 4000]
    target.drop_next(1)
    assert target.drops_pending == 1
    assert asyncio.run(target.deliver(body(9))).outcome == "dropped"
    assert target.counts == {"delivered": 3, "failed": 0, "dropped": 3}
    assert accounted(target) and target.offered == 6
    if kind == "sender":
        assert len(seen) == 3  # a dropped body is never sent
    else:
        assert len(target.bodies) == 3  # type: ignore[union-attr]


async def _deliver_all(target: WebhookSink | WebhookSender, n: int) -> list[Any]:
    return [await target.deliver(body(i)) for i in range(n)]


@pytest.mark.parametrize("kind", ["sink", "sender"])
def test_seeded_drop_rate_is_reproducible_and_accounted(kind: str) -> None:
    def outcomes(seed: int) -> list[str]:
        target = (
            make_sink(drop_rate=0.4, seed=seed)
            if kind == "sink"
            else make_sender([], drop_rate=0.4, seed=seed)
        )
        records = asyncio.run(_deliver_all(target, 60))
        assert accounted(target) and target.in_flight == 0
        assert all(
            r.error == "dropped by fault injection (drop_rate)"
            for r in records
            if r.outcome == "dropped"
        )
        return [r.outcome for r in records]

    first = outcomes(3)
    assert first == outcomes(3)
    assert first != outcomes(4)
    assert 10 < first.count("dropped") < 40


def test_sink_and_sender_draw_the_same_faults_for_the_same_seed() -> None:
    sink = make_sink(drop_rate=0.5, delay_ms=(10.0, 90.0), seed=8)
    sender = make_sender([], drop_rate=0.5, delay_ms=(10.0, 90.0), seed=8)
    a = asyncio.run(_deliver_all(sink, 20))
    b = asyncio.run(_deliver_all(sender, 20))
    assert [(r.outcome, r.delay_ms) for r in a] == [(r.outcome, r.delay_ms) for r in b]


@pytest.mark.parametrize("kind", ["sink", "sender"])
def test_delay_waits_on_the_clock_and_is_recorded(kind: str) -> None:
    target = make_sink(delay_ms=300.0) if kind == "sink" else make_sender([], delay_ms=300.0)
    record = asyncio.run(target.deliver(body(0)))
    assert record.outcome == "delivered" and record.delay_ms == 300.0
    assert target._clock.now() == pytest.approx(0.3)


def test_sink_nowait_with_a_delay_stores_later_and_stays_accounted() -> None:
    sink = make_sink(delay_ms=200.0)

    async def run() -> None:
        assert sink.deliver_nowait(body(0)) is None  # deferred
        assert sink.in_flight == 1 and sink.bodies == [] and accounted(sink)
        while sink.in_flight:
            await asyncio.sleep(0)
        assert len(sink.bodies) == 1 and sink.records[0].delay_ms == 200.0

    asyncio.run(run())
    assert accounted(sink) and sink.counts["delivered"] == 1
    # Without a running loop the sink sleeps on its clock and stores at once.
    record = sink.deliver_nowait(body(1))
    assert record is not None and record.outcome == "delivered"
    assert sink._clock.now() == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"drop_rate": 1.5}, "drop_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"drop_next": -1}, "drop_next"),
        ({"drop_next": 1.5}, "drop_next"),
        ({"delay_ms": -1.0}, "delay_ms"),
        ({"delay_ms": (50.0, 10.0)}, "delay_ms"),
    ],
)
def test_bad_webhook_faults_raise_config_error(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WebhookFaults(**kw)
    with pytest.raises(ConfigError, match=message):
        WebhookSink(**kw)


def test_drop_next_rejects_a_negative_count() -> None:
    with pytest.raises(ConfigError, match="drop_next"):
        make_sink().drop_next(-2)


def test_simulator_wires_webhook_faults_and_every_transcript_is_accounted() -> None:
    faults = WebhookFaults(drop_next=1, drop_rate=0.3)
    sim = Simulator(SimulatorConfig(seed=4, webhook_faults=faults), clock=VirtualClock())
    sink = sim.webhooks
    assert isinstance(sink, WebhookSink) and sink.drop_rate == 0.3
    call = load_sample("card_payment").truncated(12000)
    sim.gateway.transcription.attach(GUID, ScriptEngine(call.words))
    play(
        sim.gateway,
        "twilio",
        twilio.encode(call.audio, guid=GUID),
        {
            500.0: lambda: sim.gateway.start("twilio", GUID, StartParams("c1", "a1")),
            11000.0: lambda: sim.gateway.stop("twilio", GUID),
        },
    )
    transcripts = len(sim.gateway.messages[GUID])
    assert transcripts >= 3
    # Every transcript the gateway produced was delivered or dropped by injection.
    assert sink.offered == transcripts and accounted(sink) and sink.in_flight == 0
    assert sink.records[0].outcome == "dropped"
    assert sink.counts["delivered"] == len(sink.bodies) > 0
    assert sink.counts["dropped"] >= 1 and sink.counts["failed"] == 0
    sim.close()


def test_simulator_passes_webhook_faults_to_the_sender() -> None:
    config = SimulatorConfig(
        seed=1, webhook_url=URL, webhook_faults=WebhookFaults(drop_next=2, delay_ms=(5.0, 10.0))
    )
    with Simulator(config, virtual=True) as sim:
        assert isinstance(sim.webhooks, WebhookSender)
        assert sim.webhooks.drops_pending == 2 and sim.webhooks.delay_range_ms == (5.0, 10.0)
