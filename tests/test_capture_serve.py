"""Every call a server receives is captured (``mgsim serve --capture DIR``,
``SimulatorConfig(capture_dir=...)``), and each capture replays to the live call's summary.

A call is played over its platform's real transport to a server on loopback with captures
on; the server's capture of it (pcapng of the SIP and RTP it received and sent, JSON lines
of the WebSocket messages both ways, the MKV fragments it consumed) is then replayed into
the simulated gateway with the same plan: what the gateway received, accepted, dropped,
streamed and transcribed is what the live server did. The pcapng decodes in tshark with
no malformed packet and names the sockets' real addresses and ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import needs_program, serve_process

from mgsim.capture import CaptureError, load_capture
from mgsim.capture.live import CaptureDir
from mgsim.capture.replay import replay
from mgsim.cli import main
from mgsim.client import Client
from mgsim.media import rtp
from mgsim.media._base import Wire
from mgsim.server.config import SimulatorConfig
from mgsim.sim.call import Call, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario, run_scenario
from mgsim.simulator import Simulator
from mgsim.targets import Target
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(120)]

CALL = load_sample("card_payment").truncated(12_000)
AUTH = {"asapp-api-id": "mgsim-local", "asapp-api-secret": "mgsim-local-secret"}


@pytest.fixture
def captured(tmp_path: Path) -> Iterator[tuple[Simulator, ServerThread, Path]]:
    config = SimulatorConfig(seed=1, sip_port=0, spike_arrest_per_s=None, daily_quota=None,
                             capture_dir=str(tmp_path / "captures"))  # fmt: skip
    with Simulator(config) as sim, ServerThread(sim) as server:
        yield sim, server, tmp_path / "captures"


def _written(sim: Simulator, n: int = 1, timeout_s: float = 15.0) -> list[Path]:
    captures: CaptureDir = sim.app.state.media.captures
    deadline = time.monotonic() + timeout_s
    while len(captures.written) < n:
        assert time.monotonic() < deadline, f"captures written: {captures.written}"
        time.sleep(0.05)
    captures.flush()
    assert captures.errors == []
    return list(captures.written)


def _live(sim: Simulator, guid: str) -> dict[str, Any]:
    call = sim.gateway.ended[guid]
    return {
        "accounting": call.accounting.as_dict(),
        "segments": [dict(s.samples) for s in call.segments],
        "utterances": [(u.role, u.text) for u in sim.gateway.transcription.utterances(guid)],
    }


def _replayed(path: Path, plan: str, call: Call) -> dict[str, Any]:
    again = replay(load_capture(path), Plan(plan), call=call).result
    assert again.call is not None
    return {
        "accounting": again.call.accounting.as_dict(),
        "segments": [dict(s.samples) for s in again.call.segments],
        "utterances": [(u.role, u.text) for u in again.utterances],
    }


def _tshark(path: Path, *args: str) -> str:
    done = subprocess.run(["tshark", "-r", str(path), *args], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return done.stdout


@pytest.mark.parametrize("namespace", ["twilio", "genesysaudiohook", "amazonconnect"])
def test_a_call_the_server_received_replays_to_the_live_summary(
    captured: tuple[Simulator, ServerThread, Path], namespace: str
) -> None:
    """Played as fast as the server accounts for it, with the guard plan: WebSocket and
    Kinesis messages carry their media time, so the capture replays its plan as played."""
    sim, server, directory = captured
    result = run_scenario(Scenario(CALL, namespace, Plan("guard"),  # type: ignore[arg-type]
                                   target=Target(server.base_url)))  # fmt: skip
    [path] = _written(sim)
    live = _live(sim, result.guid)
    assert path.parent == directory and path.name == f"{namespace}-{result.guid}{path.suffix}"
    assert live["utterances"] and live["accounting"]["received"] > 0
    assert _replayed(path, "guard", CALL) == live
    assert load_capture(path).problems == []


SHORT = load_sample("card_payment").truncated(5_000)
GAP_MS = 1000.0


def _siprec_call(
    server: ServerThread, sim: Simulator, sip_transport: str
) -> tuple[str, list[Wire]]:
    """A SIPREC call in real time whose RTP starts 1 s after the INVITE, streamed from
    before its first packet (as an SBC's call in a capture is: see test_capture_sipp)."""
    from mgsim.client import AsyncClient
    from mgsim.speech.engine import ScriptEngine
    from mgsim.transports.playback import play_over_sockets

    scenario = Scenario(SHORT, "siprec")
    guid = scenario.guid
    wires = [w if w.channel == "sip" and not bytes(w.data).startswith(b"BYE")  # type: ignore[arg-type]
             else Wire(w.at_ms + GAP_MS, w.channel, w.data) for w in scenario.wires()]  # fmt: skip
    sim.gateway.transcription.attach(guid, ScriptEngine(SHORT.words))

    async def play() -> None:
        async with AsyncClient(server.base_url) as client:
            await play_over_sockets(
                server.endpoints, "siprec", wires,
                {GAP_MS / 2: lambda: client.start_streaming("siprec", guid, "c", "a")},
                client=client, guid=guid, realtime=True, sip_transport=sip_transport,
            )  # fmt: skip

    asyncio.run(play())
    return guid, wires


@needs_program("tshark", "tshark")
@pytest.mark.slow
@pytest.mark.parametrize("sip_transport", ["udp", "tcp"])
def test_a_siprec_call_the_server_received_is_its_real_exchange(
    captured: tuple[Simulator, ServerThread, Path], sip_transport: str
) -> None:
    """The pcapng holds what the server really received and answered, between the
    sockets' own addresses, decodes in tshark with nothing malformed, and replays to the
    live call's summary."""
    sim, server, _ = captured
    assert server.endpoints.sip is not None
    _, port = server.endpoints.sip
    guid, wires = _siprec_call(server, sim, sip_transport)
    [path] = _written(sim)
    assert path.name == f"siprec-{guid}.pcapng"
    assert _tshark(path, "-Y", "_ws.malformed || _ws.expert.severity >= error") == ""
    rows = _tshark(path, "-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code",
                   "-e", f"{sip_transport}.srcport")  # fmt: skip
    exchange = [line.split("\t") for line in rows.splitlines()]
    # What the server really answered, 100 Trying included, from its own SIP port.
    assert [r[0] or r[1] for r in exchange] == ["INVITE", "100", "200", "ACK", "BYE", "200"]
    assert {int(r[2]) for r in exchange if r[1]} == {port}
    # The SDP answer names the RTP ports the server bound, and every packet went there.
    media = sim.gateway.ended[guid].info["answer_ports"]
    rtp_rows = _tshark(path, "-Y", "rtp", "-T", "fields", "-e", "udp.dstport", "-e", "rtp.seq",
                       "-e", "rtp.payload")  # fmt: skip
    got: dict[int, list[tuple[int, bytes]]] = {}
    for line in rtp_rows.splitlines():
        dport, seq, payload = line.split("\t")
        got.setdefault(int(dport), []).append((int(seq), bytes.fromhex(payload.replace(":", ""))))
    sent: dict[int, list[tuple[int, bytes]]] = {}
    for w in wires:
        if w.channel.startswith("rtp:"):
            p = rtp.unpack(bytes(w.data))  # type: ignore[arg-type]
            sent.setdefault(media[int(w.channel[-1])], []).append((p.sequence, p.payload))
    assert {k: sorted(v) for k, v in got.items()} == sent
    live = _live(sim, guid)
    n = sum(len(v) for v in sent.values())
    assert live["accounting"]["streamed"] == live["accounting"]["received"] == n
    assert _replayed(path, "whole", SHORT) == live
    assert live["utterances"]


def test_a_gateway_hang_up_is_in_the_capture(
    captured: tuple[Simulator, ServerThread, Path],
) -> None:
    """The gateway ends a Twilio call: the capture records the server closing the
    WebSocket with 1000, and the client's answering close."""
    sim, server, _ = captured
    from mgsim.media import twilio

    guid = "CA" + "5" * 32
    wires = list(twilio.encode(CALL.audio, guid=guid))

    async def play() -> Any:
        from mgsim.client import AsyncClient
        from mgsim.transports.playback import play_over_sockets

        async with AsyncClient(server.base_url) as client:
            return await play_over_sockets(
                server.endpoints, "twilio", wires,
                {2000.0: lambda: client.request("DELETE", f"/_sim/v1/calls/{guid}")},
                client=client, guid=guid, realtime=False,
            )  # fmt: skip

    played = asyncio.run(play())
    assert played.close_code == 1000
    [path] = _written(sim)
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    closes = [(x["from"], x["close"]) for x in lines if "close" in x]
    assert closes[:2] == [("server", 1000), ("client", 1000)]
    assert sim.gateway.ended[guid].accounting.as_dict()["ended_by"] == "gateway"
    assert "no stop message: the log ends mid-call" in load_capture(path).problems


def test_a_connection_that_opens_no_call_leaves_no_capture(
    captured: tuple[Simulator, ServerThread, Path],
) -> None:
    sim, server, directory = captured
    from websockets.sync.client import connect

    media_url = httpx.get(server.base_url + "/mg-autotranscribe/v1/twilio-media-stream-url",
                          headers=AUTH).json()["streamingUrl"]  # fmt: skip
    with connect(media_url.replace("wss://", "ws://")) as ws:
        ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
    captures: CaptureDir = sim.app.state.media.captures
    deadline = time.monotonic() + 5
    while sim.app.state.media.open_sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    captures.flush()
    assert captures.written == [] and list(directory.iterdir()) == []


def test_mgsim_serve_captures_and_mgsim_replay_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's lines: ``mgsim serve --capture DIR``, a call with ``--target``,
    ``mgsim replay`` of what the server wrote."""
    directory = tmp_path / "captures"
    argv = [sys.executable, "-m", "mgsim.cli", "serve", "--port", "{port}", "--no-limits",
            "--quiet", "--capture", str(directory)]  # fmt: skip
    with contextlib.contextmanager(serve_process)(argv, "/openapi.yaml") as url:
        code = main(["call", "--namespace", "genesysaudiohook", "--audio", "card_payment",
                     "--plan", "guard", "--target", url, "--json"])  # fmt: skip
        live = json.loads(capsys.readouterr().out)
        assert code in (0, 1)
        deadline = time.monotonic() + 15
        while not list(directory.glob("genesysaudiohook-*.jsonl")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [path] = list(directory.glob("genesysaudiohook-*.jsonl"))
        view = httpx.get(f"{url}/_sim/v1/media/calls/{live['guid']}", headers=AUTH).json()
        with Client(url) as client:
            messages = client.conversation_messages(live["guid"])
    assert path.name == f"genesysaudiohook-{live['guid']}.jsonl"
    assert main(["replay", str(path), "--audio", "card_payment", "--plan", "guard",
                 "--json"]) == 0  # fmt: skip
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["accounting"] == view["accounting"] and replayed["problems"] == []
    # The server's own transcripts of the live call, as its conversation API serves them.
    assert [u["text"] for u in replayed["utterances"]] == [m["text"] for m in messages]
    assert len(messages) >= 10


def test_the_json_lines_of_a_live_capture_are_read_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    head = {"mgsim_capture": 1, "namespace": "twilio", "recorded_by": "server"}
    lines = [head, {"at_ms": 0, "from": "client", "text": "{}"},
             {"at_ms": 0, "from": "server", "text": "{}"},
             {"at_ms": 1, "from": "server", "close": 1000, "reason": ""}]  # fmt: skip
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(CaptureError, match="no Twilio start"):  # the server's lines are not fed
        load_capture(path)
    path.write_text(path.read_text().replace('"from": "server", "close"', '"from": "x", "close"'))
    with pytest.raises(CaptureError, match=':4: "from" is "client" or "server"'):
        load_capture(path)


def test_an_unwritable_capture_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CaptureError, match="cannot write captures to"):
        Simulator(SimulatorConfig(capture_dir=str(blocker / "sub")))
