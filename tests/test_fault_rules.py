"""Per-request fault rules: matching, effects, counts, seeds, the HTTP API and timeouts."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import pytest
from conftest import GUIDS, HEADERS, LiveServer, call, code, start_extra

from mgsim.client import AsyncClient, Client, RetryPolicy
from mgsim.clock import LoopClock, VirtualClock, virtual_time
from mgsim.contract import CODES, validate
from mgsim.errors import ConfigError, ConflictError, TransportError
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.server.faults import (
    MAX_RULES,
    FaultRequest,
    FaultRule,
    FaultRuleError,
    FaultRules,
)
from mgsim.simulator import Simulator

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
MESSAGES = "/conversation/v1/conversation/messages"
TWILIO_URL = "/mg-autotranscribe/v1/twilio-media-stream-url"
FAULTS = "/_sim/v1/faults"
SIPREC = GUIDS["siprec"]
OTHER_SIPREC = "0000000001-0000000002-0000000003-0000000004"


def start_body(namespace: str = "siprec", guid: str | None = None) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "guid": guid or GUIDS[namespace],
        "customerId": "cust-1",
        "agentId": "agent-7",
        **start_extra(namespace),
    }


def stop_body(namespace: str = "siprec", guid: str | None = None) -> dict[str, str]:
    return {"namespace": namespace, "guid": guid or GUIDS[namespace]}


def make_sim(seed: int = 42, **config: Any) -> Simulator:
    cfg = SimulatorConfig(seed=seed, spike_arrest_per_s=None, daily_quota=None, **config)
    return Simulator(cfg, virtual=True)


def streaming_call(sim: Simulator, namespace: str = "siprec", guid: str | None = None) -> None:
    sim.gateway.open_call(namespace, guid or GUIDS[namespace])
    assert call(sim, "POST", START, start_body(namespace, guid)).status_code == 200


# --- the rule itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "request_", "matches"),
    [
        (FaultRule(error="503-01"), FaultRequest("start-streaming", "siprec", "1"), True),
        (FaultRule(error="503-01"), FaultRequest("twilio-media-stream-url"), True),
        (
            FaultRule(endpoint="stop-streaming", error="503-01"),
            FaultRequest("start-streaming", "siprec", "1"),
            False,
        ),
        (
            FaultRule(endpoint="stop-streaming", namespace="twilio", error="503-01"),
            FaultRequest("stop-streaming", "siprec", "1"),
            False,
        ),
        (
            FaultRule(namespace="siprec", guid="1", error="503-01"),
            FaultRequest("stop-streaming", "siprec", "1"),
            True,
        ),
        (FaultRule(guid="1", error="503-01"), FaultRequest("stop-streaming", "siprec", "2"), False),
        (FaultRule(guid="1", error="503-01"), FaultRequest("stop-streaming"), False),
        (
            FaultRule(endpoint="conversation-messages", guid="77", latency_ms=5),
            FaultRequest("conversation-messages", None, "77"),
            True,
        ),
        # UUIDs compare case-insensitively, as the gateway keys its calls.
        (
            FaultRule(guid="0F8FAD5B-D9CB-469F-A165-70867728950E", error="503-01"),
            FaultRequest(
                "stop-streaming", "genesysaudiohook", "0f8fad5b-d9cb-469f-a165-70867728950e"
            ),
            True,
        ),
    ],
)
def test_matching_by_endpoint_namespace_and_guid(
    rule: FaultRule, request_: FaultRequest, matches: bool
) -> None:
    assert rule.matches(request_) is matches


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"endpoint": "stop", "error": "503-01"}, "endpoint"),
        ({"namespace": "sip", "error": "503-01"}, "namespace"),
        (
            {"endpoint": "twilio-media-stream-url", "namespace": "twilio", "latency_ms": 1},
            "namespace",
        ),
        ({"endpoint": "twilio-media-stream-url", "guid": "1", "latency_ms": 1}, "guid"),
        ({"guid": "", "error": "503-01"}, "guid"),
        # The guid must have a platform's form, the whole value: these match no call.
        ({"guid": "1234\n", "error": "503-01"}, "guid"),
        ({"guid": "CA" + "0" * 32 + "\n", "error": "503-01"}, "guid"),
        ({"guid": "call-1", "error": "503-01"}, "guid"),
        ({"namespace": "twilio", "guid": "1234", "error": "503-01"}, "guid"),
        ({"endpoint": "conversation-messages", "guid": "g-1", "error": "503-01"}, "guid"),
        ({"error": "400-201"}, "error"),
        ({"error": "999-99"}, "error"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"latency_ms": 5, "spread_ms": 2}, "spread_ms"),
        ({"distribution": "normal", "latency_ms": 5}, "spread_ms"),
        ({"distribution": "pareto", "spread_ms": 5}, "distribution"),
        ({"timeout": "forever"}, "timeout"),
        ({"timeout": "hang", "error": "503-01"}, "timeout"),
        ({"error": "503-01", "count": 0}, "count"),
        ({"error": "503-01", "count": True}, "count"),
        ({"error": "503-01", "probability": 0.0}, "probability"),
        ({"error": "503-01", "probability": 1.5}, "probability"),
        ({"error": "503-01", "name": "x" * 65}, "name"),
        ({}, ""),
    ],
)
def test_bad_rules_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(FaultRuleError) as exc:
        FaultRule(**kwargs)
    assert exc.value.field == field
    assert isinstance(exc.value, ConfigError)


@pytest.mark.parametrize(
    ("distribution", "latency_ms", "spread_ms", "low", "high", "mean"),
    [
        ("fixed", 120.0, 0.0, 120.0, 120.0, 120.0),
        ("uniform", 100.0, 50.0, 100.0, 150.0, 125.0),
        ("normal", 200.0, 20.0, 0.0, float("inf"), 200.0),
        ("exponential", 50.0, 100.0, 50.0, float("inf"), 150.0),
    ],
)
def test_latency_distributions(
    distribution: str, latency_ms: float, spread_ms: float, low: float, high: float, mean: float
) -> None:
    rule = FaultRule(
        latency_ms=latency_ms,
        distribution=distribution,  # type: ignore[arg-type]
        spread_ms=spread_ms,
    )

    def draws(seed: int) -> list[float]:
        rules = FaultRules((rule,), seed=seed)
        out = []
        for _ in range(2000):
            decision = rules.decide(FaultRequest("stop-streaming", "siprec", "1"))
            assert decision is not None and decision.error is None and decision.timeout is None
            out.append(decision.delay_s * 1000.0)
        return out

    first = draws(7)
    assert first == draws(7)  # seeded: the same draws again
    assert all(low <= d <= high for d in first)
    assert statistics.fmean(first) == pytest.approx(mean, rel=0.08)


def test_first_rule_that_applies_wins_and_a_failed_draw_falls_through() -> None:
    rules = FaultRules(seed=3)
    a = rules.add(FaultRule(guid="1", error="503-01"))
    b = rules.add(FaultRule(guid="2", error="500-201", probability=0.5))
    c = rules.add(FaultRule(error="429-01"))
    assert rules.decide(FaultRequest("stop-streaming", "siprec", "1")).error == "503-01"  # type: ignore[union-attr]
    seen = [rules.decide(FaultRequest("stop-streaming", "siprec", "2")) for _ in range(40)]
    errors = {d.error for d in seen if d is not None}
    assert errors == {"500-201", "429-01"}  # b's failed draws fall through to c
    assert (a.matched, a.applied) == (1, 1)
    assert b.matched == 40 and 0 < b.applied < 40
    assert c.applied == 40 - b.applied
    assert [r.id for r in rules] == ["r1", "r2", "r3"]


def test_count_and_probability_together() -> None:
    rules = FaultRules((FaultRule(error="503-01", probability=0.5, count=3),), seed=11)
    outcomes = [rules.decide(FaultRequest("start-streaming")) for _ in range(50)]
    rule = next(iter(rules))
    assert rule.applied == 3 and rule.expired and rule.remaining == 0
    assert sum(o is not None for o in outcomes) == 3
    assert 3 <= rule.matched < 50  # once expired it no longer matches


def test_rule_set_add_remove_clear_and_limit() -> None:
    rules = FaultRules()
    first = rules.add(FaultRule(error="503-01"))
    second = rules.add(FaultRule(latency_ms=10))
    rules.remove(first.id)
    assert [r.id for r in rules] == [second.id] and len(rules) == 1
    with pytest.raises(KeyError):
        rules.remove(first.id)
    rules.clear()
    assert len(rules) == 0
    assert rules.add(FaultRule(error="503-01")).id == "r3"  # ids are never reused
    for _ in range(MAX_RULES - 1):
        rules.add(FaultRule(error="503-01"))
    with pytest.raises(FaultRuleError, match="at most"):
        rules.add(FaultRule(error="503-01"))


# --- rules in the simulator -----------------------------------------------------------------


@pytest.mark.parametrize("error", ["503-01", "500-201", "429-01", "409-202", "504-01", "403-01"])
def test_error_rule_rejects_without_changing_state(error: str) -> None:
    with make_sim() as sim:
        streaming_call(sim)
        sim.faults.add(FaultRule(endpoint="stop-streaming", guid=SIPREC, error=error))
        r = call(sim, "POST", STOP, stop_body())
        assert code(r) == error and r.status_code == CODES[error].status
        assert "injected fault, rule r1" in r.json()["error"]["message"]
        assert sim.gateway.calls[SIPREC].streaming  # the stop did not happen


def test_rules_match_only_their_guid_endpoint_and_namespace() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        streaming_call(sim, "siprec", OTHER_SIPREC)
        streaming_call(sim, "twilio")
        sim.faults.add(FaultRule(endpoint="stop-streaming", guid=SIPREC, error="503-01"))
        sim.faults.add(FaultRule(endpoint="start-streaming", namespace="twilio", error="500-201"))
        assert code(call(sim, "POST", STOP, stop_body())) == "503-01"
        assert call(sim, "POST", STOP, stop_body("siprec", OTHER_SIPREC)).status_code == 200
        assert call(sim, "POST", STOP, stop_body("twilio")).status_code == 200
        assert code(call(sim, "POST", START, start_body("twilio"))) == "500-201"
        assert call(sim, "POST", START, start_body("siprec", OTHER_SIPREC)).status_code == 200
        assert call(sim, "GET", TWILIO_URL).status_code == 200
        assert [(r.matched, r.applied) for r in sim.faults] == [(1, 1), (1, 1)]


def test_messages_rule_matches_the_external_id() -> None:
    with make_sim() as sim:
        sim.faults.add(FaultRule(endpoint="conversation-messages", guid="41", error="503-01"))
        assert code(call(sim, "GET", MESSAGES + "?externalId=41")) == "503-01"
        assert call(sim, "GET", MESSAGES + "?externalId=42").status_code == 200


def test_count_expires_after_n_requests() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        rule = sim.faults.add(FaultRule(endpoint="stop-streaming", error="503-01", count=2))
        codes = [call(sim, "POST", STOP, stop_body()).status_code for _ in range(3)]
        assert codes == [503, 503, 200]
        assert (rule.matched, rule.applied, rule.remaining, rule.expired) == (2, 2, 0, True)
        assert sim.state.counters["fault-rule:r1"] == 2


def test_fixed_latency_delays_the_state_change() -> None:
    with make_sim() as sim:
        sim.gateway.open_call("siprec", SIPREC)
        sim.faults.add(FaultRule(endpoint="start-streaming", latency_ms=750))
        assert call(sim, "POST", START, start_body()).status_code == 200
        assert sim.gateway.calls[SIPREC].segments[0].started_at == pytest.approx(0.75)


def test_error_after_latency_waits_first() -> None:
    with make_sim() as sim:
        sim.faults.add(FaultRule(endpoint="stop-streaming", error="503-01", latency_ms=400))
        before = sim.clock.now()
        assert code(call(sim, "POST", STOP, stop_body())) == "503-01"
        assert sim.clock.now() - before == pytest.approx(0.4)


def seeded_codes(seed: int) -> list[int]:
    with make_sim(seed) as sim:
        sim.faults.add(FaultRule(endpoint="stop-streaming", error="503-01", probability=0.5))
        return [call(sim, "POST", STOP, stop_body()).status_code for _ in range(40)]


def test_seeded_probability_is_reproducible() -> None:
    first = seeded_codes(5)
    assert first == seeded_codes(5)
    assert first != seeded_codes(6)
    assert set(first) == {503, 400}  # 400-203: no call, so nothing else can happen
    assert 8 < first.count(503) < 32


def test_requests_no_rule_decides_meet_the_simulator_faults() -> None:
    with make_sim(faults=Faults(rate_503=1.0)) as sim:
        sim.gateway.open_call("siprec", SIPREC)
        sim.faults.add(FaultRule(endpoint="start-streaming", guid=SIPREC, latency_ms=10))
        assert call(sim, "POST", START, start_body()).status_code == 200  # the rule decided
        assert code(call(sim, "POST", STOP, stop_body())) == "503-01"  # the fallback
        r = call(sim, "POST", STOP, stop_body())
        assert "simulator faults" in r.json()["error"]["message"]
        assert sim.gateway.calls[SIPREC].streaming


def test_rules_from_the_config() -> None:
    rules = [FaultRule(endpoint="stop-streaming", error="503-01", count=1, name="first stop")]
    with make_sim(fault_rules=rules) as sim:
        assert isinstance(sim.config.fault_rules, tuple)
        assert code(call(sim, "POST", STOP, stop_body())) == "503-01"
        assert code(call(sim, "POST", STOP, stop_body())) == "400-203"
        assert [r.rule.name for r in sim.faults] == ["first stop"]
    with pytest.raises(ConfigError, match="fault_rules"):
        SimulatorConfig(fault_rules=({"error": "503-01"},))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hang_cap_s"):
        SimulatorConfig(hang_cap_s=0)


# --- the HTTP API ---------------------------------------------------------------------------


def test_http_round_trip() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        rule = {"endpoint": "stop-streaming", "guid": SIPREC, "error": "503-01", "count": 1}
        r = call(sim, "POST", FAULTS, rule)
        assert r.status_code == 201
        validate("FaultRule", r.json())
        assert r.json() == {
            "id": "r1",
            **rule,
            "latencyMs": 0.0,
            "distribution": "fixed",
            "spreadMs": 0.0,
            "probability": 1.0,
            "matched": 0,
            "applied": 0,
            "remaining": 1,
            "expired": False,
        }
        latency = {"latencyMs": 20, "distribution": "exponential", "spreadMs": 5}
        assert call(sim, "POST", FAULTS, latency).json()["id"] == "r2"
        assert code(call(sim, "POST", STOP, stop_body())) == "503-01"
        listing = call(sim, "GET", FAULTS)
        validate("FaultRuleList", listing.json())
        first, second = listing.json()["rules"]
        assert (first["matched"], first["applied"], first["expired"]) == (1, 1, True)
        assert "remaining" not in second and second["applied"] == 0
        assert listing.json()["fallback"]["rate503"] == 0.0
        assert listing.json()["hangCapS"] == 30.0
        assert call(sim, "DELETE", FAULTS + "/r1").status_code == 204
        assert code(call(sim, "DELETE", FAULTS + "/r1")) == "404-01"
        assert [r["id"] for r in call(sim, "GET", FAULTS).json()["rules"]] == ["r2"]
        assert call(sim, "DELETE", FAULTS).status_code == 204
        assert call(sim, "GET", FAULTS).json()["rules"] == []
        assert call(sim, "POST", STOP, stop_body()).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tmeout": "hang"}, "tmeout"),
        ({"endpoint": "stop", "error": "503-01"}, "endpoint"),
        ({"error": "400-01"}, "error"),
        ({"latencyMs": -5}, "latencyMs"),
        ({"latencyMs": "slow"}, "latencyMs"),
        ({"count": 0, "error": "503-01"}, "count"),
        ({"probability": 1.5, "error": "503-01"}, "probability"),
        ({"probability": 0, "error": "503-01"}, "probability"),
        ({"error": "503-01", "timeout": "hang"}, "timeout"),
        ({"distribution": "normal", "latencyMs": 10}, "spreadMs"),
        ({"latencyMs": 10, "spreadMs": 3}, "spreadMs"),
        ({"namespace": "sip", "error": "503-01"}, "namespace"),
        ({"endpoint": "twilio-media-stream-url", "guid": "x", "error": "503-01"}, "guid"),
        ({"endpoint": "stop-streaming", "guid": "1234\n", "error": "503-01"}, "guid"),
        (
            {
                "endpoint": "stop-streaming",
                "namespace": "siprec",
                "guid": "CA" + "0" * 32,
                "error": "503-01",
            },
            "guid",
        ),
        ({"endpoint": "stop-streaming"}, "body"),
    ],
)
def test_bad_rules_over_http_are_400_201_naming_the_field(body: dict[str, Any], field: str) -> None:
    with make_sim() as sim:
        r = call(sim, "POST", FAULTS, body)
        assert code(r) == "400-201"
        assert r.json()["error"]["message"].startswith(field + ":")
        assert len(sim.faults) == 0


@pytest.mark.parametrize(("content", "expected"), [(b"{nope", "400-01"), (b"[1]", "400-01")])
def test_malformed_fault_bodies_are_400_01(content: bytes, expected: str) -> None:
    with make_sim() as sim:
        assert code(call(sim, "POST", FAULTS, content=content)) == expected


def test_fault_api_needs_credentials_and_has_a_limit() -> None:
    with make_sim() as sim:
        assert code(call(sim, "GET", FAULTS, headers={})) == "401-01"
        wrong = {**HEADERS, "asapp-api-secret": "nope"}
        assert code(call(sim, "POST", FAULTS, {"error": "503-01"}, headers=wrong)) == "403-01"
        assert code(call(sim, "DELETE", FAULTS, headers={})) == "401-01"
        for _ in range(MAX_RULES):
            sim.faults.add(FaultRule(latency_ms=1))
        assert code(call(sim, "POST", FAULTS, {"error": "503-01"})) == "409-01"


# --- timeouts -------------------------------------------------------------------------------


def test_hang_with_a_sync_client_on_a_manual_virtual_clock() -> None:
    with make_sim() as sim:
        assert isinstance(sim.clock, VirtualClock)
        streaming_call(sim)
        rule = sim.faults.add(FaultRule(endpoint="stop-streaming", timeout="hang"))
        with Client(simulator=sim, timeout=0.5) as client:
            before = sim.clock.now()
            with pytest.raises(TransportError, match="no answer after 4 attempt"):
                client.stop_streaming("siprec", SIPREC)
            # four attempts of 0.5 s each, and the waits 0.25 + 0.5 + 1.0 between them
            assert sim.clock.now() - before == pytest.approx(3.75)
        assert rule.applied == 4
        assert sim.gateway.calls[SIPREC].streaming  # a hung request is never processed
        assert sim.state.counters["client-gone"] == 4


def test_hang_past_the_cap_is_answered_504() -> None:
    with make_sim(hang_cap_s=5.0) as sim:
        streaming_call(sim)
        sim.faults.add(FaultRule(endpoint="stop-streaming", timeout="hang", count=1))
        with Client(simulator=sim, timeout=60.0) as client:
            before = sim.clock.now()
            result = client.stop_streaming("siprec", SIPREC)  # 504, retried, then stopped
            assert sim.clock.now() - before == pytest.approx(5.25)
        assert result.customer.summary is not None
        first, second = client.journal.entries[-2:]
        assert (first.status, first.code, second.status) == (504, "504-01", 200)
        assert not sim.gateway.calls[SIPREC].streaming


def test_lost_response_then_the_confirmed_stop_on_a_manual_clock() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        sim.faults.add(
            FaultRule(endpoint="stop-streaming", guid=SIPREC, timeout="lost-response", count=1)
        )
        with Client(simulator=sim, timeout=0.5) as client:
            confirmation = client.stop_streaming_confirmed("siprec", SIPREC, within_s=5.0)
        assert confirmation.confirmed and confirmation.reason == "already-stopped"
        assert confirmation.attempts == 2
        assert confirmation.elapsed_ms == pytest.approx(750.0)
        assert not sim.gateway.calls[SIPREC].streaming


def test_lost_response_makes_a_plain_retry_meet_409_201() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        sim.faults.add(FaultRule(endpoint="stop-streaming", timeout="lost-response", count=1))
        with Client(simulator=sim, timeout=0.5) as client, pytest.raises(ConflictError) as exc:
            client.stop_streaming("siprec", SIPREC)
        assert exc.value.code == "409-201"
        assert not sim.gateway.calls[SIPREC].streaming


async def _async_timeouts(timeout_kind: str) -> tuple[Any, Simulator, float]:
    with virtual_time():
        clock = LoopClock()
        sim = Simulator(SimulatorConfig(seed=9, spike_arrest_per_s=None), clock=clock)
        sim.gateway.open_call("siprec", SIPREC)
        sim.gateway.start("siprec", SIPREC, _params())
        sim.faults.add(FaultRule(endpoint="stop-streaming", timeout=timeout_kind, count=1))  # type: ignore[arg-type]
        async with AsyncClient(simulator=sim, timeout=0.5, retry=RetryPolicy()) as client:
            began = clock.now()
            outcome = await client.stop_streaming_confirmed("siprec", SIPREC, within_s=5.0)
            return outcome, sim, clock.now() - began


def _params() -> Any:
    from mgsim.gateway import StartParams

    return StartParams("cust-1", "agent-7")


def test_async_client_lost_response_is_confirmed_in_virtual_time() -> None:
    began = time.perf_counter()
    outcome, sim, elapsed = asyncio.run(_async_timeouts("lost-response"))
    assert time.perf_counter() - began < 5.0  # virtual: no real waiting
    assert outcome.confirmed and outcome.reason == "already-stopped" and outcome.attempts == 2
    assert elapsed == pytest.approx(0.75, abs=0.01)  # 0.5 s timeout + 0.25 s before the retry
    assert not sim.gateway.calls[SIPREC].streaming
    assert sim.state.counters["client-gone"] == 1


def test_async_client_hang_once_then_stopped_in_virtual_time() -> None:
    outcome, sim, elapsed = asyncio.run(_async_timeouts("hang"))
    assert outcome.confirmed and outcome.reason == "stopped" and outcome.attempts == 2
    assert elapsed == pytest.approx(0.75, abs=0.01)
    assert not sim.gateway.calls[SIPREC].streaming


def test_slow_answer_past_the_client_timeout_is_a_timeout() -> None:
    with make_sim() as sim:
        streaming_call(sim)
        sim.faults.add(FaultRule(endpoint="stop-streaming", latency_ms=2000, count=1))
        client = Client(simulator=sim, timeout=1.0, retry=RetryPolicy.off())
        with client, pytest.raises(TransportError):
            client.stop_streaming("siprec", SIPREC)
        # like a real gateway, the slow stop still took effect after the client left
        assert not sim.gateway.calls[SIPREC].streaming


def test_hang_on_a_real_server_ends_when_the_client_disconnects(live_server: LiveServer) -> None:
    sim = live_server.sim
    sim.faults.add(FaultRule(endpoint="twilio-media-stream-url", timeout="hang"))
    began = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(live_server.url + TWILIO_URL, headers=HEADERS, timeout=0.3)
    deadline = time.monotonic() + 5
    while sim.state.counters.get("client-gone", 0) < 1:
        assert time.monotonic() < deadline, "the server did not notice the disconnect"
        time.sleep(0.02)
    assert time.monotonic() - began < 5  # well before the 30 s cap
    assert next(iter(sim.faults)).applied == 1


async def _slow_stop_with_async_client() -> tuple[Any, Any, Simulator]:
    with virtual_time():
        clock = LoopClock()
        sim = Simulator(SimulatorConfig(seed=9, spike_arrest_per_s=None), clock=clock)
        sim.gateway.open_call("siprec", SIPREC)
        sim.gateway.start("siprec", SIPREC, _params())
        sim.faults.add(FaultRule(endpoint="stop-streaming", latency_ms=2000, count=1))
        async with AsyncClient(simulator=sim, timeout=0.5, retry=RetryPolicy()) as client:
            outcome = await client.stop_streaming_confirmed("siprec", SIPREC, within_s=5.0)
            return outcome, client.journal.entries, sim


def test_async_client_gives_up_on_time_while_the_slow_stop_goes_on() -> None:
    outcome, entries, sim = asyncio.run(_slow_stop_with_async_client())
    # The first attempt times out at 0.5 s; the stop is still being processed (409-202)
    # until it takes effect at 2 s, after which a retry meets 409-201.
    assert entries[0].status is None and entries[0].latency_ms == pytest.approx(500, abs=1)
    assert "409-202" in [e.code for e in entries]
    assert outcome.confirmed and outcome.reason == "already-stopped"
    assert outcome.elapsed_ms >= 2000
    assert not sim.gateway.calls[SIPREC].streaming
    assert sim.state.counters["client-gone"] == 1


@pytest.mark.parametrize("body", [b"[" * 60_000, b"{not json", b"\xff\xfe"])
def test_rules_peek_at_any_body_without_failing(body: bytes) -> None:
    # A rule for another namespace must look at the body to decide; a body nobody can parse
    # still gets its 400 from the pipeline, never a 500 from the peek.
    sim = make_sim(fault_rules=(FaultRule(namespace="twilio", error="503-01"),))
    r = call(sim, "POST", START, content=body)
    assert r.status_code == 400 and code(r) == "400-01"
    assert sim.faults.get("r1").matched == 0
