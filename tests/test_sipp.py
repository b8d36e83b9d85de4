"""`mgsim serve` recording a call from SIPp, an SBC it has never met, checked on the wire.

SIPp plays tests/sipp/siprec_src.xml (written from RFC 3261, 3264, 7865 and 7866, not from
mgsim's sender): an INVITE with multipart SDP + rs-metadata offering two m-lines, RTP on
both (from a pcap made here, with an SSRC change and RTCP), a pause by re-INVITE
``a=inactive``, a resume, a session refresh without a body, and a BYE sent to the 200 OK's
Contact. The test starts and stops streaming over HTTP, then checks what mgsim counted
(``GET /_sim/v1/calls/{guid}``, ``GET /_sim/v1/media/calls/{guid}``, the stop summary)
and decodes the loopback capture of the whole run with tshark: no malformed packet, no
expert error, no RTP sequence error or loss.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import HEADERS, free_port, needs_program, wait_serving

from mgsim.media.g711 import ulaw_encode

pytestmark = [
    pytest.mark.socket,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        os.geteuid() != 0,
        reason="SIPp's pcap play and dumpcap on lo need root (raw sockets, capture)",
    ),
    needs_program("sipp", "sip-tester"),
    needs_program("dumpcap", "tshark"),
    needs_program("tshark", "tshark"),
]

SIPP_DIR = Path(__file__).parent / "sipp"
UCID = "0867617078-0032318833-2221801472-0002236962"
FRAME_S = 0.02

# The media plan, in seconds of pcap time (SIPp starts the pcap 800 ms after the ACK and
# sends the re-INVITEs at about 1.2 s (inactive), 2.4 s (sendonly) and 2.6 s (refresh)).
# Each run keeps 0.4 s or more from a re-INVITE, so a loaded machine cannot move a packet
# across a pause's edge.
CUSTOMER_RUNS = [(0.0, 0.8), (1.6, 1.7), (3.0, 4.2)]  # m-line 1; 1.6-1.7 s: while paused
AGENT_RUNS = [(0.0, 0.8), (3.0, 3.8)]  # m-line 2
SSRC_CHANGE_AT = 3.6  # the customer's stream is re-anchored: new SSRC, sequence, timestamps
RTCP_AT = (0.5, 3.5)


def frames(runs: list[tuple[float, float]]) -> list[float]:
    return [a + FRAME_S * i for a, b in runs for i in range(round((b - a) / FRAME_S))]


CUSTOMER = frames(CUSTOMER_RUNS)
AGENT = frames(AGENT_RUNS)
PAUSED = [t for t in CUSTOMER if 1.2 < t < 2.4]


# -- the pcap SIPp plays


def _ipv4_udp(src_port: int, dst_port: int, payload: bytes) -> bytes:
    udp = struct.pack(">HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                       bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))  # fmt: skip
    total = sum(struct.unpack(">10H", head))
    total = (total & 0xFFFF) + (total >> 16)
    checksum = ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF
    return head[:10] + struct.pack(">H", checksum) + head[12:] + udp


def write_pcap(path: Path, packets: list[tuple[float, int, bytes]]) -> None:
    """A libpcap file (Ethernet link type) of UDP datagrams ``(time_s, dst_port, data)``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for at, port, data in sorted(packets, key=lambda p: p[0]):
        frame = b"\x00" * 12 + b"\x08\x00" + _ipv4_udp(port + 10000, port, data)
        sec, usec = int(at), round((at - int(at)) * 1e6)
        out.append(struct.pack("<IIII", 1_700_000_000 + sec, usec, len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))


def rtp(seq: int, ts: int, ssrc: int, payload: bytes, marker: bool) -> bytes:
    """RFC 3550 5.1: V=2, PT 0 (PCMU), the marker on a talkspurt's first packet."""
    return struct.pack(">BBHII", 0x80, 0x80 if marker else 0, seq & 0xFFFF, ts, ssrc) + payload


def rtcp_sr(ssrc: int, packets: int, at: float) -> bytes:
    """RFC 3550 6.4.1 sender report and 6.5 SDES CNAME, as one compound packet."""
    ntp = int((at + 3_900_000_000) * (1 << 32))
    sr = struct.pack(">BBHIQIII", 0x80, 200, 6, ssrc, ntp, int(at * 8000), packets, packets * 160)
    cname = b"src@sbc.example"
    item = bytes([1, len(cname)]) + cname + b"\x00"
    item += b"\x00" * (-(4 + len(item)) % 4)
    sdes = struct.pack(">BBHI", 0x81, 202, (4 + len(item)) // 4, ssrc) + item
    return sr + sdes


def media_plan(base: int) -> list[tuple[float, int, bytes]]:
    """Every packet of the call for media ports ``base`` (customer) and ``base + 2``."""
    t = np.arange(160) / 8000
    packets: list[tuple[float, int, bytes]] = []
    for m, (times, hz) in enumerate(((CUSTOMER, 440.0), (AGENT, 660.0))):
        port, seq, ssrc, ts0 = base + 2 * m, 1000 + 7000 * m, 0x11110000 + m, 5000 * m
        previous = None
        for at in times:
            if m == 0 and previous is not None and previous < SSRC_CHANGE_AT <= at:
                seq, ssrc, ts0 = 50000, 0x2222BEEF, 123456 - round(at * 8000)
            tone = (np.sin(2 * np.pi * hz * (t + at)) * 6000).astype(np.int16)
            start = previous is None or at - previous > FRAME_S * 1.5
            packets.append(
                (at, port, rtp(seq, ts0 + round(at * 8000), ssrc, ulaw_encode(tone), start))
            )
            seq += 1
            previous = at
        for at in RTCP_AT:
            sent = sum(x <= at for x in times)
            packets.append((at + 0.01, port + 1, rtcp_sr(0x11110000 + m, sent, at)))
    return packets


# -- processes


def free_udp_block(size: int, after: int = 0) -> int:
    """An even port starting ``size`` consecutive UDP ports free a moment ago (from
    ``after`` on)."""
    for base in range(max(after, 42000 + 4 * (os.getpid() % 500)), 62000, 4):
        socks = []
        try:
            for p in range(base, base + size):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free UDP port block")


@dataclass
class Run:
    http: str
    sip_port: int
    rtp_base: int


@contextlib.contextmanager
def mgsim_serve(tmp: Path, rtp_ports: int = 4) -> Iterator[Run]:
    http, rtp_base = free_port(), free_udp_block(rtp_ports)
    sip_port = free_sip_port()
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mgsim.cli", "serve", "--port", str(http), "--seed", "1",
         "--sip-port", str(sip_port), "--rtp-ports", f"{rtp_base}-{rtp_base + rtp_ports - 1}",
         "--no-limits"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{http}"
    try:
        wait_serving(proc, url, (tmp / "serve.log").read_text)
        yield Run(url, sip_port, rtp_base)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def free_sip_port() -> int:
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@contextlib.contextmanager
def capture(path: Path, ports: str) -> Iterator[None]:
    """dumpcap on loopback with a capture filter on the test's ports, bounded."""
    proc = subprocess.Popen(
        ["dumpcap", "-q", "-i", "lo", "-f", f"(udp or tcp) and ({ports})", "-w", str(path),
         "-a", "duration:100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not path.exists() or path.stat().st_size == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "dumpcap")
            time.sleep(0.05)
        time.sleep(0.3)  # the filter is compiled and applied once the file has its header
        yield
        time.sleep(0.3)  # let the last packets reach the file
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def poll(url: str, until: object, what: str, timeout_s: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(url, headers=HEADERS, timeout=5)
        if r.status_code == 200:
            body: dict[str, object] = r.json()
            if callable(until) and until(body):
                return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {r.status_code} {r.text[:300]}")
        time.sleep(0.02)


# -- tshark


def tshark(capture_file: Path, run: Run, *args: str) -> str:
    decode = [f"udp.port=={run.sip_port},sip", f"tcp.port=={run.sip_port},sip"]
    for p in (run.rtp_base, run.rtp_base + 2):
        decode += [f"udp.port=={p},rtp", f"udp.port=={p + 1},rtcp"]
    cmd = ["tshark", "-n", "-r", str(capture_file)]
    for d in decode:
        cmd += ["-d", d]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


def assert_clean(cap: Path, run: Run) -> None:
    """No malformed packet and no expert error anywhere in the capture."""
    bad = tshark(cap, run, "-Y", "_ws.malformed || _ws.expert.severity >= 8388608", "-T", "fields",
                 "-e", "frame.number", "-e", "_ws.col.Info")  # fmt: skip
    assert bad.strip() == ""


def sip_messages(cap: Path, run: Run) -> list[list[str]]:
    """``[dst port, method, status, CSeq]`` of every SIP message tshark finds, in order."""
    lines = tshark(cap, run, "-Y", "sip", "-T", "fields", "-e", "udp.dstport", "-e", "sip.Method",
                   "-e", "sip.Status-Code", "-e", "sip.CSeq", "-e", "tcp.dstport")  # fmt: skip
    out = []
    for line in lines.splitlines():
        udp, method, status, cseq, tcp = line.split("\t")
        out.append([udp or tcp, method, status, cseq])
    return out


def sipp(
    tmp: Path, scenario: str, transport: str, target: int, port: int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sipp", "-sf", str(SIPP_DIR / scenario), "-inf", "ucid.csv", "-t", transport,
         "-m", "1", "-i", "127.0.0.1", "-p", str(port), "-mp", str(free_udp_block(4, 50000)),
         "-timeout", "30", "-timeout_error", "-nostdin", "-trace_err",
         f"127.0.0.1:{target}"],
        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def finished(proc: subprocess.Popen[bytes], tmp: Path, scenario: str) -> None:
    try:
        rc = proc.wait(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = "".join(p.read_text() for p in tmp.glob(f"{scenario}_*_errors.log"))
    assert rc == 0, (proc.stderr.read().decode() if proc.stderr else "") + errors


def test_sipp_records_a_call_through_pause_refresh_ssrc_change_and_bye(tmp_path: Path) -> None:
    write_pcap(tmp_path / "media.pcap", [])  # replaced once the ports are known
    (tmp_path / "ucid.csv").write_text(f"SEQUENTIAL\n{UCID};\n")
    cap = tmp_path / "run.pcapng"
    with mgsim_serve(tmp_path) as run:
        media_port = free_udp_block(4, after=run.rtp_base + 4)  # not mgsim's range
        write_pcap(tmp_path / "media.pcap", media_plan(media_port))
        sipp_port = free_sip_port()
        ports = (
            f"port {run.sip_port} or port {sipp_port} or portrange "
            f"{run.rtp_base}-{run.rtp_base + 3}"
        )
        with capture(cap, ports):
            sipp = subprocess.Popen(
                ["sipp", "-sf", str(SIPP_DIR / "siprec_src.xml"), "-inf", "ucid.csv",
                 "-t", "u1", "-m", "1", "-i", "127.0.0.1", "-p", str(sipp_port),
                 "-mp", str(media_port), "-timeout", "60", "-timeout_error", "-nostdin",
                 "-trace_err", "-trace_msg", f"127.0.0.1:{run.sip_port}"],
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                calls = f"{run.http}/_sim/v1/calls/{UCID}"
                media = f"{run.http}/_sim/v1/media/calls/{UCID}"
                poll(calls, lambda b: b["open"], "the INVITE to open the call")
                started = httpx.post(
                    f"{run.http}/mg-autotranscribe/v1/start-streaming",
                    headers=HEADERS,
                    json={"namespace": "siprec", "guid": UCID, "customerId": "c-1",
                          "agentId": "a-1", "siprecParams": {"mediaLineOrder": "CUSTOMER_FIRST"}},
                    timeout=5,
                )  # fmt: skip
                assert started.status_code == 200, started.text
                expected = len(CUSTOMER) - len(PAUSED) + len(AGENT)
                mid = poll(
                    media,
                    lambda b: b["accounting"]["received"] >= expected,  # type: ignore[index]
                    "all the RTP",
                )
                stopped = httpx.post(
                    f"{run.http}/mg-autotranscribe/v1/stop-streaming",
                    headers=HEADERS, json={"namespace": "siprec", "guid": UCID}, timeout=5,
                )  # fmt: skip
                assert stopped.status_code == 200, stopped.text
                rc = sipp.wait(timeout=60)
            finally:
                if sipp.poll() is None:
                    sipp.kill()
                    sipp.wait()
            errors = "".join(p.read_text() for p in tmp_path.glob("siprec_src_*_errors.log"))
            assert rc == 0, (sipp.stderr.read().decode() if sipp.stderr else "") + errors
        # What mgsim saw: every packet once, the pause, the SSRC change, RTCP, a BYE.
        ended = poll(calls, lambda b: not b["open"], "the BYE to end the call")
        assert ended["segments"] == 1
        view = httpx.get(media, headers=HEADERS, timeout=5).json()
        stats = httpx.get(f"{run.http}/_sim/v1/media/stats", headers=HEADERS, timeout=5).json()
    acc = view["accounting"]
    assert acc["received"] == expected and acc["lost"] == 0 and acc["errors"] == {}
    assert acc["dropped"] == {"paused": len(PAUSED)}
    assert acc["anomalies"].get("ssrc-change") == 1
    assert (acc["ended_by"], acc["end_reason"]) == ("platform", "bye")
    assert len(view["pauses"]) == 1 and view["pauses"][0][1] is not None
    streams = view["streams"]
    assert streams["0"]["ssrc_changes"] == 1 and streams["0"]["paused"] == len(PAUSED)
    assert streams["0"]["received"] == len(CUSTOMER) - len(PAUSED)
    assert streams["1"]["received"] == len(AGENT) and streams["1"]["ssrc_changes"] == 0
    assert {ch: s["rtcp"] for ch, s in streams.items()} == {"0": 2, "1": 2}
    assert stats["counters"]["media.siprec.rtcp"] == 4
    assert "media.siprec.error.no-dialog" not in stats["counters"]
    assert mid["accounting"]["received"] == expected  # type: ignore[index]
    # The stop summary counts what was received while streaming: all of it.
    body = stopped.json()["autotranscribeResponse"]
    customer, agent = body["customer"]["summary"], body["agent"]["summary"]
    received_ms = {"0": 20 * streams["0"]["received"], "1": 20 * streams["1"]["received"]}
    assert customer["audioDurationMs"] == received_ms["0"]
    assert agent["audioDurationMs"] == received_ms["1"]
    assert customer["totalAudioBytes"] == 16 * received_ms["0"]

    # The wire, decoded by tshark.
    assert_clean(cap, run)
    sip = sip_messages(cap, run)
    requests = [(p, m, c) for p, m, s, c in sip if m]
    assert [m for _, m, _ in requests] == ["INVITE", "ACK"] * 4 + ["BYE"]
    assert {int(p) for p, _, _ in requests} == {run.sip_port}  # every one to the Contact
    finals = [(s, c) for _, m, s, c in sip if s and not s.startswith("1")]
    assert [s for s, _ in finals] == ["200"] * 5
    assert any(s == "100" for _, _, s, _ in sip)  # 100 Trying
    rtp_streams = tshark(cap, run, "-q", "-z", "rtp,streams")
    rows = [r for r in rtp_streams.splitlines() if re.search(r"0x[0-9A-Fa-f]{8}", r)]
    assert len(rows) == 3, rtp_streams  # customer before and after the SSRC change, agent
    counts = []
    for row in rows:
        cells = row.split()
        ssrc_at = next(i for i, c in enumerate(cells) if c.startswith("0x"))
        packets, lost = int(cells[ssrc_at + 2]), cells[ssrc_at + 3]
        assert lost.startswith("0"), rtp_streams  # "0 (0.0%)": no loss, no sequence error
        assert "X" not in cells[ssrc_at + 4 :], rtp_streams  # no problem flagged
        counts.append(packets)
    assert sum(counts) == len(CUSTOMER) + len(AGENT)


def test_sipp_plain_sdp_invite_over_tcp_and_a_second_dialog_for_its_ucid(tmp_path: Path) -> None:
    """RFC 7866 lets the metadata come later: a plain SDP INVITE is a recording session.
    Meanwhile another dialog offering the same UCID is refused 486 with a Warning."""
    (tmp_path / "ucid.csv").write_text(f"SEQUENTIAL\n{UCID};\n")
    cap = tmp_path / "run.pcapng"
    with mgsim_serve(tmp_path, rtp_ports=8) as run:
        port_a, port_b = free_sip_port(), free_sip_port()
        ports = f"port {run.sip_port} or port {port_a} or port {port_b}"
        calls = f"{run.http}/_sim/v1/calls/{UCID}"
        with capture(cap, ports):
            holder = sipp(tmp_path, "siprec_src_plain_tcp.xml", "t1", run.sip_port, port_a)
            try:
                poll(calls, lambda b: b["open"], "the plain SDP INVITE to open the call")
                busy = sipp(tmp_path, "siprec_src_busy.xml", "u1", run.sip_port, port_b)
                finished(busy, tmp_path, "siprec_src_busy")
            finally:
                finished(holder, tmp_path, "siprec_src_plain_tcp")
        ended = poll(calls, lambda b: not b["open"], "the BYE to end the call")
        view = httpx.get(f"{run.http}/_sim/v1/media/calls/{UCID}", headers=HEADERS).json()
        stats = httpx.get(f"{run.http}/_sim/v1/media/stats", headers=HEADERS, timeout=5).json()
    assert ended["namespace"] == "siprec"
    acc = view["accounting"]
    assert (acc["ended_by"], acc["end_reason"], acc["errors"]) == ("platform", "bye", {})
    assert stats["counters"]["media.siprec.error.guid-in-use"] == 1
    assert stats["counters"]["media.siprec.sessions"] == 2
    assert_clean(cap, run)
    sip = sip_messages(cap, run)
    finals = [(s, c) for _, m, s, c in sip if s and not s.startswith("1")]
    assert sorted(finals) == [("200", "1 INVITE"), ("200", "2 BYE"), ("486", "1 INVITE")]
    assert [m for _, m, _, _ in sip if m].count("ACK") == 2
