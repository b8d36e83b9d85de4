"""Spike arrest and daily quota, as the vendor's API gateway applies them."""

from __future__ import annotations

from collections import deque
from datetime import date

from mgsim.clock import Clock

__all__ = ["DailyQuota", "SpikeArrest"]


class SpikeArrest:
    """At most ``per_second`` requests in any sliding one-second window."""

    def __init__(self, per_second: int, clock: Clock) -> None:
        self.per_second = per_second
        self._clock = clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        now = self._clock.now()
        while self._times and now - self._times[0] >= 1.0:
            self._times.popleft()
        if len(self._times) >= self.per_second:
            return False
        self._times.append(now)
        return True


class DailyQuota:
    """At most ``limit`` requests per UTC day; the count resets at 00:00 UTC."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self.limit = limit
        self._clock = clock
        self._day: date | None = None
        self.used = 0

    def allow(self) -> bool:
        today = self._clock.wall().date()
        if today != self._day:
            self._day, self.used = today, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True
