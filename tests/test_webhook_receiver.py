"""Transcript webhooks from the simulator to a receiver over loopback, secret checked."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from conftest import free_port

from mgsim.clock import VirtualClock
from mgsim.media import twilio
from mgsim.server.config import SimulatorConfig
from mgsim.server.webhook_receiver import create_receiver_app
from mgsim.server.webhooks import WebhookSender
from mgsim.sim.call import load_sample
from mgsim.sim.play import play
from mgsim.simulator import Simulator
from mgsim.speech.engine import ScriptEngine

pytestmark = pytest.mark.socket
SECRET = "whsec-5f1e0c9b"


@pytest.fixture
def receiver() -> Iterator[tuple[str, object]]:
    app = create_receiver_app(SECRET)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/webhooks/transcripts", app
    server.should_exit = True
    thread.join(timeout=10)


def test_receiver_checks_the_secret(receiver: tuple[str, object]) -> None:
    url, app = receiver
    body = {"type": "transcript"}
    assert httpx.post(url, json=body, headers={"X-Webhook-Secret": SECRET}).status_code == 204
    assert httpx.post(url, json=body, headers={"X-Webhook-Secret": "nope"}).status_code == 401
    assert httpx.post(url, json=body).status_code == 401
    assert app.state.received == [body] and app.state.rejected == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "Expecting property name"),
        (b"[" * 60_000, "nested too deeply"),
        # JSON's grammar allows a lone surrogate, but it is no Unicode text: kept, the body
        # could never be rendered again.
        (b'{"externalConversationId": "\\ud800"}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b"\xef\xbb\xbf{}", "byte-order mark"),
    ],
)
def test_receiver_answers_400_to_a_body_that_is_not_json(
    receiver: tuple[str, object], content: bytes, why: str
) -> None:
    url, app = receiver
    r = httpx.post(url, content=content, headers={"X-Webhook-Secret": SECRET})
    assert r.status_code == 400 and why in r.json()["error"]
    assert app.state.received == []  # type: ignore[attr-defined]


def test_simulator_posts_transcripts_to_the_configured_url(receiver: tuple[str, object]) -> None:
    url, app = receiver
    config = SimulatorConfig(seed=1, webhook_url=url, webhook_secret=SECRET)
    sim = Simulator(config, clock=VirtualClock())
    assert isinstance(sim.webhooks, WebhookSender) and SECRET not in repr(sim.webhooks)
    call = load_sample("card_payment").truncated(12000)
    guid = "CA" + "12" * 16
    sim.gateway.transcription.attach(guid, ScriptEngine(call.words))
    from mgsim.gateway import StartParams

    play(
        sim.gateway,
        "twilio",
        twilio.encode(call.audio, guid=guid),
        {
            500.0: lambda: sim.gateway.start("twilio", guid, StartParams("c1", "a1")),
            11000.0: lambda: sim.gateway.stop("twilio", guid),
        },
    )
    received = app.state.received  # type: ignore[attr-defined]
    assert received and all(b["externalConversationId"] == guid for b in received)
    assert sim.webhooks.counts.get("delivered") == len(received)
    sim.close()
