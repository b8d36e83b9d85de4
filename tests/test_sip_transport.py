"""SIPREC over real loopback sockets as an SBC sees it: 100 Trying, a Contact it can reach,
RTP/RTCP port pairs, a UCID already in use (regression tests for issue 11)."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from conftest import HEADERS, RECEIVER_REPORT, Sbc, noise_call

from mgsim.errors import ConfigError
from mgsim.media import siprec
from mgsim.media._base import StereoCall
from mgsim.media.sdp import parse_sdp
from mgsim.media.sip import SipMessage, parse_message
from mgsim.server.config import SimulatorConfig
from mgsim.transports.serve import ServerThread

pytestmark = [pytest.mark.socket, pytest.mark.timeout(60)]

UCID = "0867617078-0032318833-2221801472-0002236962"


@pytest.fixture(scope="module")
def stereo() -> StereoCall:
    call: StereoCall = noise_call(11, 4000)
    return call


def contact_target(response: SipMessage) -> tuple[str, int, str]:
    """Host, port and transport of a Contact URI (RFC 3261 19.1.1)."""
    match = re.match(r"<sip:[^@>]+@([^:;>]+):(\d+);transport=(\w+)>", response.get("Contact") or "")
    assert match is not None, response.get("Contact")
    return match.group(1), int(match.group(2)), match.group(3)


def test_invite_gets_100_trying_and_a_contact_that_reaches_the_server(
    server: ServerThread, stereo: StereoCall
) -> None:
    assert server.endpoints.sip is not None
    sip = [w.data for w in siprec.encode(stereo, guid=UCID, vendor="cisco") if w.channel == "sip"]
    assert all(isinstance(d, bytes) for d in sip)
    invite, ack, bye = (d for d in sip if isinstance(d, bytes))
    sbc = Sbc()
    try:
        trying, ok = sbc.exchange(invite, server.endpoints.sip)
        assert trying.status == 100 and ok.status == 200
        host, port, transport = contact_target(ok)
        assert (host, port, transport) == (*server.endpoints.sip, "udp")
        assert (ok.get("Contact") or "").endswith(";+sip.srs")
        # The SBC sends ACK and BYE to the Contact (RFC 3261 12.2.1.1), not where it began.
        sbc.sock.sendto(ack, (host, port))
        (bye_ok,) = sbc.exchange(bye, (host, port))
        assert bye_ok.status == 200
    finally:
        sbc.close()
    assert UCID in server.sim.gateway.ended


def test_rtp_ports_are_even_with_rtcp_received_next_to_them(
    server: ServerThread, stereo: StereoCall
) -> None:
    assert server.endpoints.sip is not None
    wires = list(siprec.encode(stereo, guid=UCID, vendor="cisco"))
    sbc = Sbc()
    try:
        ok = sbc.exchange(
            next(w.data for w in wires if isinstance(w.data, bytes)), server.endpoints.sip
        )[-1]
        ports = [m.port for m in parse_sdp(ok.body).media]
        assert all(p % 2 == 0 for p in ports) and ports[0] != ports[1]
        for port in ports:
            sbc.sock.sendto(RECEIVER_REPORT, ("127.0.0.1", port + 1))
        for w in wires[1:]:
            assert isinstance(w.data, bytes)
            if w.channel == "sip":
                if w.data.startswith(b"BYE"):
                    time.sleep(0.2)
                    sbc.exchange(w.data, server.endpoints.sip)
                else:
                    sbc.sock.sendto(w.data, server.endpoints.sip)
            else:
                sbc.sock.sendto(w.data, ("127.0.0.1", ports[int(w.channel[-1])]))
    finally:
        sbc.close()
    with httpx.Client(base_url=server.base_url) as http:
        view = http.get(f"/_sim/v1/media/calls/{UCID}", headers=HEADERS).json()
        stats = http.get("/_sim/v1/media/stats", headers=HEADERS).json()
    assert view["accounting"]["errors"] == {} and view["accounting"]["dropped"] == {}
    assert view["accounting"]["received"] == sum(w.channel.startswith("rtp") for w in wires)
    assert {ch: s["rtcp"] for ch, s in view["streams"].items()} == {"0": 1, "1": 1}
    assert stats["counters"]["media.siprec.rtcp"] == 2


@pytest.mark.parametrize("server", [{"rtp_ports": (41010, 41013)}], indirect=True)
def test_a_configured_rtp_range_is_used_in_even_odd_pairs(
    server: ServerThread, stereo: StereoCall
) -> None:
    assert server.endpoints.sip is not None
    invite = next(w.data for w in siprec.encode(stereo, guid=UCID) if isinstance(w.data, bytes))
    sbc = Sbc()
    try:
        ok = sbc.exchange(invite, server.endpoints.sip)[-1]
    finally:
        sbc.close()
    assert server.sim.gateway.calls[UCID].info["answer_ports"] == (41010, 41012)
    assert ok.status == 200


@pytest.mark.parametrize("ports", [(41001, 41003), (41000, 41002)])
def test_an_rtp_range_without_two_pairs_is_refused(ports: tuple[int, int]) -> None:
    with pytest.raises(ConfigError, match="two even/odd"):
        SimulatorConfig(rtp_ports=ports)


def test_a_second_dialog_for_a_ucid_in_use_gets_486_and_the_first_lives_on(
    server: ServerThread, stereo: StereoCall
) -> None:
    assert server.endpoints.sip is not None
    first = [w.data for w in siprec.encode(stereo, guid=UCID, vendor="cisco", seed=1)]
    second = [w.data for w in siprec.encode(stereo, guid=UCID, vendor="cisco", seed=2)]
    assert isinstance(first[0], bytes) and isinstance(second[0], bytes)
    sbc = Sbc()
    try:
        assert sbc.exchange(first[0], server.endpoints.sip)[-1].status == 200
        refused = sbc.exchange(second[0], server.endpoints.sip)[-1]
        assert refused.status == 486 and UCID in (refused.get("Warning") or "")
        sip = server.sim.app.state.media.sip
        assert parse_message(second[0]).call_id not in sip.dialogs
        assert sip.dialogs[parse_message(first[0]).call_id].ended is False
    finally:
        sbc.close()


@pytest.mark.parametrize("server", [{"rtp_ports": (41020, 41023)}], indirect=True)
def test_a_refused_invite_costs_no_port_and_a_full_range_is_503(
    server: ServerThread, stereo: StereoCall
) -> None:
    """The RTP range holds one call: an INVITE for another UCID is told to retry (503 with
    Retry-After), one for the UCID in use still hears why (486), and neither binds a port."""
    assert server.endpoints.sip is not None
    first = next(w.data for w in siprec.encode(stereo, guid=UCID, vendor="cisco", seed=1))
    same = next(w.data for w in siprec.encode(stereo, guid=UCID, vendor="cisco", seed=2))
    other = next(
        w.data for w in siprec.encode(stereo, guid=UCID[:-1] + "9", vendor="cisco", seed=3)
    )
    assert isinstance(first, bytes) and isinstance(same, bytes) and isinstance(other, bytes)
    sbc = Sbc()
    try:
        assert sbc.exchange(first, server.endpoints.sip)[-1].status == 200
        busy = sbc.exchange(same, server.endpoints.sip)[-1]
        full = sbc.exchange(other, server.endpoints.sip)[-1]
    finally:
        sbc.close()
    assert busy.status == 486
    assert full.status == 503 and full.get("Retry-After") == "5"
    assert "41020..41023" in (full.get("Warning") or "")
    counts = server.sim.app.state.media.media_counters()
    assert counts["media.siprec.error.no-rtp-port"] == 1
    assert counts["media.siprec.error.guid-in-use"] == 1
