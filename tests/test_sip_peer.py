"""SIP between mgsim and its peer, checked against RFC 3261: a CANCEL after the INVITE's
final answer, the recording server's own BYE when the gateway ends a call, RTP sent where
the SDP answer says, and a sender's capture of the exchange as it really went."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import HEADERS, Sbc, needs_program, noise_call

from mgsim.capture import load_capture
from mgsim.cli import main
from mgsim.media import siprec
from mgsim.media._base import StereoCall, Wire
from mgsim.media.sip import SipMessage, header_param, local_tag, parse_message, response_to
from mgsim.media.siprec_server import SiprecSession
from mgsim.server.config import SimulatorConfig
from mgsim.simulator import Simulator
from mgsim.transports.senders import SiprecSender
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]

UCID = "0867617078-0032318833-2221801472-0002236962"


@pytest.fixture(scope="module")
def stereo() -> StereoCall:
    call: StereoCall = noise_call(11, 2000)
    return call


def _sip(stereo: StereoCall) -> tuple[bytes, bytes, bytes]:
    sip = [w.data for w in siprec.encode(stereo, guid=UCID) if w.channel == "sip"]
    invite, ack, bye = (bytes(d) for d in sip)  # type: ignore[arg-type]
    return invite, ack, bye


def _cancel_of(invite: bytes, *, branch: str | None = None) -> bytes:
    """The CANCEL of ``invite`` as RFC 3261 9.1 builds it: the same Request-URI, Call-ID,
    From, To (no tag), top Via and CSeq number, method CANCEL."""
    msg = parse_message(invite)
    via = msg.get("Via") or ""
    if branch is not None:
        old = header_param(via, "branch") or ""
        via = via.replace(old, branch)
    number, _ = msg.cseq
    headers = [("Via", via), ("Max-Forwards", "70")]
    headers += [(k, msg.get(k) or "") for k in ("From", "To", "Call-ID")]
    headers.append(("CSeq", f"{number} CANCEL"))
    return SipMessage.request("CANCEL", msg.uri, headers).to_bytes()


# RFC 3261 9.2: "If the UAS had already sent a final response for the original request,
# the CANCEL request has no effect on the processing of the original request, no effect on
# any session state [...] Regardless of the method of the original request, as long as
# the CANCEL matched an existing transaction, the UAS answers the CANCEL request itself
# with a 200 (OK) response." And: "If the UAS did not find a matching transaction for the
# CANCEL [...] it SHOULD respond to the CANCEL with a 481".


def test_a_cancel_after_the_invite_was_answered_gets_200_and_changes_nothing(
    stereo: StereoCall,
) -> None:
    invite, _, _ = _sip(stereo)
    session = SiprecSession()
    session.feed(Wire(0.0, "sip", invite))
    [reply] = session.feed(Wire(1.0, "sip", _cancel_of(invite)))
    ok = parse_message(bytes(reply.data))  # type: ignore[arg-type]
    assert (ok.status, ok.cseq) == (200, (1, "CANCEL"))
    # The To tag of the CANCEL's answer is the INVITE's answer's (RFC 3261 9.2).
    assert header_param(ok.get("To") or "", "tag") == local_tag(ok.call_id)
    assert session.state == "active"


def test_a_cancel_matching_no_invite_gets_481(stereo: StereoCall) -> None:
    invite, _, _ = _sip(stereo)
    session = SiprecSession()
    session.feed(Wire(0.0, "sip", invite))
    with pytest.raises(Exception, match="CANCEL matches no INVITE") as caught:
        session.feed(Wire(1.0, "sip", _cancel_of(invite, branch="z9hG4bKother")))
    response = caught.value.to_response()  # type: ignore[attr-defined]
    assert response is not None and response.status == 481
    assert session.state == "active"


@pytest.fixture
def server() -> ServerThread:
    config = SimulatorConfig(seed=3, sip_port=0, spike_arrest_per_s=None, daily_quota=None)
    sim = Simulator(config)
    running = ServerThread(sim).start()
    yield running  # type: ignore[misc]
    running.stop()
    sim.close()


def test_over_udp_a_late_cancel_gets_200_and_the_call_records_on(
    server: ServerThread, stereo: StereoCall, sbc: Sbc
) -> None:
    assert server.endpoints.sip is not None
    invite, ack, bye = _sip(stereo)
    assert [r.status for r in sbc.exchange(invite, server.endpoints.sip)] == [100, 200]
    sbc.sock.sendto(ack, server.endpoints.sip)
    assert [r.status for r in sbc.exchange(_cancel_of(invite), server.endpoints.sip)] == [200]
    assert UCID in server.sim.gateway.calls  # the CANCEL had no effect
    assert [r.status for r in sbc.exchange(bye, server.endpoints.sip)] == [200]
    assert server.sim.gateway.ended[UCID].accounting.as_dict()["end_reason"] == "bye"


def test_a_gateway_hang_up_sends_the_sbc_a_bye(
    server: ServerThread, stereo: StereoCall, sbc: Sbc
) -> None:
    """RFC 3261 15.1.1: the callee ends the dialog with a BYE, built as 12.2.1.1 says: to the
    SBC's Contact, From and To swapped with their tags, the same Call-ID, its own CSeq."""
    assert server.endpoints.sip is not None
    invite, ack, _ = _sip(stereo)
    _, ok = sbc.exchange(invite, server.endpoints.sip)
    sbc.sock.sendto(ack, server.endpoints.sip)
    hung = httpx.delete(f"{server.base_url}/_sim/v1/calls/{UCID}", headers=HEADERS)
    assert hung.status_code == 204
    bye = parse_message(sbc.sock.recv(65536))
    inv = parse_message(invite)
    assert (bye.method, bye.call_id, bye.cseq[1]) == ("BYE", inv.call_id, "BYE")
    # Addressed to the SBC's Contact, sent where its INVITE came from (the next hop).
    assert bye.uri == (inv.get("Contact") or "").split(">")[0].strip("<")
    assert bye.get("To") == inv.get("From") and bye.get("From") == ok.get("To")
    assert (header_param(bye.get("Via") or "", "branch") or "").startswith("z9hG4bK")
    # Unanswered, it is sent again (timer E, 500 ms); the 200 stops it.
    again = parse_message(sbc.sock.recv(65536))
    assert again.to_bytes() == bye.to_bytes()
    sbc.sock.sendto(response_to(bye, 200).to_bytes(), server.endpoints.sip)
    sbc.sock.settimeout(1.5)
    with pytest.raises(TimeoutError):
        sbc.sock.recv(65536)
    acc = server.sim.gateway.ended[UCID].accounting.as_dict()
    assert (acc["ended_by"], acc["end_reason"]) == ("gateway", "hang-up")


SIPP_BYE = Path(__file__).parent / "sipp_capture" / "siprec_uac_gateway_bye.xml"


@needs_program("sipp", "sip-tester")
def test_sipp_receives_the_gateway_bye_and_answers_it(server: ServerThread, tmp_path: Path) -> None:
    """SIPp as the SBC: its scenario only passes if the server sends a BYE it can answer."""
    import time

    assert server.endpoints.sip is not None
    host, port = server.endpoints.sip
    sipp = subprocess.Popen(
        ["sipp", f"{host}:{port}", "-sf", str(SIPP_BYE), "-m", "1", "-i", host, "-mi", host,
         "-nostdin", "-timeout", "30s", "-timeout_error"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    guid = "00002542391662063157"
    deadline = time.monotonic() + 10
    while guid not in server.sim.gateway.calls:
        assert time.monotonic() < deadline and sipp.poll() is None, "the SIPp call never opened"
        time.sleep(0.02)
    assert (
        httpx.delete(f"{server.base_url}/_sim/v1/calls/{guid}", headers=HEADERS).status_code == 204
    )
    assert sipp.wait(timeout=30) == 0, sipp.stderr.read() if sipp.stderr else ""
    assert server.sim.gateway.ended[guid].accounting.as_dict()["ended_by"] == "gateway"


class _Recorder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.got.append(data)


def test_the_sender_sends_rtp_to_the_answers_connection_address(stereo: StereoCall) -> None:
    """The SDP answer's c= names 127.0.0.2, not the SIP host: RTP goes there (RFC 4566 5.7)."""
    wires = list(siprec.encode(stereo, guid=UCID))

    async def run() -> tuple[list[bytes], list[bytes], tuple[tuple[str, int], ...]]:
        loop = asyncio.get_running_loop()
        media = [await loop.create_datagram_endpoint(_Recorder, local_addr=("127.0.0.2", 0))
                 for _ in (0, 1)]  # fmt: skip
        ports = tuple(int(t.get_extra_info("sockname")[1]) for t, _ in media)

        class Srs(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                msg = parse_message(data)
                if msg.method == "INVITE":
                    sdp = ("v=0\r\no=srs 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\n"
                           "t=0 0\r\n" + "".join(f"m=audio {p} RTP/AVP 0\r\na=recvonly\r\n"
                                                 for p in ports))  # fmt: skip
                    ok = response_to(msg, 200, headers=[("Content-Type", "application/sdp")],
                                     body=sdp.encode())  # fmt: skip
                    self.transport.sendto(ok.to_bytes(), addr)
                elif msg.method != "ACK":
                    self.transport.sendto(response_to(msg, 200).to_bytes(), addr)

        srs, _ = await loop.create_datagram_endpoint(Srs, local_addr=("127.0.0.1", 0))
        sender = SiprecSender("127.0.0.1", int(srs.get_extra_info("sockname")[1]))
        await sender.open(wires[0])
        for wire in wires:
            await sender.send(wire)
        await asyncio.sleep(0.2)
        await sender.finish()
        srs.close()
        got = [p.got for _, p in media]  # type: ignore[attr-defined]
        for t, _ in media:
            t.close()
        return got[0], got[1], sender.rtp_addresses

    first, second, addresses = asyncio.run(run())
    assert [a[0] for a in addresses] == ["127.0.0.2", "127.0.0.2"]
    sent = [w for w in wires if w.channel.startswith("rtp:")]
    assert len(first) + len(second) == len(sent) and first and second


@needs_program("tshark", "tshark")
def test_a_recorded_siprec_call_over_sockets_is_the_real_exchange(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mgsim call --record`` over sockets writes what the sender sent and what the server
    really answered (its 100 Trying, the RTP ports it bound), not a re-enactment."""
    path = tmp_path / "call.pcapng"
    code = main(["call", "--namespace", "siprec", "--audio", "card_payment", "--plan", "whole",
                 "--transport", "socket", "--record", str(path), "--json"])  # fmt: skip
    assert code == 1  # the whole plan leaks
    capsys.readouterr()

    def tshark(*args: str) -> str:
        return subprocess.run(["tshark", "-r", str(path), *args], capture_output=True,
                              text=True, timeout=60, check=True).stdout  # fmt: skip

    assert tshark("-Y", "_ws.malformed || _ws.expert.severity >= error") == ""
    methods = tshark("-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code")
    assert methods.split() == ["INVITE", "100", "200", "ACK", "BYE", "200"]
    ports = tshark("-Y", "sip.Status-Code == 200 && sdp", "-T", "fields", "-e",
                   "sdp.media.port").split()[0].split(",")  # fmt: skip
    rtp_ports = set(tshark("-Y", "rtp", "-T", "fields", "-e", "udp.dstport").split())
    assert rtp_ports == set(ports) and "40000" not in ports  # the server's own, bound ports
    capture = load_capture(path)
    assert capture.guid and sum(w.channel.startswith("rtp:") for w in capture.wires) > 2000
