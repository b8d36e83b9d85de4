"""Frame lateness at the server, in constant memory.

A real-time sender emits each media message at its media time; the server notes when it
arrives. For one session, ``arrival - media_time`` is constant when nothing is late, so the
lateness of a message is how far that difference exceeds the smallest one seen so far in
the session: the first message (or the best-placed one) is the reference. This needs no
shared clock between sender and server, only the media time the message itself carries
(the end of the audio it placed on the call's timeline).

>>> h = LatenessHistogram()
>>> for ms in (0.0, 0.4, 1.2, 25.0):
...     h.add(ms)
>>> h.count, h.percentile(50), h.percentile(100)
(4, 0.4, 25.0)
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LatenessHistogram", "SessionLateness"]

_BUCKET_MS = 0.1
_MAX_MS = 5000.0


class LatenessHistogram:
    """Counts of lateness values in 0.1 ms buckets up to 5 s (later ones share the last).

    Percentiles are the upper edge of the bucket holding the rank, so they never
    understate; ``max_ms`` is exact.
    """

    def __init__(self) -> None:
        self._buckets = [0] * (int(_MAX_MS / _BUCKET_MS) + 1)
        self._last = len(self._buckets) - 1
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        """Record one lateness value (negative values count as 0)."""
        # Called for every media message of every call: plain comparisons, no builtins.
        if ms > 0.0:
            index = math.ceil(ms / _BUCKET_MS - 1e-9)
            if index > self._last:
                index = self._last
            if ms > self.max_ms:
                self.max_ms = ms
        else:
            index = 0
        self._buckets[index] += 1
        self.count += 1

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) in ms; 0.0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(self.count * q / 100.0))
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                return min(round(index * _BUCKET_MS, 1), round(self.max_ms, 1))
        return round(self.max_ms, 1)

    def reset(self) -> None:
        """Forget every value (a benchmark measures from a clean start)."""
        self._buckets = [0] * len(self._buckets)
        self.count = 0
        self.max_ms = 0.0

    def as_dict(self) -> dict[str, Any]:
        """``count``, ``p50_ms``, ``p99_ms``, ``max_ms``."""
        return {
            "count": self.count,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "max_ms": round(self.max_ms, 1),
        }


class SessionLateness:
    """Lateness of one session's media messages against its own best-placed message."""

    __slots__ = ("_add", "_best", "_histogram")

    def __init__(self, histogram: LatenessHistogram) -> None:
        self._histogram = histogram
        self._add = histogram.add
        self._best = math.inf

    def observe(self, arrival_ms: float, media_ms: float) -> None:
        """A media message whose audio ends at ``media_ms`` arrived at ``arrival_ms``."""
        offset = arrival_ms - media_ms
        if offset < self._best:
            self._best = offset
        self._add(offset - self._best)
