"""Captures: what mgsim records opens in tshark and ffprobe as what was sent, and every
capture (recorded or from elsewhere) replays to the same outcome as the live call."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import needs_program

from mgsim.capture import CaptureError, load_capture, record
from mgsim.capture.replay import replay
from mgsim.cli import main
from mgsim.errors import ConfigError
from mgsim.media import rtp
from mgsim.media._base import Wire
from mgsim.sim.call import load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario, run_scenario

CALL = load_sample("card_payment").truncated(20_000)
SUFFIX = {"siprec": ".pcap", "twilio": ".jsonl", "genesysaudiohook": ".jsonl",
          "amazonconnect": ".mkv"}  # fmt: skip


def _tshark(path: Path, *args: str) -> str:
    done = subprocess.run(["tshark", "-r", str(path), *args], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    return done.stdout


@needs_program("tshark", "tshark")
@pytest.mark.parametrize("suffix", [".pcap", ".pcapng"])
def test_a_siprec_capture_decodes_in_tshark_as_sent(tmp_path: Path, suffix: str) -> None:
    wires = list(Scenario(CALL, "siprec").wires())
    path = record("siprec", wires, tmp_path / f"call{suffix}")
    assert _tshark(path, "-Y", "_ws.malformed || _ws.expert.severity >= error") == ""
    methods = _tshark(
        path, "-Y", "sip", "-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code"
    )
    assert methods.split() == ["INVITE", "200", "ACK", "BYE", "200"]
    # tshark finds the RTP from the SDP (no heuristics): each stream is exactly what was sent.
    rows = _tshark(path, "-Y", "rtp", "-T", "fields", "-e", "udp.dstport", "-e", "rtp.ssrc",
                   "-e", "rtp.seq", "-e", "rtp.p_type", "-e", "rtp.payload")  # fmt: skip
    got: dict[int, list[tuple[int, int, int, bytes]]] = {}
    for line in rows.splitlines():
        port, ssrc, seq, pt, payload = line.split("\t")
        item = (int(ssrc, 16), int(seq), int(pt), bytes.fromhex(payload.replace(":", "")))
        got.setdefault(int(port), []).append(item)
    sent: dict[str, list[tuple[int, int, int, bytes]]] = {}
    for w in wires:
        if w.channel.startswith("rtp:"):
            p = rtp.unpack(bytes(w.data))  # type: ignore[arg-type]
            sent.setdefault(w.channel, []).append((p.ssrc, p.sequence, p.payload_type, p.payload))
    assert sorted(got) == [40000, 40002]
    assert got[40000] == sent["rtp:0"] and got[40002] == sent["rtp:1"]


@needs_program("ffprobe", "ffmpeg")
def test_an_amazon_connect_capture_opens_in_ffprobe(tmp_path: Path) -> None:
    path = record("amazonconnect", Scenario(CALL, "amazonconnect").wires(), tmp_path / "c.mkv")
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:stream_tags=title",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    streams = json.loads(done.stdout)["streams"]
    assert [s["codec_name"] for s in streams] == ["aac", "aac"]  # as Connect's CodecID says


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_recorded_call_replays_to_an_identical_result(tmp_path: Path, namespace: str) -> None:
    scenario = Scenario(CALL, namespace, Plan("guard"))  # type: ignore[arg-type]
    live = run_scenario(scenario)
    path = record(namespace, scenario.wires(), tmp_path / f"call{SUFFIX[namespace]}")
    capture = load_capture(path)
    assert (capture.namespace, capture.guid, capture.problems) == (namespace, live.guid, [])
    again = replay(capture, Plan("guard"), call=CALL).result
    assert again.utterance_rows() == live.utterance_rows()
    assert again.call is not None and live.call is not None
    assert again.call.accounting.as_dict() == live.call.accounting.as_dict()
    assert [s.samples for s in again.call.segments] == [s.samples for s in live.call.segments]
    assert again.leaks == live.leaks


def test_the_cli_records_and_replays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "call.jsonl"
    argv = ["call", "--namespace", "genesysaudiohook", "--audio", "card_payment", "--json"]
    assert main([*argv, "--record", str(path)]) == 0
    live = json.loads(capsys.readouterr().out)
    assert main(["replay", str(path), "--audio", "card_payment", "--plan", "guard", "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["accounting"] == live["accounting"] and replayed["problems"] == []
    assert [u["text"] for u in replayed["utterances"]] == [
        u["redacted_text"] for u in live["utterances"]
    ]
    assert main(["replay", str(path)]) == 0  # whole, no script: what was received
    out = capsys.readouterr().out
    assert "received 259, streamed 259" in out and "nothing is transcribed" in out


def test_a_plan_needing_the_script_says_so(tmp_path: Path) -> None:
    path = record("twilio", Scenario(CALL, "twilio").wires(), tmp_path / "t.jsonl")
    with pytest.raises(ConfigError, match="--audio NAME"):
        replay(load_capture(path), Plan("guard"))


def _siprec_wires() -> list[Wire]:
    return list(Scenario(CALL, "siprec").wires())


def test_protocol_problems_are_listed(tmp_path: Path) -> None:
    wires = _siprec_wires()
    invite = bytes(wires[0].data)  # type: ignore[arg-type]
    assert invite.startswith(b"INVITE") and invite.count(b"a=label:") == 2
    # The top m-line loses its label (the Content-Length stays right: same length).
    wires[0] = Wire(wires[0].at_ms, "sip", invite.replace(b"a=label:", b"a=labex:", 1))
    rtp1 = [k for k, w in enumerate(wires) if w.channel == "rtp:1"]
    lost = set(rtp1[300:303])  # three packets of the second m-line go missing
    relabelled = set(rtp1[600:605])  # five say PCMA (8), which the SDP did not offer
    out = []
    for k, w in enumerate(wires):
        if k in lost:
            continue
        if k in relabelled:
            p = rtp.unpack(bytes(w.data))  # type: ignore[arg-type]
            pcma = rtp.RtpPacket(p.sequence, p.timestamp, p.ssrc, p.payload, 8)
            w = Wire(w.at_ms, w.channel, rtp.pack(pcma))
        out.append(w)
    path = record("siprec", out, tmp_path / "bad.pcap")
    problems = load_capture(path).problems
    assert any("m-line 0" in p and "no a=label" in p for p in problems), problems
    assert any(
        "m-line 1: 5 RTP packets with payload type 8" in p and "did not offer" in p
        for p in problems
    ), problems
    assert any("m-line 1: 1 gaps in RTP sequence numbers, 3 packets missing" in p
               for p in problems), problems  # fmt: skip


def test_a_twilio_log_from_elsewhere_is_read(tmp_path: Path) -> None:
    """A plain log of Twilio messages, one per line, as a Media Streams server logs them."""
    wires = list(Scenario(CALL, "twilio").wires())
    path = tmp_path / "twilio.log"
    path.write_text("".join(f"{w.data}\n" for w in wires if w.channel == "ws"))
    capture = load_capture(path)
    assert capture.namespace == "twilio" and len(capture.wires) == len(wires)
    live = run_scenario(Scenario(CALL, "twilio", Plan("guard")))
    again = replay(capture, Plan("guard"), call=CALL).result
    assert again.utterance_rows() == live.utterance_rows()


def _pcap_bytes(tmp_path: Path) -> bytes:
    return record("siprec", _siprec_wires()[:50], tmp_path / "ok.pcap").read_bytes()


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda d: d[: len(d) - 7], "truncated"),
        (lambda d: d[:20], "truncated pcap header"),
        (lambda d: d[:20] + struct.pack("<I", 105) + d[24:], "link type 105"),
        (lambda d: b"", "empty file"),
    ],
)
def test_bad_pcaps_get_a_clear_error(tmp_path: Path, make: object, says: str) -> None:
    data = make(_pcap_bytes(tmp_path))  # type: ignore[operator]
    path = tmp_path / "bad.pcap"
    path.write_bytes(data)
    with pytest.raises(CaptureError, match=says):
        load_capture(path)


def test_a_pcap_without_sip_gets_a_clear_error(tmp_path: Path) -> None:
    rtp_only = [w for w in _siprec_wires()[:60] if w.channel != "sip"]
    path = record("siprec", rtp_only, tmp_path / "nosip.pcap")
    with pytest.raises(CaptureError, match="no SIP INVITE"):
        load_capture(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json at all\n", ":1: not a JSON line"),
        (
            '{"mgsim_capture": 1, "namespace": "twilio"}\n{"at_ms": 0, "text": "x"\n',
            ":2: not a JSON",
        ),
        ('{"mgsim_capture": 9, "namespace": "twilio"}\n', "format 9"),
        ('{"mgsim_capture": 1, "namespace": "siprec"}\n', "not twilio or genesysaudiohook"),
        (
            '{"mgsim_capture": 1, "namespace": "genesysaudiohook"}\n{"at_ms": 1, "binary": "%%"}\n',
            ":2: binary is not base64",
        ),
        ('{"mgsim_capture": 1, "namespace": "twilio"}\n{"text": "{}"}\n', "numeric at_ms"),
        ('{"hello": 1}\n', "neither an mgsim capture header nor a Twilio message"),
        ('{"event": "media", "media": {"timestamp": "20"}}\n', "no Twilio start"),
        (
            '{"mgsim_capture": 1, "namespace": "genesysaudiohook"}\n{"at_ms": 0, "text": "{}"}\n',
            "no AudioHook open",
        ),
        ("\n\n", "empty: no messages"),
    ],
)
def test_bad_json_lines_get_a_clear_error(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(CaptureError, match=says):
        load_capture(path)


def test_a_bad_mkv_gets_a_clear_error(tmp_path: Path) -> None:
    data = record("amazonconnect", Scenario(CALL, "amazonconnect").wires(), tmp_path / "c.mkv")
    path = tmp_path / "cut.mkv"
    path.write_bytes(data.read_bytes()[:100])
    with pytest.raises(CaptureError, match=r"Matroska|fragment"):
        load_capture(path)


def test_bad_captures_are_one_line_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_text("garbage\n")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a JSON line" in err
    assert main(["replay", str(tmp_path / "missing.pcap")]) == 2
    assert "No such file" in capsys.readouterr().err


def _scapy_pcap(path: Path, packets: list[object]) -> Path:
    from scapy.utils import wrpcap

    wrpcap(str(path), packets)
    return path


def test_other_traffic_and_sip_over_tcp_are_handled(tmp_path: Path) -> None:
    """An SBC's capture: SIP over TCP (the INVITE split over two segments, one segment
    retransmitted), the RTP, and unrelated traffic (DNS, HTTP, another dialog's OPTIONS)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    wires = _siprec_wires()
    live = replay(load_capture(record("siprec", wires, tmp_path / "udp.pcap")), call=CALL)
    base = 1_767_603_600.0
    packets: list[object] = []
    seq = 1000

    def add(at_ms: float, layer: object) -> None:
        packet = Ether() / layer  # type: ignore[operator]
        packet.time = base + at_ms / 1000.0
        packets.append(packet)

    add(0.0, IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5353, dport=53) / Raw(b"\x12\x34"))
    add(
        0.1,
        IP(src="10.0.0.9", dst="10.0.0.20")
        / UDP(sport=5060, dport=5060)
        / Raw(
            b"OPTIONS sip:srs SIP/2.0\r\nCall-ID: other\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        ),
    )
    offer = (20000, 20002)  # the ports the encoder's SDP offers
    for w in wires:
        data = bytes(w.data) if isinstance(w.data, bytes) else w.data.encode()
        if w.channel == "sip":
            pieces = [data[:200], data[200:]] if data.startswith(b"INVITE") else [data]
            for i, piece in enumerate(pieces):
                tcp = TCP(sport=41000, dport=5060, seq=seq, flags="PA")
                add(w.at_ms + i * 0.01, IP(src="10.0.0.10", dst="10.0.0.20") / tcp / Raw(piece))
                if i == 0 and len(pieces) > 1:  # a retransmission of the first segment
                    add(w.at_ms + 0.005, IP(src="10.0.0.10", dst="10.0.0.20") / tcp / Raw(piece))
                seq += len(piece)
        else:
            # From the offered ports, as the SBC's SDP says, to ports no 200 OK in this
            # capture names (a one-sided capture), from an address the SDP does not name.
            i = int(w.channel[-1])
            udp = UDP(sport=offer[i], dport=41000 + 2 * i)
            add(w.at_ms, IP(src="10.0.0.10", dst="10.0.0.20") / udp / Raw(data))
        add(w.at_ms + 0.002, IP(src="10.0.0.30", dst="10.0.0.20") / TCP(sport=55000, dport=80)
            / Raw(b"GET / HTTP/1.1\r\n\r\n"))  # fmt: skip
    capture = load_capture(_scapy_pcap(tmp_path / "sbc.pcap", packets))
    assert capture.guid == live.capture.guid and capture.ignored >= len(wires)
    assert "no 200 OK with an SDP answer: RTP is matched by the offer's ports" in capture.problems
    again = replay(capture, call=CALL)
    assert again.summary()["accounting"] == live.summary()["accounting"]
    assert again.summary()["utterances"] == live.summary()["utterances"]
