from __future__ import annotations

import asyncio
import doctest
import hmac
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mgsim.clock import VirtualClock
from mgsim.errors import ConfigError
from mgsim.server import webhooks as webhooks_module
from mgsim.server.webhooks import DEFAULT_SECRET_HEADER, WebhookSender, WebhookSink

SECRET = "s3cr3t-Token-9f2c"
URL = "https://hooks.example.test/asapp/transcripts"


def body(i: int = 0, guid: str = "CA" + "3f" * 16) -> dict[str, Any]:
    return {
        "type": "transcript",
        "externalConversationId": guid,
        "streamId": "stream-1",
        "sender": {"externalId": "cust-7", "role": "customer"},
        "autotranscribeResponse": {
            "message": "transcript",
            "start": 1000 * i,
            "end": 1000 * i + 800,
            "utterance": [{"text": f"utterance {i}"}],
        },
    }


@dataclass
class Receiver:
    """What a mock or real receiver saw."""

    status: int = 200
    raise_exc: Exception | None = None
    seen: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.raise_exc is not None:
            raise self.raise_exc
        return httpx.Response(self.status)


def sender_for(receiver: Receiver, **kw: Any) -> WebhookSender:
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver.handler))
    return WebhookSender(URL, secret=SECRET, client=client, **kw)


async def _send(sender: WebhookSender, bodies: list[dict[str, Any]]) -> list[Any]:
    records = await sender.deliver_all(bodies)
    if sender._client is not None and not sender._owns_client:
        await sender._client.aclose()
    await sender.aclose()
    return records


def send(sender: WebhookSender, bodies: list[dict[str, Any]]) -> list[Any]:
    return asyncio.run(_send(sender, bodies))


def assert_no_secret(sender: WebhookSender, caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in repr(sender)
    assert all(SECRET not in repr(r) for r in sender.records)
    assert SECRET not in caplog.text


def test_delivers_json_with_the_secret_header() -> None:
    receiver = Receiver()
    sender = sender_for(receiver)
    records = send(sender, [body(0), body(1)])
    assert [r.outcome for r in records] == ["delivered", "delivered"]
    assert [r.status for r in records] == [200, 200]
    assert [r.seq for r in records] == [0, 1]
    assert [r.start for r in records] == [0, 1000]
    assert {r.role for r in records} == {"customer"} and records[0].guid == "CA" + "3f" * 16
    assert len(receiver.seen) == 2
    request = receiver.seen[0]
    assert request.method == "POST" and str(request.url) == URL
    assert request.headers[DEFAULT_SECRET_HEADER] == SECRET
    assert request.headers["content-type"] == "application/json"
    assert httpx.Response(200, content=request.content).json() == body(0)
    assert sender.counts == {"delivered": 2, "failed": 0, "dropped": 0}


@pytest.mark.parametrize("status", [400, 401, 404, 500, 503, 302])
def test_an_error_status_fails_once_without_retry_or_raise(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(status=status)
    sender = sender_for(receiver)
    with caplog.at_level(logging.WARNING, logger="mgsim.webhooks"):
        (record,) = send(sender, [body()])
    assert record.outcome == "failed" and record.status == status and record.error is None
    assert len(receiver.seen) == 1  # never retried
    assert "not retried" in caplog.text and f"status {status}" in caplog.text
    assert_no_secret(sender, caplog)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        RuntimeError(f"receiver echoed {SECRET} back"),
    ],
)
def test_no_answer_fails_without_raising_or_leaking(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = Receiver(raise_exc=exc)
    sender = sender_for(receiver)
    with caplog.at_level(logging.WARNING, logger="mgsim.webhooks"):
        (record,) = send(sender, [body()])
    assert record.outcome == "failed" and record.status is None
    assert record.error is not None and record.error.startswith(type(exc).__name__)
    assert len(receiver.seen) == 1
    assert_no_secret(sender, caplog)


def test_drop_rate_one_sends_nothing() -> None:
    receiver = Receiver()
    sender = sender_for(receiver, drop_rate=1.0)
    records = send(sender, [body(i) for i in range(5)])
    assert {r.outcome for r in records} == {"dropped"} and receiver.seen == []
    assert sender.counts == {"delivered": 0, "failed": 0, "dropped": 5}


def test_seeded_drops_are_reproducible() -> None:
    patterns = []
    for _ in range(2):
        receiver = Receiver()
        sender = sender_for(receiver, drop_rate=0.5, seed=11)
        records = send(sender, [body(i) for i in range(40)])
        patterns.append([r.outcome for r in records])
        assert len(receiver.seen) == patterns[-1].count("delivered")
    assert patterns[0] == patterns[1]
    assert 5 < patterns[0].count("dropped") < 35


@pytest.mark.parametrize(("delay", "low", "high"), [(250.0, 250, 250), ((200.0, 600.0), 200, 600)])
def test_delay_waits_on_the_clock(delay: Any, low: float, high: float) -> None:
    clock = VirtualClock()
    sender = sender_for(Receiver(), delay_ms=delay, seed=3, clock=clock)
    records = send(sender, [body(i) for i in range(10)])
    assert all(low <= r.delay_ms <= high for r in records)
    assert clock.now() * 1000 == pytest.approx(sum(r.delay_ms for r in records))


@pytest.mark.parametrize(
    "kw",
    [
        {"url": "not a url"},
        {"url": "ftp://example.test/x"},
        {"url": "/relative/path"},
        {"drop_rate": 1.5},
        {"delay_ms": -1.0},
        {"delay_ms": (600.0, 200.0)},
        {"secret_header_name": ""},
    ],
)
def test_bad_settings_raise_config_error(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"url": URL, "secret": SECRET, **kw}
    url = args.pop("url")
    with pytest.raises(ConfigError) as info:
        WebhookSender(url, **args)
    assert SECRET not in str(info.value)


def test_target_and_repr_hide_credentials() -> None:
    sender = WebhookSender("https://user:pw@hooks.example.test:8443/in?token=abc", secret=SECRET)
    assert sender.target == "https://hooks.example.test:8443/in"
    assert "pw" not in repr(sender) and "abc" not in repr(sender) and SECRET not in repr(sender)
    assert "secret=set" in repr(sender)


def test_without_a_secret_no_header_is_sent() -> None:
    receiver = Receiver()
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver.handler))
    send(WebhookSender(URL, client=client), [body()])
    assert DEFAULT_SECRET_HEADER.lower() not in receiver.seen[0].headers


def test_sink_keeps_bodies_in_order() -> None:
    sink = WebhookSink()
    records = [sink.deliver_nowait(body(0)), asyncio.run(sink.deliver(body(1, guid="other")))]
    assert [r.outcome for r in records] == ["delivered", "delivered"]
    assert [b["autotranscribeResponse"]["start"] for b in sink.bodies] == [0, 1000]
    assert len(sink.for_guid("other")) == 1
    assert sink.counts["delivered"] == 2
    sink.clear()
    assert sink.bodies == [] and sink.records == []


# -- a real receiver on loopback -------------------------------------------------------------


@dataclass
class LiveReceiver:
    url: str
    bodies: list[dict[str, Any]]
    headers_seen: list[str]


@pytest.fixture
def live_receiver() -> Iterator[LiveReceiver]:
    bodies: list[dict[str, Any]] = []
    headers_seen: list[str] = []

    async def hook(request: Request) -> Response:
        given = request.headers.get("x-webhook-secret", "")
        headers_seen.append(given)
        if not hmac.compare_digest(given.encode(), SECRET.encode()):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        bodies.append(await request.json())
        return Response(status_code=204)

    async def broken(request: Request) -> Response:
        return Response("boom", status_code=500)

    app = Starlette(
        routes=[Route("/hook", hook, methods=["POST"]), Route("/broken", broken, methods=["POST"])]
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.02)
    yield LiveReceiver(f"http://127.0.0.1:{port}", bodies, headers_seen)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.socket
def test_loopback_receiver_accepts_the_right_secret(live_receiver: LiveReceiver) -> None:
    sender = WebhookSender(f"{live_receiver.url}/hook", secret=SECRET)
    records = send(sender, [body(i) for i in range(3)])
    assert [(r.outcome, r.status) for r in records] == [("delivered", 204)] * 3
    assert live_receiver.bodies == [body(i) for i in range(3)]
    assert all(r.elapsed_ms > 0 for r in records)


@pytest.mark.socket
def test_loopback_receiver_refuses_a_wrong_secret(
    live_receiver: LiveReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    sender = WebhookSender(f"{live_receiver.url}/hook", secret="wrong-" + SECRET)
    with caplog.at_level(logging.WARNING, logger="mgsim.webhooks"):
        (record,) = send(sender, [body()])
    assert (record.outcome, record.status) == ("failed", 401)
    assert live_receiver.bodies == [] and len(live_receiver.headers_seen) == 1
    assert SECRET not in caplog.text and SECRET not in repr(record)


@pytest.mark.socket
def test_loopback_server_error_and_refused_connection(live_receiver: LiveReceiver) -> None:
    broken = WebhookSender(f"{live_receiver.url}/broken", secret=SECRET)
    (record,) = send(broken, [body()])
    assert (record.outcome, record.status) == ("failed", 500)
    closed = WebhookSender(f"http://127.0.0.1:{free_port()}/hook", secret=SECRET, timeout_s=2)
    (record,) = send(closed, [body()])
    assert record.outcome == "failed" and record.status is None
    assert record.error is not None and record.error.startswith("ConnectError")


@pytest.mark.socket
def test_async_context_manager_closes_its_own_client(live_receiver: LiveReceiver) -> None:
    async def go() -> bool:
        async with WebhookSender(f"{live_receiver.url}/hook", secret=SECRET) as sender:
            await sender.deliver(body())
            client = sender._client
            assert client is not None
        return client.is_closed

    assert asyncio.run(go())
    assert len(live_receiver.bodies) == 1


def test_doctests() -> None:
    assert doctest.testmod(webhooks_module).failed == 0
