"""`mgsim serve` as a real process on loopback, driven by the client and by raw HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest
from conftest import GUIDS, HEADERS, LiveServer, free_port, wait_serving

from mgsim.client import Client

pytestmark = pytest.mark.socket


@contextlib.contextmanager
def serving(*extra: str, log: IO[bytes] | None = None) -> Iterator[str]:
    """``mgsim serve`` on a free port; its request log goes to ``log`` when given (a
    file, which never fills up as an unread pipe would), else it runs ``--quiet``."""
    port = free_port()
    env = {**os.environ, "MGSIM_API_ID": "serve-id", "MGSIM_API_SECRET": "serve-secret"}
    quiet = [] if log is not None else ["--quiet"]
    argv = [sys.executable, "-m", "mgsim.cli", "serve", "--port", str(port), "--seed", "1"]
    proc = subprocess.Popen(
        [*argv, *quiet, *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log if log is not None else subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url, lambda: proc.stderr.read().decode() if proc.stderr else "")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def served() -> Iterator[str]:
    with serving() as url:
        yield url


def test_serve_injects_the_faults_it_is_given() -> None:
    with serving("--fail-rate", "1", "--no-limits") as url:
        for _ in range(3):
            r = httpx.post(
                url + "/mg-autotranscribe/v1/stop-streaming",
                headers={"asapp-api-id": "serve-id", "asapp-api-secret": "serve-secret"},
                json={"namespace": "siprec", "guid": "1"},
            )
            assert r.status_code == 503 and r.json()["error"]["code"] == "503-01"


def test_serve_refuses_an_impossible_fault_rate() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mgsim.cli", "serve", "--port", "1", "--fail-rate", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--fail-rate: wants a probability" in proc.stderr


def test_serve_logs_each_request_with_tokens_masked(tmp_path: Path) -> None:
    import websockets.sync.client

    headers = {"asapp-api-id": "serve-id", "asapp-api-secret": "serve-secret"}
    with (tmp_path / "serve.log").open("wb") as log, serving("--no-sip", log=log) as url:
        r = httpx.get(url + "/mg-autotranscribe/v1/twilio-media-stream-url", headers=headers)
        stream_url = r.json()["streamingUrl"]
        token = stream_url.rsplit("/", 1)[1]
        with websockets.sync.client.connect(stream_url.replace("wss://", "ws://")):
            pass
        httpx.post(url + "/mg-autotranscribe/v1/stop-streaming", headers=headers,
                   json={"namespace": "siprec", "guid": "1"})  # fmt: skip
        time.sleep(0.5)
    text = (tmp_path / "serve.log").read_text()
    assert "GET /mg-autotranscribe/v1/twilio-media-stream-url 200" in text
    assert "POST /mg-autotranscribe/v1/stop-streaming 400" in text
    assert "WS /mg-twilio-autotranscribe/twilio-media/*** accepted" in text
    assert token not in text and "serve-secret" not in text and "serve-id" not in text


def test_serve_quiet_logs_no_requests(tmp_path: Path) -> None:
    with (tmp_path / "serve.log").open("wb") as log, serving("--quiet", log=log) as url:
        httpx.get(url + "/openapi.yaml")
    assert "GET /openapi.yaml" not in (tmp_path / "serve.log").read_text()


def test_client_against_mgsim_serve(served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MGSIM_BASE_URL", served)
    monkeypatch.setenv("ASAPP_API_ID", "serve-id")
    monkeypatch.setenv("ASAPP_API_SECRET", "serve-secret")
    with Client() as client:
        assert not client.embedded
        client.open_call("genesysaudiohook", GUIDS["genesysaudiohook"])
        started = client.start_streaming("genesysaudiohook", GUIDS["genesysaudiohook"], "c", "a")
        stopped = client.stop_streaming("genesysaudiohook", GUIDS["genesysaudiohook"])
        assert started.customer.stream_id == stopped.customer.stream_id
        assert client.twilio_media_stream_url().startswith(
            f"ws://127.0.0.1:{served.rsplit(':', 1)[1]}/"
        )
    wrong = httpx.post(
        served + "/mg-autotranscribe/v1/stop-streaming",
        headers=HEADERS,
        json={"namespace": "siprec", "guid": "1"},
    )
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "403-01"


def test_serve_refuses_public_interface_with_default_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGSIM_API")}
    proc = subprocess.run(
        [sys.executable, "-m", "mgsim.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "refusing to listen on 0.0.0.0" in proc.stderr


def test_in_thread_server_fixture(live_server: LiveServer) -> None:
    with Client(live_server.url) as client:
        client.open_call("twilio", GUIDS["twilio"])
        assert client.start_streaming("twilio", GUIDS["twilio"], "c", "a").is_ok
    assert live_server.sim.gateway.calls[GUIDS["twilio"]].streaming
