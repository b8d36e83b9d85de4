"""RTP (RFC 3550) packets and a per-stream receiver for PCMU audio.

A packet is a 12-byte header (version 2, padding, extension, CSRC count, marker, payload
type, 16-bit sequence number, 32-bit timestamp, 32-bit SSRC), optional CSRCs and header
extension, then the payload. :func:`pack` and :func:`unpack` convert; anything malformed
raises :class:`RtpError`.

:class:`RtpReceiver` turns one stream's packets into :class:`~mgsim.media._base.AudioChunk`
records placed on the media timeline: the first packet is anchored at its arrival sample,
every later one at the anchor plus its RTP timestamp distance (32-bit wrap-around handled),
so reordering and jitter do not move audio and two streams anchored the same way line up.
Sequence numbers are extended past 65535; gaps become ``"loss"`` anomalies once they are
older than the reorder window (or at :meth:`RtpReceiver.flush`), late fillers
``"reorder"`` anomalies, and repeats ``"duplicate"`` anomalies (the repeat is dropped).

The receiver follows its m-line, not one SSRC: SBCs change the SSRC when they re-anchor
media, transfer or hold a call (RFC 3550 8.2 lets a source change it at any time). A new
SSRC is a new stream on the same timeline, anchored where its first packet arrives (never
over audio already placed), reported as an ``"ssrc-change"`` anomaly and counted in
``ssrc_changes``; the old stream's outstanding gaps stay open for its late packets until
the new stream is a reorder window ahead. :func:`is_rtcp` tells RTCP apart from RTP as
RFC 5761 section 4 does, for RTCP that arrives on an RTP port.

>>> data = pack(RtpPacket(sequence=65535, timestamp=160, ssrc=7, payload=b"\\xff" * 160))
>>> rx = RtpReceiver("0")
>>> [type(e).__name__ for e in rx.push(data, arrival_sample=0)]
['AudioChunk']
>>> unpack(data).sequence
65535
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from mgsim.errors import MediaError
from mgsim.media._base import Anomaly, AudioChunk, Event
from mgsim.media.g711 import ulaw_decode

__all__ = [
    "HEADER_SIZE",
    "PCMU",
    "RtpError",
    "RtpPacket",
    "RtpReceiver",
    "is_rtcp",
    "pack",
    "unpack",
]

HEADER_SIZE = 12
"""Bytes of the fixed RTP header."""

PCMU = 0
"""Static payload type of G.711 µ-law at 8 kHz (RFC 3551)."""

_FIXED = struct.Struct(">BBHII")
_SEQ_TS_SSRC = struct.Struct(">HII")
_AFTER_B0 = struct.Struct(">BHII")
_EXT = struct.Struct(">HH")
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31
_MAX_TRACKED_GAP = 3000  # 60 s of 20 ms packets; larger jumps are counted lost at once
_MAX_RETIRED = 4  # replaced SSRCs kept for their late packets
# Per-stream state: what a new SSRC starts afresh and a replaced one keeps for late packets.
_STREAM_STATE = (
    "ssrc",
    "_max_seq",
    "_first",
    "_early",
    "_ref_ts",
    "_offset",
    "_missing",
    "_missing_order",
    "_declared_lost",
    "_declared_order",
)


def is_rtcp(data: bytes) -> bool:
    """Whether a datagram is RTCP rather than RTP (RFC 5761 section 4: version 2 and a
    second byte of 192..223, where RTCP packet types such as SR 200 and RR 201 fall).

    >>> is_rtcp(bytes([0x81, 201, 0, 1]) + bytes(4)), is_rtcp(bytes([0x80, 0]) + bytes(10))
    (True, False)
    """
    return len(data) >= 8 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


class RtpError(MediaError):
    """An RTP packet that cannot be used.

    ``reason`` is one of ``"truncated"``, ``"bad-version"``, ``"bad-length"``,
    ``"bad-payload-type"`` or ``"no-session"``.
    """


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet; ``csrcs`` and ``extension`` are rarely used by SBCs but parsed."""

    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    payload_type: int = PCMU
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None
    padding: int = 0


def pack(packet: RtpPacket) -> bytes:
    """Serialise a packet (pads with ``padding`` bytes, the last holding the count)."""
    if not 0 <= packet.payload_type < 128 or len(packet.csrcs) > 15 or packet.padding > 255:
        raise RtpError("packet fields out of range", reason="bad-length")
    b0 = 0x80 | len(packet.csrcs)
    if packet.extension is not None:
        b0 |= 0x10
    if packet.padding:
        b0 |= 0x20
    b1 = packet.payload_type | (0x80 if packet.marker else 0)
    head = _FIXED.pack(
        b0, b1, packet.sequence % _SEQ_MOD, packet.timestamp % _TS_MOD, packet.ssrc % _TS_MOD
    )
    parts = [head, b"".join(struct.pack(">I", c) for c in packet.csrcs)]
    if packet.extension is not None:
        profile, body = packet.extension
        body += b"\x00" * (-len(body) % 4)
        parts += [_EXT.pack(profile, len(body) // 4), body]
    parts.append(packet.payload)
    if packet.padding:
        parts.append(b"\x00" * (packet.padding - 1) + bytes([packet.padding]))
    return b"".join(parts)


def _parse(data: bytes) -> tuple[int, int, int, int, int, int]:
    """``(b1, seq, ts, ssrc, payload_start, payload_end)`` of a packet, validated."""
    size = len(data)
    if size < HEADER_SIZE:
        raise RtpError(f"RTP packet of {size} bytes is shorter than its header", reason="truncated")
    b0 = data[0]
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2", reason="bad-version")
    seq, ts, ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
    start = HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if size < start + 4:
            raise RtpError("RTP header extension cut short", reason="truncated")
        start += 4 + 4 * _EXT.unpack_from(data, start)[1]
    end = size
    if b0 & 0x20:
        end -= data[-1]
        if data[-1] == 0:
            raise RtpError("RTP padding count of zero", reason="bad-length")
    if start > size:
        raise RtpError("RTP header longer than the packet", reason="truncated")
    if end < start:
        raise RtpError("RTP padding longer than the payload", reason="bad-length")
    return data[1], seq, ts, ssrc, start, end


def unpack(data: bytes) -> RtpPacket:
    """Parse one packet; raises :class:`RtpError` (``truncated``, ``bad-version``,
    ``bad-length``) for anything that is not a valid RTP packet."""
    data = bytes(data)
    b1, seq, ts, ssrc, start, end = _parse(data)
    b0 = data[0]
    csrcs = struct.unpack_from(f">{b0 & 0x0F}I", data, HEADER_SIZE)
    extension = None
    if b0 & 0x10:
        at = HEADER_SIZE + 4 * len(csrcs)
        profile, words = _EXT.unpack_from(data, at)
        extension = (profile, data[at + 4 : at + 4 + 4 * words])
    return RtpPacket(
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=data[start:end],
        payload_type=b1 & 0x7F,
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=len(data) - end,
    )


class RtpReceiver:
    """Receives one PCMU stream and places its audio on the media timeline.

    ``channel`` labels the chunks and anomalies. ``reorder_window`` is how many packets a
    missing one may lag the newest before it is declared lost; a packet older than that
    arrives as a ``"late"`` anomaly and is dropped; if it had been counted lost, a
    ``"recovered"`` anomaly takes it off the loss first, so every packet is counted once.
    Counters: ``received``, ``lost``, ``reordered``, ``duplicates``, ``late``, ``paused``
    (see :meth:`track`) and ``ssrc_changes``.
    """

    def __init__(self, channel: str, *, payload_type: int = PCMU, reorder_window: int = 64):
        self.channel = channel
        self.payload_type = payload_type
        self.reorder_window = reorder_window
        self.received = 0
        self.lost = 0
        self.reordered = 0
        self.duplicates = 0
        self.late = 0
        self.paused = 0
        """Packets that arrived while the m-line was paused (tracked, their audio dropped)."""
        self.ssrc_changes = 0
        self._end = 0  # first sample after the newest audio placed (anchor for a new SSRC)
        self._anchor = 0  # where the current stream's first packet was placed
        self._retired: dict[int, dict[str, object]] = {}  # replaced SSRCs, oldest first
        self._fresh()

    def _fresh(self) -> None:
        self.ssrc: int | None = None
        self._max_seq = 0  # highest extended sequence number seen
        self._first = 0  # extended sequence number of the first packet
        self._early: set[int] = set()  # packets before the first one, received late
        self._ref_ts = 0  # extended timestamp of that packet
        self._offset = 0  # sample = extended timestamp + offset
        self._missing: set[int] = set()
        self._missing_order: deque[int] = deque()
        # Recently declared lost (bounded): one of them arriving after all is not lost.
        self._declared_lost: set[int] = set()
        self._declared_order: deque[int] = deque()

    def _save(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in _STREAM_STATE}

    def _load(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def push(self, data: bytes, arrival_sample: int) -> list[Event]:
        """Take one packet that arrived at media sample ``arrival_sample``.

        Returns an :class:`AudioChunk` (unless the packet is dropped) and any anomalies.
        Raises :class:`RtpError` for a malformed packet, another payload type or SSRC.
        """
        codes = self.push_codes(data)
        if codes is not None:
            return [AudioChunk(self.channel, codes[0], ulaw_decode(codes[1]))]
        return self._push(data, arrival_sample)

    def push_codes(self, data: bytes) -> tuple[int, bytes] | None:
        """Take the usual packet — plain header, this stream's SSRC and payload type, next
        in sequence, audio at or after the stream's start, no gap expiring — and return
        ``(start_sample, payload)`` with its µ-law undecoded, so a caller holding many can
        decode and place a run of them at once. Anything else returns None and changes
        nothing: it must go through :meth:`push`, which makes every other check.
        """
        if len(data) > HEADER_SIZE and data[0] == 0x80:
            b1, seq, ts, ssrc = _AFTER_B0.unpack_from(data, 1)
            top = self._max_seq + 1
            pending = self._missing_order
            if (
                ssrc == self.ssrc
                and b1 == self.payload_type
                and seq == top & 0xFFFF
                and (not pending or pending[0] > top - self.reorder_window)
                and not self._retired
            ):
                ref = self._ref_ts
                ext_ts = ref + ((ts - ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                sample = ext_ts + self._offset
                if sample >= 0:
                    self._max_seq = top
                    self._ref_ts = ext_ts
                    self.received += 1
                    end = sample + len(data) - HEADER_SIZE  # one µ-law byte per sample
                    if end > self._end:
                        self._end = end
                    return sample, data[HEADER_SIZE:]
        return None

    def track(self, data: bytes, arrival_sample: int) -> list[Event]:
        """Take a packet that arrived while its m-line is paused: its sequence number and
        timestamp are followed (so it is not counted lost later, and a new SSRC is noticed)
        but its audio is dropped. Returns the anomalies, ending with ``"inactive"``; the
        packet counts in ``paused``, not ``received``.
        """
        before = self.received
        events: list[Event] = [
            e for e in self._push(data, arrival_sample) if not isinstance(e, AudioChunk)
        ]
        if self.received > before:
            self.received -= 1
            self.paused += 1
        events.append(Anomaly("inactive", "RTP while the recording is paused", self.channel))
        return events

    def _push(self, data: bytes, arrival_sample: int) -> list[Event]:
        b1, seq, ts, ssrc, start, end = _parse(data)
        if b1 & 0x7F != self.payload_type:
            raise RtpError(
                f"payload type {b1 & 0x7F}, negotiated {self.payload_type}",
                reason="bad-payload-type",
            )
        events: list[Event] = []
        if ssrc != self.ssrc and self.ssrc is not None:
            retired = self._retired.get(ssrc)
            if retired is not None and self._predates_switch(retired, seq, ts):
                return self._push_retired(ssrc, data, arrival_sample)
            events += self._switch(ssrc, arrival_sample)
            arrival_sample = self._anchor
        if self.ssrc is None:
            self._anchor = arrival_sample
            self.ssrc = ssrc
            self._max_seq = self._first = seq
            self._ref_ts = ts
            self._offset = arrival_sample - ts
            ext_ts = ts
        else:
            top = self._max_seq
            delta = ((seq - top + 0x8000) & 0xFFFF) - 0x8000
            ext_ts = self._ref_ts + ((ts - self._ref_ts + _TS_HALF) & 0xFFFFFFFF) - _TS_HALF
            if delta == 1:
                self._max_seq = top + 1
                self._ref_ts = ext_ts
            elif delta > 1:
                self._note_gap(top + 1, top + delta, events)
                self._max_seq = top + delta
                self._ref_ts = ext_ts
            else:
                ext = top + delta
                if ext in self._missing or (
                    ext < self._first and ext not in self._early and -delta < self.reorder_window
                ):
                    # A gap filled late, or a packet overtaken by the stream's first one.
                    if ext < self._first:
                        self._early.add(ext)
                    self._missing.discard(ext)
                    self.reordered += 1
                    events.append(
                        Anomaly("reorder", f"seq {seq} after {top & 0xFFFF}", self.channel)
                    )
                elif delta > -self.reorder_window:
                    self.duplicates += 1
                    events.append(Anomaly("duplicate", f"seq {seq}", self.channel))
                    return events
                else:
                    if ext in self._declared_lost:
                        # Counted lost when its gap expired; it is dropped as late instead.
                        self._declared_lost.discard(ext)
                        self.lost -= 1
                        events.append(Anomaly("recovered", f"seq {seq}", self.channel))
                    self.late += 1
                    events.append(Anomaly("late", f"seq {seq}", self.channel))
                    return events
            if (
                self._missing_order
                and self._missing_order[0] <= self._max_seq - self.reorder_window
            ):
                self._expire(self._max_seq - self.reorder_window + 1, events)
            if self._retired and self._max_seq - self._first >= self.reorder_window:
                self._close_retired(events)
        self.received += 1
        sample = ext_ts + self._offset
        pcm = ulaw_decode(data[start:end])
        if sample < 0:
            # Audio from before the anchor (a reordered packet ahead of the first): keep the
            # part that is on the timeline.
            pcm = pcm[-sample:]
            sample = 0
        if len(pcm):
            if sample + len(pcm) > self._end:
                self._end = sample + len(pcm)
            events.append(AudioChunk(self.channel, sample, pcm))
        return events

    def flush(self) -> list[Event]:
        """Declare every outstanding gap lost (call at the end of the stream)."""
        events: list[Event] = []
        self._close_retired(events)
        self._expire(self._max_seq + 1, events)
        return events

    # -- SSRC changes

    def _switch(self, ssrc: int, arrival_sample: int) -> list[Event]:
        """Start following ``ssrc`` on this m-line; the current stream is retired."""
        old = self.ssrc
        assert old is not None
        events: list[Event] = []
        again = self._retired.pop(ssrc, None)
        if again is not None:
            # The SSRC comes back with newer packets: a new stream; its old gaps are lost.
            current = self._save()
            self._load(again)
            self._expire(self._max_seq + 1, events)
            self._load(current)
        self._retired[old] = self._save()
        while len(self._retired) > _MAX_RETIRED:
            self._close_one(next(iter(self._retired)), events)
        self._fresh()
        self.ssrc_changes += 1
        self._anchor = max(arrival_sample, self._end)
        events.append(
            Anomaly("ssrc-change", f"SSRC {old:#010x} replaced by {ssrc:#010x}", self.channel)
        )
        return events

    def _predates_switch(self, state: dict[str, object], seq: int, ts: int) -> bool:
        """Whether a packet of the retired stream ``state`` belongs before the switch (a
        late or reordered one) rather than restarting that SSRC."""
        top = state["_max_seq"]
        ref = state["_ref_ts"]
        offset = state["_offset"]
        assert isinstance(top, int) and isinstance(ref, int) and isinstance(offset, int)
        delta = ((seq - top + 0x8000) & 0xFFFF) - 0x8000
        if delta <= 0:
            return -delta < max(self.reorder_window, _MAX_TRACKED_GAP)
        ext_ts = ref + ((ts - ref + _TS_HALF) & 0xFFFFFFFF) - _TS_HALF
        return delta < self.reorder_window and ext_ts + offset < self._anchor

    def _push_retired(self, ssrc: int, data: bytes, arrival_sample: int) -> list[Event]:
        current = self._save()
        self._load(self._retired[ssrc])
        try:
            return self._push(data, arrival_sample)
        finally:
            self._retired[ssrc] = self._save()
            self._load(current)

    def _close_one(self, ssrc: int, events: list[Event]) -> None:
        current = self._save()
        self._load(self._retired.pop(ssrc))
        self._expire(self._max_seq + 1, events)
        self._load(current)

    def _close_retired(self, events: list[Event]) -> None:
        """The retired streams' late packets are now too late: their gaps are lost."""
        for ssrc in list(self._retired):
            self._close_one(ssrc, events)

    def _note_gap(self, first: int, last_excl: int, events: list[Event]) -> None:
        if last_excl - first > _MAX_TRACKED_GAP:
            count = last_excl - first
            self.lost += count
            events.append(Anomaly("loss", _seq_range(first, last_excl - 1), self.channel, count))
            return
        for ext in range(first, last_excl):
            self._missing.add(ext)
            self._missing_order.append(ext)

    def _expire(self, before: int, events: list[Event]) -> None:
        # Coalesce consecutive lost sequence numbers into one anomaly per run.
        run: list[int] = []
        order = self._missing_order
        while order and order[0] < before:
            ext = order.popleft()
            if ext not in self._missing:
                continue
            self._missing.discard(ext)
            self.lost += 1
            self._declared_lost.add(ext)
            self._declared_order.append(ext)
            if len(self._declared_order) > _MAX_TRACKED_GAP:
                self._declared_lost.discard(self._declared_order.popleft())
            if run and ext == run[1] + 1:
                run[1] = ext
                continue
            if run:
                events.append(self._loss(run[0], run[1]))
            run = [ext, ext]
        if run:
            events.append(self._loss(run[0], run[1]))

    def _loss(self, first: int, last: int) -> Anomaly:
        return Anomaly("loss", _seq_range(first, last), self.channel, last - first + 1)


def _seq_range(first: int, last: int) -> str:
    if first == last:
        return f"seq {first & 0xFFFF}"
    return f"seq {first & 0xFFFF}..{last & 0xFFFF}"
