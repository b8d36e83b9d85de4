"""Control plans: when an integration sends start-streaming and stop-streaming.

A plan turns a :class:`~mgsim.sim.call.Call` into timed actions, following ASAPP's guidance
to integrators:

``whole``
    start as soon as the media session is up, stop at the end: everything is transcribed.
``connect``
    start when the customer is connected to a person (not during IVR prompts), stop for
    hold and transfer ringback and start again after, stop at the end.
``guard``
    ``connect``, plus a PCI guard: stop ``margin_before_ms`` before each sensitive span and
    start again ``margin_after_ms`` after it, as an agent desktop does when the agent opens
    and closes the payment screen.

The default margins are 1.5 s before and 1 s after. The one after matters on Amazon
Connect: a reader started with ``NOW`` begins at the Kinesis fragment in progress, which
holds up to one fragment (1 s in mgsim's Connect producer) of audio from *before* the
start, so a shorter margin lets the end of a card number through.

>>> from mgsim.sim.call import load_sample
>>> call = load_sample("card_payment")
>>> [(a.action, a.at_ms) for a in Plan("guard").actions(call)][:3]
[('start', 400.0), ('stop', 19230.0), ('start', 27560.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mgsim.errors import ConfigError
from mgsim.sim.call import Call

__all__ = ["ControlAction", "Plan"]

PlanKind = Literal["whole", "connect", "guard"]
_NOT_CONNECTED = frozenset({"ivr", "hold", "transfer"})
FIRST_ACTION_MS = 20.0  # the media session must be up before start-streaming can find the call


@dataclass(frozen=True, slots=True)
class ControlAction:
    """One planned request; ``guards`` names the sensitive span a guard stop protects."""

    at_ms: float
    action: Literal["start", "stop"]
    reason: str
    guards: str | None = None


Window = tuple[float, float]


def _subtract(windows: list[Window], holes: list[Window]) -> list[Window]:
    out = windows
    for lo, hi in sorted(holes):
        nxt: list[Window] = []
        for a, b in out:
            if hi <= a or lo >= b:
                nxt.append((a, b))
                continue
            if lo > a:
                nxt.append((a, lo))
            if hi < b:
                nxt.append((hi, b))
        out = nxt
    return [(a, b) for a, b in out if b - a > 0]


@dataclass(frozen=True, slots=True)
class Plan:
    """A control plan; see the module docstring. Margins are in milliseconds."""

    kind: PlanKind = "guard"
    margin_before_ms: float = 1500.0
    margin_after_ms: float = 1000.0

    def __post_init__(self) -> None:
        if self.kind not in ("whole", "connect", "guard"):
            raise ConfigError(f"unknown plan {self.kind!r}: use whole, connect or guard")
        if self.margin_before_ms < 0 or self.margin_after_ms < 0:
            raise ConfigError("plan margins must be >= 0 ms")

    def describe(self) -> str:
        """What the plan does, in one sentence (the CLI's and the lab's plan header).

        >>> Plan("whole").describe()
        'whole: start when media is up, stop at hang-up; no stop for sensitive spans'
        >>> Plan("guard", 0, 500).describe()
        'guard: as connect, plus stop 0 ms before and start 500 ms after each sensitive span'
        """
        if self.kind == "whole":
            return "whole: start when media is up, stop at hang-up; no stop for sensitive spans"
        if self.kind == "connect":
            return (
                "connect: start when the caller reaches a person, stop for IVR, hold and "
                "transfer ringback; no stop for sensitive spans"
            )
        return (
            f"guard: as connect, plus stop {self.margin_before_ms:.0f} ms before and start "
            f"{self.margin_after_ms:.0f} ms after each sensitive span"
        )

    def windows(self, call: Call) -> list[Window]:
        """The intervals (ms) during which this plan wants streaming on."""
        end = call.duration_ms
        if self.kind == "whole":
            return [(FIRST_ACTION_MS, end)]
        human = [s for s in call.segments if s.kind == "speech"]
        start = max(FIRST_ACTION_MS, min((s.start_ms for s in human), default=FIRST_ACTION_MS))
        holes = [(s.start_ms, s.end_ms) for s in call.segments if s.kind in _NOT_CONNECTED]
        windows = _subtract([(start, end)], holes)
        if self.kind == "guard":
            spans = [
                (s.start_ms - self.margin_before_ms, s.end_ms + self.margin_after_ms)
                for s in call.sensitive
            ]
            windows = _subtract(windows, spans)
        return windows

    def actions(self, call: Call) -> list[ControlAction]:
        """start/stop actions in time order."""
        sensitive = (
            [
                (s.start_ms - self.margin_before_ms, s.end_ms + self.margin_after_ms, s.label)
                for s in call.sensitive
            ]
            if self.kind == "guard"
            else []
        )
        out: list[ControlAction] = []
        for lo, hi in self.windows(call):
            out.append(ControlAction(float(lo), "start", self._why(lo, sensitive, "after")))
            label = self._guarded(hi, sensitive)
            reason = f"PCI guard: before {label}" if label else "call flow"
            out.append(ControlAction(float(hi), "stop", reason, label))
        return out

    @staticmethod
    def _guarded(t: float, spans: list[tuple[float, float, str]]) -> str | None:
        return next((label for lo, _, label in spans if t == lo), None)

    @staticmethod
    def _why(t: float, spans: list[tuple[float, float, str]], side: str) -> str:
        for _, hi, label in spans:
            if t == hi:
                return f"PCI guard: {side} {label}"
        return "call flow"
