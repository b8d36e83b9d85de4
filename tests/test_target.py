"""Calls played to a gateway that is not the embedded one (``--target``, ``Scenario.target``).

The done test: the same call played with ``--target`` to a second ``mgsim serve`` process
gives, from that server's API (its webhooks, conversation messages and stop answers), the
same utterances and stop summaries as the in-process run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port
from starlette.applications import Starlette
from starlette.responses import JSONResponse

from mgsim.cli import main
from mgsim.errors import ConfigError
from mgsim.report import EXIT_FAILED, EXIT_LEAK, EXIT_SAFE, EXIT_USAGE
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario
from mgsim.targets import Target, parse_listen, parse_sip_uri
from mgsim.transports.serve import AppThread

pytestmark = pytest.mark.socket

WEBHOOK_SECRET = "target-test-webhook-secret"
STOP = "/mg-autotranscribe/v1/stop-streaming"


@contextlib.contextmanager
def mgsim_serve(webhook_port: int, log: Path) -> Iterator[str]:
    """A second ``mgsim serve`` process on loopback, posting webhooks to ``webhook_port``."""
    port = free_port()
    log_file = log.open("wb")  # never a pipe nobody reads: a full pipe would stall the server
    env = {
        **os.environ,
        "MGSIM_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/webhooks/transcripts",
        "MGSIM_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgsim.cli", "serve", "--port", str(port), "--no-limits"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/openapi.yaml", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log_file.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    webhook_port = free_port()
    with mgsim_serve(webhook_port, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url, webhook_port


def _summaries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stop summaries' counts per participant (streamingSeconds is the server's wall
    clock, which a fast run does not spend; stream ids are fresh per segment)."""
    out = []
    for answer in entries:
        out.append(
            {
                role: {k: v for k, v in answer[role]["summary"].items() if k != "streamingSeconds"}
                for role in ("customer", "agent")
            }
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("plan", ["guard", "whole"])
def test_target_gives_the_same_utterances_and_summaries_as_in_process(
    server: tuple[str, int],
    namespace: str,
    plan: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, webhook_port = server
    monkeypatch.setenv("MGSIM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    common = ["call", "--namespace", namespace, "--audio", "card_payment", "--plan", plan]
    # The whole plan streams the card number: the verdict is a leak (exit 1), on both sides.
    expected = EXIT_SAFE if plan == "guard" else EXIT_LEAK
    assert main([*common, "--json"]) == expected
    local = json.loads(capsys.readouterr().out)
    argv = [*common, "--target", url, "--webhook-listen", f"127.0.0.1:{webhook_port}", "--json"]
    assert main(argv) == expected
    remote = json.loads(capsys.readouterr().out)

    target = remote["target"]
    assert target["simulator"] is True and target["webhooks"] == len(local["utterances"])
    # Utterances come from the server's webhooks; the messages API says the same (its text
    # is the redacted text, as the vendor stores it).
    assert remote["utterances"] == local["utterances"]
    assert [(m["sender"]["role"], m["text"]) for m in target["messages"]] == [
        (u["role"], u["redacted_text"]) for u in local["utterances"]
    ]
    assert remote["leaks"] == local["leaks"]
    in_process = run_scenario(
        Scenario(load_sample("card_payment"), namespace, Plan(plan))  # type: ignore[arg-type]
    )
    local_stops = [
        e.response["autotranscribeResponse"]
        for e in in_process.journal.entries
        if e.endpoint == STOP and isinstance(e.response, dict)
    ]
    assert _summaries(target["stop_summaries"]) == _summaries(local_stops)
    assert target["accounting"] == local["accounting"]
    assert remote["guid"] != local["guid"]  # a fresh guid per run on a kept server


@pytest.mark.slow
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(
    ("plan", "output"), [("guard", "redacted"), ("whole", "redacted"), ("whole", "unredacted")]
)
def test_messages_alone_place_transcripts_on_the_script(
    server: tuple[str, int], namespace: str, plan: str, output: str
) -> None:
    """Without webhooks (the sandbox cannot reach a receiver on loopback), each message is
    placed by its clientTimestamp and its text: the same words as in process, down to the
    guard's one- and two-word utterances between spans (a clock-only placement took the
    word before "digit security")."""
    url, _ = server
    call = load_sample("card_payment")
    local = run_scenario(Scenario(call, namespace, Plan(plan), redaction_output=output))  # type: ignore[arg-type]
    remote = run_scenario(
        Scenario(call, namespace, Plan(plan), redaction_output=output, target=Target(url))  # type: ignore[arg-type]
    )
    assert remote.remote is not None and remote.remote.webhooks == []
    field = "text" if output == "unredacted" else "redacted_text"  # as the vendor stores it
    stored = [r[field] for r in local.utterance_rows()]
    assert [m["text"] for m in remote.remote.messages] == stored
    assert [u.texts for u in remote.utterances] == [u.texts for u in local.utterances]
    assert {**remote.leaks, "transport": None} == {**local.leaks, "transport": None}
    assert [s.verdict for s in remote.report.spans] == [s.verdict for s in local.report.spans]


@pytest.mark.slow
def test_a_real_time_call_is_placed_by_the_wall_clock(server: tuple[str, int]) -> None:
    """Paced in real time, as against the sandbox: clientTimestamp on the server's wall
    clock, less when the first wire left, gives each message's place."""
    url, _ = server
    call = load_sample("card_payment").truncated(20_000)
    local = run_scenario(Scenario(call, "twilio", Plan("guard")))
    remote = run_scenario(Scenario(call, "twilio", Plan("guard"), realtime=True,
                                   target=Target(url, settle_s=3.0)))  # fmt: skip
    assert remote.remote is not None and remote.remote.messages
    assert [u.texts for u in remote.utterances] == [u.texts for u in local.utterances]
    assert {**remote.leaks, "transport": None} == {**local.leaks, "transport": None}


@pytest.fixture
def not_mgsim() -> Iterator[str]:
    """A gateway that is not an mgsim simulator: every path is unknown to it."""

    async def unknown(request: Any) -> JSONResponse:
        return JSONResponse({"error": {"requestId": "r", "code": "404-01", "message": "no"}}, 404)

    app = Starlette()
    app.add_route("/{path:path}", unknown, methods=["GET", "POST", "PUT"])
    with AppThread(app) as thread:
        yield thread.base_url


@pytest.mark.parametrize(
    ("namespace", "target", "says"),
    [
        ("amazonconnect", {}, "Kinesis Video Stream in your AWS account"),
        ("genesysaudiohook", {}, "--audiohook-url"),
        ("siprec", {}, "--sip sip:HOST:PORT"),
    ],
)
def test_what_a_real_gateway_needs_is_said(
    not_mgsim: str, namespace: str, target: dict[str, Any], says: str
) -> None:
    call = load_sample("card_payment").truncated(5_000)
    scenario = Scenario(call, namespace, Plan("whole"), target=Target(not_mgsim, **target))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=says):
        run_scenario(scenario)


def test_audiohook_to_a_real_gateway_needs_key_and_secret(
    not_mgsim: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MGSIM_AUDIOHOOK_API_KEY", raising=False)
    monkeypatch.delenv("MGSIM_AUDIOHOOK_CLIENT_SECRET", raising=False)
    target = Target(not_mgsim, audiohook_url="wss://audiohook.example.com/ws")
    call = load_sample("card_payment").truncated(5_000)
    with pytest.raises(ConfigError, match="MGSIM_AUDIOHOOK_API_KEY"):
        run_scenario(Scenario(call, "genesysaudiohook", Plan("whole"), target=target))


def test_faults_and_impairments_are_refused_against_a_target() -> None:
    from mgsim.media.impair import Impairment

    call = load_sample("card_payment").truncated(5_000)
    target = Target("http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="a target has its own"):
        run_scenario(Scenario(call, "twilio", control_latency_ms=400, target=target))
    with pytest.raises(ConfigError, match="the network is real"):
        run_scenario(Scenario(call, "twilio", impairment=Impairment(loss=0.1), target=target))


def test_an_unreachable_target_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    argv = ["call", "--namespace", "twilio", "--audio", "card_payment"]
    assert main([*argv, "--target", f"http://127.0.0.1:{port}"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the gateway running there?" in err
    assert main([*argv, "--sip", "sip:127.0.0.1"]) == EXIT_USAGE
    assert "go with --target" in capsys.readouterr().err


def test_webhook_receiver_needs_its_secret(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MGSIM_WEBHOOK_SECRET", raising=False)
    target = Target(server[0], webhook_listen=("127.0.0.1", free_port()))
    call = load_sample("card_payment").truncated(5_000)
    with pytest.raises(ConfigError, match="MGSIM_WEBHOOK_SECRET"):
        run_scenario(Scenario(call, "twilio", target=target))


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("http://x", "SIP URI"),
        ("sips:srs.example.com", "TLS"),
        ("sip:srs.example.com;transport=sctp", "sctp"),
        ("sip::5060", "no host"),
        ("sip:host:99999", "out of range"),
        ("sip:host:50a", "not a number"),
    ],
)
def test_bad_sip_uris(uri: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_sip_uri(uri)


def test_bad_targets() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        Target("api.sandbox.asapp.com")
    with pytest.raises(ConfigError, match="ws:// or wss://"):
        Target("http://127.0.0.1:1", audiohook_url="http://x/ws")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen("8099")
    secretive = Target("https://x.example", api_secret="s3cr3t", webhook_secret="w3bh00k")
    assert "s3cr3t" not in repr(secretive) and "w3bh00k" not in repr(secretive)


def test_run_panel_plays_to_a_target(server: tuple[str, int]) -> None:
    from mgsim.lab import RunPanel

    call = load_sample("card_payment").truncated(30_000)
    local = RunPanel(call, namespace="siprec").run()
    panel = RunPanel(call, namespace="siprec", target=Target(server[0]))
    result = panel.run()
    assert result.remote is not None and result.remote.simulator
    assert result.utterance_rows() == local.utterance_rows()
    assert "LEAK" not in panel.summary.value and panel.plot.value[:4] == b"\x89PNG"
