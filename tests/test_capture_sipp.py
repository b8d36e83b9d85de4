"""A capture made by tools other than mgsim replays to the same summary as the live call.

SIPp (``tests/sipp_capture/siprec_uac.xml``, an SBC written from RFC 7866) places a SIPREC
call to a live mgsim server on loopback while dumpcap captures the loopback interface; the
integration sends start-streaming once the call is open. The pcapng dumpcap wrote is then
replayed into the simulated gateway with the whole plan: what it received, accepted,
dropped and transcribed matches what the live server did. So does the server's own
capture of the call (``SimulatorConfig.capture_dir``, ``mgsim serve --capture``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_program

from mgsim.capture import load_capture, record
from mgsim.capture.replay import replay
from mgsim.client import Client
from mgsim.server.config import SimulatorConfig
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario
from mgsim.simulator import Simulator
from mgsim.speech.engine import ScriptEngine
from mgsim.transports.serve import ServerThread, free_port

pytestmark = [pytest.mark.socket, pytest.mark.slow]

SCENARIO = Path(__file__).parent / "sipp_capture" / "siprec_uac.xml"
UCID = "00002542391662063156"  # the scenario's X-UCID


def _even_free_udp_port() -> int:
    import socket

    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        if port % 2 == 0 and port < 65000:
            return port
    raise RuntimeError("no even UDP port")


@needs_program("sipp", "sip-tester")
@needs_program("dumpcap", "tshark")
def test_a_sipp_call_captured_by_dumpcap_replays_to_the_live_summary(tmp_path: Path) -> None:
    call = load_sample("card_payment").truncated(10_000)
    customer = [w for w in Scenario(call, "siprec").wires() if w.channel == "rtp:0"]
    record("siprec", customer, tmp_path / "customer.pcap")  # what SIPp plays as RTP
    shutil.copy(SCENARIO, tmp_path / SCENARIO.name)
    media_port = _even_free_udp_port()
    rtp_low = _even_free_udp_port()
    sim = Simulator(SimulatorConfig(seed=3, sip_port=0, rtp_ports=(rtp_low, rtp_low + 20),
                                    spike_arrest_per_s=None, daily_quota=None,
                                    capture_dir=str(tmp_path / "served")))  # fmt: skip
    sim.gateway.transcription.attach(UCID, ScriptEngine(call.words))
    capture = tmp_path / "sipp.pcapng"
    with ServerThread(sim) as server:
        assert server.endpoints.sip is not None
        host, sip_port = server.endpoints.sip
        bpf = (f"udp and (port {sip_port} or portrange {media_port}-{media_port + 3} or "
               f"portrange {rtp_low}-{rtp_low + 21})")  # fmt: skip
        dumpcap = subprocess.Popen(
            ["dumpcap", "-q", "-i", "lo", "-f", bpf, "-w", str(capture)],
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(1.5)  # dumpcap has opened the interface (it says so only without -q)
            sipp = subprocess.Popen(
                ["sipp", f"{host}:{sip_port}", "-sf", SCENARIO.name, "-m", "1", "-i", host,
                 "-mi", host, "-mp", str(media_port), "-nostdin", "-timeout", "40s",
                 "-timeout_error"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            with Client(server.base_url) as client:
                deadline = time.monotonic() + 10
                while client.request("GET", f"/_sim/v1/media/calls/{UCID}").status_code != 200:
                    assert time.monotonic() < deadline, "the SIPp call never opened"
                    time.sleep(0.02)
                client.start_streaming("siprec", UCID, "customer-1", "agent-1")
                assert sipp.wait(timeout=60) == 0, sipp.stderr.read() if sipp.stderr else ""
                deadline = time.monotonic() + 10
                while UCID not in sim.gateway.ended:
                    assert time.monotonic() < deadline, "the live call never ended"
                    time.sleep(0.02)
            time.sleep(0.5)  # the last packets reach the capture file
        finally:
            dumpcap.terminate()
            dumpcap.wait(timeout=10)
    live = sim.gateway.ended[UCID]
    live_utterances = [(u.role, u.text) for u in sim.gateway.transcription.utterances(UCID)]
    sim.app.state.media.captures.flush()
    served = sim.app.state.media.captures.written
    sim.close()

    # What the server itself recorded of the call (mgsim serve --capture) replays alike.
    assert [p.name for p in served] == [f"siprec-{UCID}.pcapng"]
    again = replay(load_capture(served[0]), Plan("whole"), call=call).result
    assert again.call is not None
    assert again.call.accounting.as_dict() == live.accounting.as_dict()
    assert [s.samples for s in again.call.segments] == [s.samples for s in live.segments]
    assert [(u.role, u.text) for u in again.utterances] == live_utterances

    captured = load_capture(capture)
    assert (captured.namespace, captured.guid) == ("siprec", UCID)
    assert "m-line 1 carried no RTP" in captured.problems  # SIPp sends one stream
    report = replay(captured, Plan("whole"), call=call)
    again = report.result
    assert again.call is not None
    assert again.call.accounting.as_dict() == live.accounting.as_dict()
    assert [s.samples for s in again.call.segments] == [s.samples for s in live.segments]
    assert [(u.role, u.text) for u in again.utterances] == live_utterances
    assert live_utterances and all(role == "customer" for role, _ in live_utterances)
