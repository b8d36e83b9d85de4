"""One clock abstraction for the whole simulator.

The same code runs in **virtual time** (instant and deterministic: tests, notebooks, CI) and
in **real time** (paced: demos and load over real sockets), in the spirit of simpy's
``Environment`` and ``RealtimeEnvironment``. Nothing in mgsim calls ``time.sleep`` or
``time.time`` directly; it asks its clock.

>>> clock = VirtualClock()
>>> clock.sleep(1.5)
>>> clock.now()
1.5
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]

# 2026-01-05 09:00:00 UTC: a fixed, ordinary weekday morning for virtual runs.
_VIRTUAL_EPOCH = 1767603600.0


class Clock(Protocol):
    """What mgsim needs of time."""

    def now(self) -> float:
        """Seconds on a monotonic scale (differences are durations)."""

    def wall(self) -> datetime:
        """The current UTC date and time (for quotas, timestamps and tokens)."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (virtual clocks just advance)."""

    async def asleep(self, seconds: float) -> None:
        """Await ``seconds`` (virtual clocks just advance)."""


class SystemClock:
    """Real time: ``time.monotonic`` and the system's UTC wall clock."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


class VirtualClock:
    """Virtual time: starts at ``start`` and moves only when someone sleeps or advances it.

    ``wall()`` is a fixed epoch plus the virtual time, so runs are reproducible to the
    microsecond. Thread-safe: the in-process transport and the caller may share it.
    """

    def __init__(self, start: float = 0.0, *, epoch: float = _VIRTUAL_EPOCH) -> None:
        self._t = float(start)
        self._epoch = epoch
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self._epoch + self.now(), UTC)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._t += seconds

    def advance_to(self, t: float) -> None:
        """Move time forward to ``t`` if it lies ahead; otherwise do nothing."""
        with self._lock:
            self._t = max(self._t, t)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        # Yield once, so that concurrent requests interleave as they would in real time.
        await asyncio.sleep(0)
