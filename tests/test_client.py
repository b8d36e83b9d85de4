"""The httpx clients: resolution, retries per ASAPP's advice, errors, journal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from conftest import GUIDS

from mgsim.client import AsyncClient, Client, RetryPolicy
from mgsim.clock import VirtualClock
from mgsim.contract.models import (
    AmazonConnectParams,
    AutotranscribeParams,
    SiprecParams,
    TwilioParams,
)
from mgsim.errors import (
    ApiError,
    BadRequestError,
    ConfigError,
    ConflictError,
    RateLimitError,
    ServerError,
    TransportError,
)
from mgsim.journal import Journal
from mgsim.simulator import Simulator

G = GUIDS["siprec"]


def envelope(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"requestId": "rid-1", "code": code, "message": "m"}}
    )


def scripted(
    responses: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def mock_client(
    responses: list[httpx.Response | Exception], **kwargs: object
) -> tuple[Client, list[httpx.Request], VirtualClock]:
    transport, seen = scripted(responses)
    clock = VirtualClock()
    client = Client(
        "https://gateway.example",
        api_id="id-123",
        api_secret="secret-456",
        transport=transport,
        clock=clock,
        **kwargs,
    )  # type: ignore[arg-type]
    return client, seen, clock


def ok_stop() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "isOk": True,
            "autotranscribeResponse": {
                "customer": {"streamId": "a", "status": {"code": 1000, "description": "OK"}},
                "agent": {"streamId": "b", "status": {"code": 1000, "description": "OK"}},
            },
        },
    )


def test_429_is_retried_after_1_2_4_seconds() -> None:
    client, seen, clock = mock_client([envelope(429, "429-01") for _ in range(3)] + [ok_stop()])
    assert client.stop_streaming("siprec", G).is_ok
    assert len(seen) == 4
    assert clock.now() == pytest.approx(7.0)
    assert [e.attempt for e in client.journal] == [1, 2, 3, 4]


def test_5xx_is_retried_after_250_500_1000_ms_then_raises() -> None:
    client, seen, clock = mock_client([envelope(503, "503-01")] * 4)
    with pytest.raises(ServerError) as exc:
        client.stop_streaming("siprec", G)
    assert len(seen) == 4 and clock.now() == pytest.approx(1.75)
    assert (exc.value.status, exc.value.code, exc.value.request_id) == (503, "503-01", "rid-1")


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "400-203", BadRequestError),
        (409, "409-201", ConflictError),
        (404, "404-01", ApiError),
    ],
)
def test_other_4xx_are_never_retried(status: int, code: str, cls: type[ApiError]) -> None:
    client, seen, clock = mock_client([envelope(status, code)])
    with pytest.raises(cls) as exc:
        client.stop_streaming("siprec", G)
    assert len(seen) == 1 and clock.now() == 0.0 and exc.value.code == code


def test_retries_can_be_switched_off() -> None:
    client, seen, _ = mock_client([envelope(429, "429-01")], retry=RetryPolicy.off())
    with pytest.raises(RateLimitError):
        client.stop_streaming("siprec", G)
    assert len(seen) == 1


def test_no_answer_is_retried_then_raises_transport_error() -> None:
    client, seen, clock = mock_client([httpx.ConnectError("refused")] * 4)
    with pytest.raises(TransportError):
        client.stop_streaming("siprec", G)
    assert len(seen) == 4 and clock.now() == pytest.approx(1.75)
    assert client.journal.entries[-1].status is None and "ConnectError" in str(
        client.journal.entries[-1].error
    )


def test_requests_carry_credentials_and_typed_params() -> None:
    client, seen, _ = mock_client([ok_stop() for _ in range(3)])
    client.start_streaming(
        "siprec",
        G,
        "c",
        "a",
        params=SiprecParams("AGENT_FIRST"),
        autotranscribe=AutotranscribeParams(redaction_output="unredacted"),
    )
    client.start_streaming(
        "twilio", GUIDS["twilio"], "c", "a", params=TwilioParams("agent", "customer")
    )
    client.start_streaming(
        "amazonconnect",
        GUIDS["amazonconnect"],
        "c",
        "a",
        params=AmazonConnectParams("arn:x", "FRAGMENT_NUMBER", "42"),
    )
    first = json.loads(seen[0].content)
    assert seen[0].headers["asapp-api-id"] == "id-123"
    assert first["siprecParams"] == {"mediaLineOrder": "AGENT_FIRST"}
    assert first["autotranscribeParams"] == {"redactionOutput": "unredacted"}
    assert json.loads(seen[1].content)["twilioParams"]["trackMap"] == {
        "inbound": "agent",
        "outbound": "customer",
    }
    assert json.loads(seen[2].content)["amazonConnectParams"]["afterFragmentNumber"] == "42"


def test_journal_masks_secrets_and_streams_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    token_url = {"streamingUrl": "wss://h/mg-twilio-autotranscribe/twilio-media/eyJa.eyJb.sig"}
    client, _, _ = mock_client(
        [httpx.Response(200, json=token_url), envelope(400, "400-201")],
        journal=Journal(path),
    )
    assert client.twilio_media_stream_url().endswith("eyJa.eyJb.sig")  # the caller gets it whole
    with pytest.raises(BadRequestError):
        client.start_streaming("siprec", G, "secret-456", "id-123")
    text = path.read_text()
    frame = client.journal.to_dataframe()
    for secret in ("secret-456", "id-123", "eyJa.eyJb.sig"):
        assert secret not in text
        assert secret not in frame.to_string()
    rows = Journal.read_jsonl(path)
    assert [r["status"] for r in rows] == [200, 400]
    assert rows[1]["code"] == "400-201" and rows[1]["request"]["customerId"] == "***"
    assert list(frame.columns[:6]) == ["seq", "wall", "method", "endpoint", "namespace", "guid"]


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"seq": 1}\n{"seq": 2, "sta')
    assert Journal.read_jsonl(path) == [{"seq": 1}]


def test_embedded_simulator_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MGSIM_BASE_URL", raising=False)
    with Client() as client:
        assert client.embedded
        client.open_call("siprec", G)
        assert client.start_streaming("siprec", G, "c", "a").customer.status_code == 1000
        with pytest.raises(ConflictError):
            client.start_streaming("siprec", G, "c", "a")
        summary = client.stop_streaming("siprec", G).customer.summary
        assert summary is not None and summary.total_audio_bytes == 0
        assert client.conversation_messages(G) == []
        client.hang_up(G)
        assert client.simulator is not None
        client.simulator.close()


def test_base_url_from_environment_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGSIM_BASE_URL", "https://api.sandbox.asapp.com")
    monkeypatch.delenv("ASAPP_API_ID", raising=False)
    monkeypatch.delenv("ASAPP_API_SECRET", raising=False)
    with pytest.raises(ConfigError, match="ASAPP_API_ID"):
        Client()
    monkeypatch.setenv("ASAPP_API_ID", "env-id")
    monkeypatch.setenv("ASAPP_API_SECRET", "env-secret")
    with Client() as client:
        assert not client.embedded and client.base_url == "https://api.sandbox.asapp.com"
        assert "env-secret" in client.journal.secrets
    # An explicit simulator wins over the environment; both explicit is the only conflict.
    with Simulator(virtual=True) as sim:
        with Client(simulator=sim) as client:
            assert client.embedded
        with pytest.raises(ConfigError, match="not both"):
            Client("http://127.0.0.1:8080", simulator=sim)


def test_loopback_base_url_falls_back_to_local_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASAPP_API_ID", raising=False)
    monkeypatch.delenv("ASAPP_API_SECRET", raising=False)
    with Client("http://127.0.0.1:9") as client:
        assert client._headers["asapp-api-id"] == "mgsim-local"


def test_async_client_against_embedded_simulator() -> None:
    async def scenario() -> tuple[int, int]:
        sim = Simulator(virtual=True, seed=5)
        async with AsyncClient(simulator=sim) as client:
            await client.open_call("twilio", GUIDS["twilio"])
            started = await client.start_streaming("twilio", GUIDS["twilio"], "c", "a")
            stopped = await client.stop_streaming("twilio", GUIDS["twilio"])
            assert stopped.agent.stream_id == started.agent.stream_id
            assert (await client.twilio_media_stream_url()).startswith("ws://")
            with pytest.raises(ConflictError):
                await client.stop_streaming("twilio", GUIDS["twilio"])
            return started.customer.status_code, len(client.journal)

    assert asyncio.run(scenario()) == (1000, 5)


def test_async_client_retries_on_the_virtual_clock() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return envelope(429, "429-01") if len(calls) < 3 else ok_stop()

    async def scenario() -> float:
        clock = VirtualClock()
        async with AsyncClient(
            "https://gw.example",
            api_id="i",
            api_secret="s",
            transport=httpx.MockTransport(handler),
            clock=clock,
        ) as client:
            await client.stop_streaming("siprec", G)
        return clock.now()

    assert asyncio.run(scenario()) == pytest.approx(3.0)


def test_confirmed_stop_retries_until_the_gateway_confirms() -> None:
    client, seen, clock = mock_client(
        [envelope(503, "503-01"), httpx.ConnectError("reset"), envelope(429, "429-01"), ok_stop()]
    )
    outcome = client.stop_streaming_confirmed("siprec", G, within_s=5.0)
    assert len(seen) == 4
    assert outcome.confirmed and outcome.reason == "stopped" and outcome.attempts == 4
    assert outcome.result is not None and outcome.result.is_ok
    assert clock.now() == pytest.approx(0.25 + 0.5 + 4.0)  # 5xx, no answer, then 429's third wait


def test_confirmed_stop_counts_409_201_on_a_retry_as_confirmed() -> None:
    client, _, _ = mock_client([envelope(503, "503-01"), envelope(409, "409-201")])
    outcome = client.stop_streaming_confirmed("siprec", G)
    assert outcome.confirmed and outcome.reason == "already-stopped" and outcome.attempts == 2


def test_confirmed_stop_fails_closed_when_time_runs_out() -> None:
    client, seen, clock = mock_client([envelope(503, "503-01") for _ in range(10)])
    outcome = client.stop_streaming_confirmed("siprec", G, within_s=1.0)
    assert not outcome.confirmed and "not confirmed within 1000 ms" in outcome.reason
    assert len(seen) == 3 and clock.now() == pytest.approx(0.75)  # a third wait would pass 1 s


def test_confirmed_stop_does_not_retry_a_rejection() -> None:
    client, seen, _ = mock_client([envelope(400, "400-203")])
    outcome = client.stop_streaming_confirmed("siprec", G)
    assert not outcome.confirmed and outcome.reason == "rejected 400-203" and len(seen) == 1


def test_confirmed_stop_against_a_flaky_simulator() -> None:
    from mgsim.server.config import Faults, SimulatorConfig

    config = SimulatorConfig(seed=11, faults=Faults(rate_503=0.3, latency_ms=200))
    with Simulator(config, virtual=True) as sim, Client(simulator=sim) as client:
        confirmed = 0
        for i in range(30):
            guid = f"{i + 1}-000"
            sim.gateway.open_call("siprec", guid)
            started = False
            while not started:  # start may fail on an injected 503 after its own retries
                try:
                    client.start_streaming("siprec", guid, "c", "a")
                    started = True
                except ServerError:
                    pass
            outcome = client.stop_streaming_confirmed("siprec", guid, within_s=3.0)
            assert outcome.confirmed == (not sim.gateway.calls[guid].streaming)
            confirmed += outcome.confirmed
        assert confirmed == 30
