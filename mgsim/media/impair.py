"""Seeded network impairments of any platform's wire messages, with a record of what was done.

:func:`impair` takes an encoder's :class:`~mgsim.media._base.Wire` sequence and returns an
:class:`Impaired` result: the wires as the gateway would receive them, and an
:class:`ImpairReport` saying, per media stream, which messages were lost, duplicated,
reordered or delayed, so a test can check the gateway's accounting against it exactly.

What each platform's transport can do, and so what is allowed:

* ``siprec``, RTP over UDP: loss, duplicate, reorder, jitter, bursts (SIP is untouched);
* ``twilio``, a WebSocket over TCP: loss (Twilio omits media it never got), jitter, bursts;
* ``genesysaudiohook``, a WebSocket over TCP: jitter, bursts;
* ``amazonconnect``, PutMedia over HTTP: jitter, bursts.

Asking for an impairment a transport cannot have raises :class:`~mgsim.errors.ConfigError`.
AudioHook and Kinesis Video run over TCP, which neither loses nor reorders: audio a
platform never got upstream is not a network effect (AudioHook reports it with a
``discarded`` message, a protocol event rather than a lost frame), so loss there is refused.

Rules that keep the effects faithful and the accounting exact:

* **Control messages are never dropped, duplicated or reordered** (Twilio ``connected``,
  ``start``, ``stop``; AudioHook text messages; SIP requests). On an ordered transport they
  are delayed with the rest of the byte stream; SIP goes on its own socket and is untouched.
* **Ordered transports stay ordered**: jitter and bursts only move ``at_ms`` (the arrival
  time), never later than the next message's. A Twilio loss removes the ``media`` message;
  its ``chunk`` and ``timestamp`` gap shows it, and ``sequenceNumber`` stays consecutive
  because Twilio numbers the messages it actually sends.
* **RTP arrives in arrival order**: each packet's arrival is its send time plus a uniform
  jitter delay in ``[0, jitter_ms]``; a reordered packet arrives just after the next packet
  of its stream; a duplicate is a second copy with its own delay. Media never crosses a SIP
  message (a re-INVITE or the BYE is a barrier), so what the decoder does with media around
  a pause or the end of the call is not mixed into these effects. ``jitter_ms`` is at most
  1,000 ms, so no packet is displaced beyond a receiver's 64-packet reorder window.
* **Bursts**: at a media message, with probability ``burst``, the transport stalls for
  ``burst_ms``; everything due during the stall arrives together at its end, in order.
* **Edges** (``keep_edges``, default True): the first and last media message of each
  stream are never lost, reordered or given a delay of their own, and the first packet of
  an RTP stream keeps its arrival time. A receiver sees loss only between two
  messages it got, and an RTP receiver anchors a stream's timeline on its first packet's
  arrival; with ``keep_edges=False`` edge losses happen and are reported as ``unseen``.

>>> import numpy as np
>>> from mgsim.media import twilio
>>> from mgsim.media._base import StereoCall
>>> call = StereoCall(np.ones(1600, np.int16), np.ones(1600, np.int16))
>>> out = impair(twilio.encode(call, guid="CA" + "0" * 32), "twilio", loss=0.3, seed=4)
>>> report = out.report
>>> (report.sent, report.dropped, len(out.wires) == 2 + report.delivered + 1)
(20, 4, True)
>>> report.streams["outbound"].dropped_frames
(2, 4, 6)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mgsim.errors import ConfigError
from mgsim.media._base import Wire
from mgsim.media.impair_report import Impaired, ImpairReport, StreamReport

__all__ = [
    "ALLOWED",
    "IMPAIR_NAMESPACES",
    "MAX_JITTER_MS",
    "ImpairReport",
    "Impaired",
    "Impairment",
    "StreamReport",
    "impair",
]

IMPAIR_NAMESPACES = ("siprec", "twilio", "genesysaudiohook", "amazonconnect")

ALLOWED: dict[str, frozenset[str]] = {
    "siprec": frozenset({"loss", "duplicate", "reorder", "jitter_ms", "burst"}),
    "twilio": frozenset({"loss", "jitter_ms", "burst"}),
    "genesysaudiohook": frozenset({"jitter_ms", "burst"}),
    "amazonconnect": frozenset({"jitter_ms", "burst"}),
}
"""Which impairments each namespace's transport can have (see the module docstring)."""

MAX_JITTER_MS = 1000.0
"""Largest jitter: 50 packets of 20 ms, inside an RTP receiver's 64-packet reorder window."""

_TWILIO_MEDIA = re.compile(r'"event"\s*:\s*"media"')
_TWILIO_TRACK = re.compile(r'"track"\s*:\s*"([^"]*)"')
_TWILIO_SEQ = re.compile(r'("sequenceNumber"\s*:\s*")(\d+)(")')


@dataclass(frozen=True, slots=True)
class Impairment:
    """What to do to a wire sequence; :meth:`apply` does it.

    ``loss``, ``duplicate``, ``reorder`` and ``burst`` are per-media-message
    probabilities in ``[0, 1)``; ``jitter_ms`` the largest extra delay (uniform, at most
    :data:`MAX_JITTER_MS`); ``burst_ms`` the length of a stall; ``seed`` fixes every draw.

    >>> Impairment(loss=0.1).check("amazonconnect")
    Traceback (most recent call last):
    ...
    mgsim.errors.ConfigError: amazonconnect cannot have loss: its transport allows burst, jitter_ms
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    jitter_ms: float = 0.0
    burst: float = 0.0
    burst_ms: float = 200.0
    keep_edges: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "burst"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1), got {value!r}")
        if not isinstance(self.jitter_ms, int | float) or not (
            0.0 <= self.jitter_ms <= MAX_JITTER_MS
        ):
            raise ConfigError(
                f"jitter_ms must be in [0, {MAX_JITTER_MS:g}], got {self.jitter_ms!r}"
            )
        if not isinstance(self.burst_ms, int | float) or not 0.0 <= self.burst_ms <= 60_000.0:
            raise ConfigError(f"burst_ms must be in [0, 60000], got {self.burst_ms!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def active(self) -> frozenset[str]:
        """The impairments this one asks for (non-zero)."""
        names = ("loss", "duplicate", "reorder", "jitter_ms", "burst")
        return frozenset(n for n in names if getattr(self, n))

    def check(self, namespace: str) -> None:
        """Raise :class:`~mgsim.errors.ConfigError` if ``namespace`` cannot have these."""
        allowed = ALLOWED.get(namespace)
        if allowed is None:
            raise ConfigError(
                f"unknown namespace {namespace!r}; expected one of {IMPAIR_NAMESPACES}"
            )
        refused = sorted(self.active - allowed)
        if refused:
            raise ConfigError(
                f"{namespace} cannot have {', '.join(refused)}: its transport allows "
                f"{', '.join(sorted(allowed))}"
            )

    def apply(self, wires: Iterable[Wire], namespace: str) -> Impaired:
        """Impair ``wires`` of ``namespace`` (see the module docstring)."""
        self.check(namespace)
        return _Run(self, namespace, list(wires)).run()


def impair(
    wires: Iterable[Wire],
    namespace: str,
    *,
    loss: float = 0.0,
    duplicate: float = 0.0,
    reorder: float = 0.0,
    jitter_ms: float = 0.0,
    burst: float = 0.0,
    burst_ms: float = 200.0,
    keep_edges: bool = True,
    seed: int = 0,
) -> Impaired:
    """Impair ``wires`` of ``namespace``: ``Impairment(...).apply(wires, namespace)``."""
    return Impairment(
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
        jitter_ms=jitter_ms,
        burst=burst,
        burst_ms=burst_ms,
        keep_edges=keep_edges,
        seed=seed,
    ).apply(wires, namespace)


# --------------------------------------------------------------------------- internals


def _stream_of(namespace: str, wire: Wire) -> str | None:
    """The media stream ``wire`` belongs to, or None for a control message."""
    if namespace == "siprec":
        return wire.channel if wire.channel.startswith("rtp:") else None
    if namespace == "twilio":
        data = wire.data
        text = data if isinstance(data, str) else bytes(data[:200]).decode("utf-8", "replace")
        if _TWILIO_MEDIA.search(text[:64]) is None:
            return None
        match = _TWILIO_TRACK.search(text[:200])
        return match.group(1) if match else ""
    if namespace == "genesysaudiohook":
        return wire.channel if isinstance(wire.data, bytes | bytearray | memoryview) else None
    return wire.channel if wire.channel == "kvs" else None


@dataclass(slots=True)
class _Stream:
    indexes: list[int] = field(default_factory=list)  # positions in the input, in order
    dropped: list[int] = field(default_factory=list)  # ordinals
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    unseen: int = 0


@dataclass(slots=True)
class _Item:
    """One message on its way: where it came from and when it arrives."""

    source: int  # position in the input
    arrival: float
    order: float  # tie-break among equal arrivals
    wire: Wire
    stream: str | None
    copy: bool = False
    pinned: bool = False  # arrival must not move (an RTP stream's anchor)


class _Run:
    def __init__(self, spec: Impairment, namespace: str, wires: list[Wire]) -> None:
        self.spec = spec
        self.namespace = namespace
        self.wires = wires
        self.streams: dict[str, _Stream] = {}
        self.stream_of: list[str | None] = []
        self.ordinal: list[int] = []
        for i, wire in enumerate(wires):
            name = _stream_of(namespace, wire)
            self.stream_of.append(name)
            if name is None:
                self.ordinal.append(-1)
                continue
            stream = self.streams.setdefault(name, _Stream())
            self.ordinal.append(len(stream.indexes))
            stream.indexes.append(i)
        rng = np.random.default_rng(spec.seed)
        # A fixed number of draws per message, so one knob never reshuffles the others.
        self.draws = rng.random((len(wires), 6))
        self.edges: set[int] = set()
        if spec.keep_edges:
            for stream in self.streams.values():
                self.edges.update((stream.indexes[0], stream.indexes[-1]))

    def run(self) -> Impaired:
        dropped = self._drop()
        unordered = self.namespace == "siprec"
        out = self._unordered(dropped) if unordered else self._ordered(dropped)
        self._count_reordered(out)
        self._count_unseen(out)
        report = ImpairReport(
            self.namespace,
            {
                name: StreamReport(
                    sent=len(s.indexes),
                    dropped_frames=tuple(s.dropped),
                    unseen=s.unseen,
                    duplicated=s.duplicated,
                    reordered=s.reordered,
                    delayed=s.delayed,
                )
                for name, s in sorted(self.streams.items())
            },
        )
        return Impaired(tuple(item.wire for item in out), report)

    def _drop(self) -> set[int]:
        loss = self.spec.loss
        out: set[int] = set()
        if not loss:
            return out
        for stream in self.streams.values():
            for k, i in enumerate(stream.indexes):
                if i not in self.edges and self.draws[i, 0] < loss:
                    out.add(i)
                    stream.dropped.append(k)
        return out

    def _count_unseen(self, items: list[_Item]) -> None:
        """Losses no receiver can see: after the last message it gets (no later sequence
        number shows the gap) and, for RTP, below the first packet to arrive (the receiver
        starts counting there; Twilio's ``chunk`` starts at 1, so a leading gap shows)."""
        first: dict[str, int] = {}
        top: dict[str, int] = {}
        for item in items:
            if item.stream is None:
                continue
            ordinal = self.ordinal[item.source]
            first.setdefault(item.stream, ordinal)
            top[item.stream] = max(top.get(item.stream, -1), ordinal)
        for name, stream in self.streams.items():
            if name not in top:
                stream.unseen = len(stream.dropped)
                continue
            low = first[name] if self.namespace == "siprec" else -1
            stream.unseen = sum(1 for k in stream.dropped if k > top[name] or k < low)

    def _delay(self, i: int) -> float:
        return float(self.draws[i, 3]) * self.spec.jitter_ms

    def _stall(self, items: list[_Item]) -> None:
        """Bursts: a stall begun at a media message holds everything due before its end."""
        spec = self.spec
        if not spec.burst:
            return
        until = -math.inf
        for item in items:
            if item.pinned:
                continue
            if item.arrival < until:
                item.arrival = until
            elif (
                item.stream is not None
                and not item.copy
                and item.source not in self.edges
                and self.draws[item.source, 5] < spec.burst
            ):
                until = item.arrival + spec.burst_ms
                item.arrival = until

    # -- ordered transports (TCP): only arrival times move

    def _ordered(self, dropped: set[int]) -> list[_Item]:
        items: list[_Item] = []
        arrival = -math.inf
        renumber = self.namespace == "twilio" and bool(dropped)
        removed = 0
        for i, wire in enumerate(self.wires):
            if i in dropped:
                removed += 1
                continue
            if renumber and removed:
                wire = _renumber(wire, removed)
            delay = 0.0 if i in self.edges else self._delay(i)
            arrival = max(arrival, wire.at_ms + delay)
            items.append(_Item(i, arrival, float(i), wire, self.stream_of[i]))
        self._stall(items)
        for item in items:
            self._retime(item)
        return items

    # -- RTP over UDP: arrival order

    def _unordered(self, dropped: set[int]) -> list[_Item]:
        spec = self.spec
        out: list[_Item] = []
        segment: list[_Item] = []
        firsts = {s.indexes[0] for s in self.streams.values()}

        def close_segment(barrier: float) -> None:
            segment.sort(key=lambda it: (it.arrival, it.order))
            self._stall(segment)
            for item in segment:
                if item.arrival > barrier:
                    item.arrival = barrier
                self._retime(item)
            segment.sort(key=lambda it: (it.arrival, it.order))
            out.extend(segment)
            segment.clear()

        # The next delivered packet of each stream, within the segment, for reordering.
        next_of = self._next_delivered(dropped)
        for i, wire in enumerate(self.wires):
            name = self.stream_of[i]
            if name is None:
                close_segment(wire.at_ms)
                out.append(_Item(i, wire.at_ms, float(i), wire, None))
                continue
            if i in dropped:
                continue
            pinned = spec.keep_edges and i in firsts
            delay = 0.0 if pinned or i in self.edges else self._delay(i)
            item = _Item(i, wire.at_ms + delay, float(i), wire, name, pinned=pinned)
            j = next_of.get(i)
            if (
                spec.reorder
                and not pinned
                and i not in self.edges
                and j is not None
                and self.draws[i, 2] < spec.reorder
            ):
                later = self.wires[j].at_ms + (0.0 if j in self.edges else self._delay(j))
                if later >= item.arrival:
                    item.arrival, item.order = later, j + 0.5
            segment.append(item)
            if spec.duplicate and not pinned and self.draws[i, 1] < spec.duplicate:
                extra = float(self.draws[i, 4]) * spec.jitter_ms
                segment.append(
                    _Item(i, item.arrival + extra, item.order + 0.25, wire, name, copy=True)
                )
                self.streams[name].duplicated += 1
        close_segment(math.inf)
        return out

    def _next_delivered(self, dropped: set[int]) -> dict[int, int]:
        """For each delivered packet, the next delivered packet of its stream with no SIP
        message between them."""
        last: dict[str, int] = {}
        out: dict[int, int] = {}
        for i in range(len(self.wires)):
            name = self.stream_of[i]
            if name is None:
                last.clear()
                continue
            if i in dropped:
                continue
            prev = last.get(name)
            if prev is not None:
                out[prev] = i
            last[name] = i
        return out

    def _retime(self, item: _Item) -> None:
        if item.arrival != item.wire.at_ms:
            if item.stream is not None and not item.copy:
                self.streams[item.stream].delayed += 1
            item.wire = Wire(item.arrival, item.wire.channel, item.wire.data)

    def _count_reordered(self, items: list[_Item]) -> None:
        """A message is reordered when its first copy arrives after a later message of its
        stream (as a receiver sees it: by sequence, not by arrival time)."""
        highest: dict[str, int] = {}
        seen: set[int] = set()
        for item in items:
            name = item.stream
            if name is None or item.source in seen:
                continue
            seen.add(item.source)
            ordinal = self.ordinal[item.source]
            top = highest.get(name, -1)
            if ordinal < top:
                self.streams[name].reordered += 1
            else:
                highest[name] = ordinal


def _renumber(wire: Wire, removed: int) -> Wire:
    """A Twilio message with ``sequenceNumber`` lowered by the ``removed`` messages before it."""
    data = wire.data
    if not isinstance(data, str):
        return wire
    match = _TWILIO_SEQ.search(data)
    if match is None:
        return wire
    number = int(match.group(2)) - removed
    text = data[: match.start(2)] + str(number) + data[match.end(2) :]
    return Wire(wire.at_ms, wire.channel, text)
