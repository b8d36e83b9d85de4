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
import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "LoopClock", "SystemClock", "VirtualClock", "virtual_time"]

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


class LoopClock:
    """The running asyncio loop's time, for discrete-event simulation.

    Under :func:`virtual_time` the loop fast-forwards whenever every task is waiting, so
    concurrent coroutines (media being fed, a client retrying a stop, a server spending
    injected latency) interleave exactly as they would in real time, at no cost. Without it
    this is simply real time. Use it only from the loop's own thread.
    """

    def __init__(self, *, epoch: float = _VIRTUAL_EPOCH) -> None:
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._epoch = epoch
        self._pinned: float | None = None

    def now(self) -> float:
        if self._pinned is not None:
            return self._pinned
        return self._loop.time() - self._t0

    @property
    def virtual(self) -> bool:
        """True while the loop runs under :func:`virtual_time`: time then jumps whenever
        every task waits, so work done outside the loop (a worker thread) would take no
        simulated time while the rest of the call rushes ahead of it."""
        return self._loop in _VIRTUAL_LOOPS

    def pin(self, t: float | None) -> None:
        """Report ``t`` as the time until unpinned with ``pin(None)`` (never earlier than
        the loop's own time).

        A discrete-event step that handles, in one go, several events all due before
        anything else can happen (the loop's next timer) pins each one's time while
        handling it, so what it records is what stepping event by event would have
        recorded. Unpin before awaiting.
        """
        self._pinned = None if t is None else max(t, self._loop.time() - self._t0)

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self._epoch + self.now(), UTC)

    def sleep(self, seconds: float) -> None:
        raise RuntimeError("LoopClock cannot block: await asleep() from a coroutine")

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, t: float) -> None:
        """Sleep until ``now() >= t`` (no-op when ``t`` has passed)."""
        await asyncio.sleep(max(0.0, t - self.now()))


_VIRTUAL_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
"""Loops inside :func:`virtual_time` now."""


@contextlib.contextmanager
def virtual_time() -> Iterator[None]:
    """Context manager making the running loop's time virtual (see :class:`LoopClock`).

    >>> async def demo() -> float:
    ...     with virtual_time():
    ...         clock = LoopClock()
    ...         await asyncio.sleep(3600)
    ...         return round(clock.now())
    >>> asyncio.run(demo())
    3600
    """
    from aiotools import VirtualClock as _AioVirtualClock

    loop = asyncio.get_running_loop()
    _VIRTUAL_LOOPS.add(loop)
    with _AioVirtualClock().patch_loop():
        # aiotools lets a timer due within 1 ms of another fire with it, early; a
        # discrete-event simulation needs every event at its own time. Virtual time moves
        # by exact differences, so a fine resolution cannot stall the loop.
        coarse = getattr(loop, "_clock_resolution", None)
        setattr(loop, "_clock_resolution", 1e-9)  # noqa: B010
        try:
            yield
        finally:
            setattr(loop, "_clock_resolution", coarse)  # noqa: B010
            _VIRTUAL_LOOPS.discard(loop)
