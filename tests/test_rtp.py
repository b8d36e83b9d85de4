from __future__ import annotations

import contextlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mgsim.media._base import Anomaly, AudioChunk, Event
from mgsim.media.g711 import ulaw_decode, ulaw_encode
from mgsim.media.rtp import RtpError, RtpPacket, RtpReceiver, is_rtcp, pack, unpack

PAYLOAD = ulaw_encode((np.sin(np.arange(160) / 3) * 9000).astype(np.int16))


def packet(seq: int, ts: int, ssrc: int = 0xABCD, payload: bytes = PAYLOAD, pt: int = 0) -> bytes:
    return pack(RtpPacket(sequence=seq, timestamp=ts, ssrc=ssrc, payload=payload, payload_type=pt))


def chunks(events: list[Event]) -> list[AudioChunk]:
    return [e for e in events if isinstance(e, AudioChunk)]


def anomalies(events: list[Event], kind: str) -> list[Anomaly]:
    return [e for e in events if isinstance(e, Anomaly) and e.kind == kind]


@pytest.mark.parametrize(
    "pkt",
    [
        RtpPacket(1, 2, 3),
        RtpPacket(65535, 0xFFFFFFFF, 0xFFFFFFFF, b"\x01\x02", payload_type=127, marker=True),
        RtpPacket(7, 8, 9, b"abc", csrcs=(1, 2, 3)),
        RtpPacket(7, 8, 9, b"abc", extension=(0xBEDE, b"\x10\x20\x30\x40")),
        RtpPacket(7, 8, 9, b"abc", padding=5, csrcs=(4,), extension=(1, b"")),
    ],
)
def test_pack_unpack_round_trip(pkt: RtpPacket) -> None:
    data = pack(pkt)
    assert unpack(data) == pkt
    assert data[0] >> 6 == 2


def test_header_layout_matches_rfc3550() -> None:
    data = packet(0x1234, 0x01020304, 0x0A0B0C0D)
    assert data[:12] == bytes.fromhex("80001234010203040a0b0c0d")
    assert len(data) == 172


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x80\x00" + b"\x00" * 9, "truncated"),
        (b"\x40" + b"\x00" * 11, "bad-version"),
        (b"\x00" * 12, "bad-version"),
        (b"\x83" + b"\x00" * 15, "truncated"),  # three CSRCs promised, one present
        (b"\x90" + b"\x00" * 13, "truncated"),  # extension header cut short
        (b"\x90" + b"\x00" * 13 + b"\x00\x05" + b"\x00" * 4, "truncated"),  # extension body
        (b"\xa0" + b"\x00" * 12, "bad-length"),  # padding count zero
        (b"\xa0" + b"\x00" * 11 + b"\x01\x02\x09", "bad-length"),  # padding beyond payload
    ],
)
def test_malformed_packets(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError) as info:
        unpack(data)
    assert info.value.reason == reason
    with pytest.raises(RtpError):
        RtpReceiver("0").push(data, 0)


def test_in_order_stream_is_anchored_at_arrival() -> None:
    rx = RtpReceiver("1")
    events = [e for k in range(5) for e in rx.push(packet(100 + k, 5000 + 160 * k), 800 + 160 * k)]
    assert [(c.channel, c.start_sample) for c in chunks(events)] == [
        ("1", 800 + 160 * k) for k in range(5)
    ]
    assert np.array_equal(chunks(events)[0].pcm, ulaw_decode(PAYLOAD))
    assert len(events) == 5 and rx.flush() == []
    assert (rx.received, rx.lost, rx.ssrc) == (5, 0, 0xABCD)


def test_arrival_jitter_does_not_move_audio() -> None:
    rx = RtpReceiver("0")
    starts = [
        c.start_sample
        for k, jitter in enumerate([0, 37, -12, 90, 3])
        for c in chunks(rx.push(packet(k, 160 * k), 160 * k + jitter + 40))
    ]
    assert starts == [40 + 160 * k for k in range(5)]


@pytest.mark.parametrize(("seq0", "ts0"), [(65530, 0xFFFFFD00), (65535, 0), (0, 0xFFFFFFFF)])
def test_sequence_and_timestamp_wrap(seq0: int, ts0: int) -> None:
    rx = RtpReceiver("0")
    events: list[Event] = []
    for k in range(20):
        events += rx.push(packet((seq0 + k) & 0xFFFF, (ts0 + 160 * k) & 0xFFFFFFFF), 160 * k)
    events += rx.flush()
    assert [c.start_sample for c in chunks(events)] == [160 * k for k in range(20)]
    assert not [e for e in events if isinstance(e, Anomaly)]


@pytest.mark.parametrize("dropped", [[3], [3, 4, 5], [2, 9, 10], [65535 - 65530, 65536 - 65530]])
def test_loss_counted_exactly(dropped: list[int]) -> None:
    rx = RtpReceiver("0")
    events: list[Event] = []
    for k in range(16):
        if k not in dropped:
            events += rx.push(packet((65530 + k) & 0xFFFF, 160 * k), 160 * k)
    events += rx.flush()
    assert sum(a.count for a in anomalies(events, "loss")) == len(dropped) == rx.lost
    assert {c.start_sample // 160 for c in chunks(events)} == set(range(16)) - set(dropped)


def test_loss_declared_after_reorder_window() -> None:
    rx = RtpReceiver("0", reorder_window=4)
    events: list[Event] = []
    for k in [0, 2, 3, 4, 5]:
        events += rx.push(packet(k, 160 * k), 160 * k)
        if k < 5:
            assert not anomalies(events, "loss")
    assert [(a.count, a.detail) for a in anomalies(events, "loss")] == [(1, "seq 1")]


def test_reorder_keeps_audio_in_place() -> None:
    rx = RtpReceiver("0")
    order = [0, 2, 1, 3, 5, 4, 6]
    events = [e for k in order for e in rx.push(packet(k, 160 * k), 160 * k)] + rx.flush()
    assert sorted(c.start_sample for c in chunks(events)) == [160 * k for k in range(7)]
    assert len(anomalies(events, "reorder")) == 2 == rx.reordered
    assert not anomalies(events, "loss")


def test_duplicates_dropped_and_late_packets_refused() -> None:
    rx = RtpReceiver("0", reorder_window=8)
    events: list[Event] = []
    for k in [0, 1, 1, 2, 0]:
        events += rx.push(packet(k, 160 * k), 160 * k)
    assert len(chunks(events)) == 3 and len(anomalies(events, "duplicate")) == 2
    for k in range(3, 20):
        rx.push(packet(k, 160 * k), 160 * k)
    late = rx.push(packet(1, 160), 160)
    assert [a.kind for a in late if isinstance(a, Anomaly)] == ["late"] and not chunks(late)
    assert (rx.duplicates, rx.late) == (2, 1)


def test_a_packet_counted_lost_that_arrives_late_is_counted_once() -> None:
    rx = RtpReceiver("0", reorder_window=4)
    events: list[Event] = []
    for k in [0, *range(2, 12)]:  # 1 is missing long enough to be declared lost
        events += rx.push(packet(k, 160 * k), 160 * k)
    assert rx.lost == 1 and sum(a.count for a in anomalies(events, "loss")) == 1
    late = rx.push(packet(1, 160), 160)
    assert [a.kind for a in late if isinstance(a, Anomaly)] == ["recovered", "late"]
    assert (rx.lost, rx.late, rx.received) == (0, 1, 11)
    # Any other old packet is a plain late one: nothing was lost for it.
    again = rx.push(packet(1, 160), 160)
    assert [a.kind for a in again if isinstance(a, Anomaly)] == ["late"]
    assert (rx.lost, rx.late) == (0, 2)


def test_huge_gap_counted_at_once() -> None:
    rx = RtpReceiver("0")
    rx.push(packet(0, 0), 0)
    events = rx.push(packet(5000, 5000 * 160), 5000 * 160)
    assert [(a.kind, a.count) for a in events if isinstance(a, Anomaly)] == [("loss", 4999)]
    assert chunks(events)[0].start_sample == 5000 * 160


def test_audio_before_the_anchor_is_trimmed() -> None:
    rx = RtpReceiver("0")
    rx.push(packet(10, 1000), 100)
    events = rx.push(packet(9, 840), 120)
    (chunk,) = chunks(events)
    assert chunk.start_sample == 0
    assert np.array_equal(chunk.pcm, ulaw_decode(PAYLOAD)[60:])
    assert [a.kind for a in events if isinstance(a, Anomaly)] == ["reorder"]
    again = rx.push(packet(9, 840), 140)
    assert [a.kind for a in again if isinstance(a, Anomaly)] == ["duplicate"] and not chunks(again)


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (packet(1, 160, pt=8), "bad-payload-type"),
        (packet(1, 160, pt=13), "bad-payload-type"),
    ],
)
def test_foreign_packets_rejected_without_harm(second: bytes, reason: str) -> None:
    rx = RtpReceiver("0")
    rx.push(packet(0, 0), 0)
    with pytest.raises(RtpError) as info:
        rx.push(second, 160)
    assert info.value.reason == reason
    assert chunks(rx.push(packet(1, 160), 160))[0].start_sample == 160
    assert rx.flush() == []


def test_csrc_and_padding_payload_extracted() -> None:
    data = pack(RtpPacket(0, 0, 1, PAYLOAD, csrcs=(9,), padding=4))
    (chunk,) = chunks(RtpReceiver("0").push(data, 0))
    assert len(chunk.pcm) == 160


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        unpack(data)
    rx = RtpReceiver("0")
    with contextlib.suppress(RtpError):
        rx.push(packet(0, 0), 0)
        rx.push(data, 160)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=40))
def test_random_headers_raise_only_rtp_error(b0: int, b1: int, rest: bytes) -> None:
    data = struct.pack(">BB", b0, b1) + rest
    with contextlib.suppress(RtpError):
        parsed = unpack(data)
        assert pack(parsed)[:2] == data[:2] or parsed.padding == 0


def placed(events: list[Event]) -> dict[int, int]:
    """Start sample of every chunk → its length."""
    return {c.start_sample: len(c.pcm) for c in chunks(events)}


def test_an_ssrc_change_continues_the_m_line() -> None:
    """RFC 3550 8.2: a source may change its SSRC; SBCs do on re-anchoring, transfer and
    hold. The m-line's stream goes on: the new SSRC's audio follows the old one's on the
    timeline, nothing is dropped or counted lost, and the change is reported once."""
    rx = RtpReceiver("0")
    events: list[Event] = []
    for n in range(50):
        events += rx.push(packet(100 + n, 5000 + 160 * n), 160 * n)
    for n in range(50):  # new SSRC, unrelated sequence and timestamp
        events += rx.push(packet(40000 + n, 77 + 160 * n, ssrc=0xBEEF), 160 * (50 + n))
    events += rx.flush()
    assert sorted(placed(events)) == [160 * n for n in range(100)]
    assert [a.count for a in anomalies(events, "ssrc-change")] == [1]
    assert (rx.received, rx.lost, rx.ssrc_changes, rx.ssrc) == (100, 0, 1, 0xBEEF)


def test_a_new_ssrc_never_lands_on_audio_already_placed() -> None:
    rx = RtpReceiver("0")
    rx.push(packet(1, 0), 0)
    rx.push(packet(2, 160), 160)
    # Jitter: the new stream's first packet is stamped where the old one's last is.
    (chunk,) = chunks(rx.push(packet(9, 999, ssrc=0xBEEF), 160))
    assert chunk.start_sample == 320


def test_late_packets_of_the_old_ssrc_fill_their_gap() -> None:
    rx = RtpReceiver("0")
    events: list[Event] = []
    for n in (0, 1, 2, 4):  # seq 3 is held up in the network
        events += rx.push(packet(n, 160 * n), 160 * n)
    events += rx.push(packet(500, 0, ssrc=0xBEEF), 800)
    late = rx.push(packet(3, 480), 840)
    events += late + rx.push(packet(501, 160, ssrc=0xBEEF), 960)
    events += rx.flush()
    assert placed(late) == {480: 160}
    assert (rx.received, rx.lost, rx.reordered, rx.ssrc) == (7, 0, 1, 0xBEEF)


def test_an_ssrc_that_comes_back_is_a_new_stream_and_old_gaps_are_lost() -> None:
    rx = RtpReceiver("0", reorder_window=4)
    events: list[Event] = []
    for n in (0, 1, 3):  # seq 2 never comes
        events += rx.push(packet(n, 160 * n), 160 * n)
    for n in range(6):
        events += rx.push(packet(900 + n, 160 * n, ssrc=0xBEEF), 640 + 160 * n)
    # Hold ends: the first source returns with new numbering far ahead.
    back = rx.push(packet(3000, 10**6), 1600)
    events += back + rx.flush()
    assert placed(back) == {1600: 160}
    assert (rx.received, rx.lost, rx.ssrc_changes) == (10, 1, 2)


def test_tracking_a_paused_packet_counts_it_once() -> None:
    """A packet the SBC sends while the m-line is paused is followed (its sequence number
    is not a gap later) but its audio is dropped."""
    rx = RtpReceiver("0")
    rx.push(packet(0, 0), 0)
    paused = rx.track(packet(1, 160), 160)
    assert [a.kind for a in paused if isinstance(a, Anomaly)] == ["inactive"]
    events = rx.push(packet(2, 320), 320) + rx.flush()
    assert placed(events) == {320: 160}
    assert (rx.received, rx.paused, rx.lost) == (2, 1, 0)


def test_rtcp_is_told_from_rtp_as_rfc5761_says() -> None:
    receiver_report = bytes([0x81, 201, 0, 7]) + bytes(28)
    sender_report = bytes([0x80, 200, 0, 6]) + bytes(24)
    assert is_rtcp(receiver_report) and is_rtcp(sender_report)
    assert not is_rtcp(packet(1, 2)) and not is_rtcp(packet(1, 2, pt=127)[:8])
    assert not is_rtcp(bytes([0x81, 201]))
