"""Watching an event loop for stalls: how late a ticker task wakes up.

Everything a server does runs on one event loop (:mod:`mgsim.transports.hub`), so a blocking
call on a request or media path (an import, a file read, CPU work) delays every live
session's audio for as long as it blocks. :class:`LoopWatch` measures exactly that from
inside the loop: a task that asks to wake every ``period_s`` and records how much later than
asked it woke. A loop that never blocks wakes it within a millisecond or two; a stall shows
as one late wake-up of its length. Tests and ``benchmarks/loop_stalls.py`` use it; it never
judges the speed of the code, only whether the loop stopped.

On a shared machine a process can also be late because the operating system did not run it;
that is not the loop's doing. :attr:`LoopWatch.worst_cpu_s` therefore also records the
longest late wake-up counted in CPU time of the loop's thread: a blocking import or
computation spends that time on the thread, a descheduled process does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["LoopWatch"]


class LoopWatch:
    """A ticker on the running loop; :attr:`worst_s` is the longest stall seen so far.

    >>> async def demo() -> float:
    ...     watch = LoopWatch(period_s=0.001).start()
    ...     await asyncio.sleep(0.01)
    ...     await watch.stop()
    ...     return watch.ticks
    >>> asyncio.run(demo()) > 0
    True
    """

    def __init__(self, period_s: float = 0.005) -> None:
        self.period_s = period_s
        self.worst_s = 0.0
        self.worst_cpu_s = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LoopWatch:
        """Start ticking on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def reset(self) -> None:
        self.worst_s = self.worst_cpu_s = 0.0

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        cpu = time.thread_time
        while True:
            due = loop.time() + self.period_s
            cpu_due = cpu() + self.period_s
            await asyncio.sleep(self.period_s)
            late = loop.time() - due
            # CPU this thread spent beyond the period: the loop's own work while it was due.
            late_cpu = cpu() - cpu_due
            self.ticks += 1
            if late > self.worst_s:
                self.worst_s = late
            if late_cpu > self.worst_cpu_s:
                self.worst_cpu_s = late_cpu
