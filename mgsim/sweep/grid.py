"""A sweep's grid: the axes, their validation, and the cells and scenarios they span.

A :class:`Grid` is the product of its axes — namespaces, plans, margins before and after a
sensitive span, control-latency distributions, error rates, stop strategies and calls —
times its seeds. Each combination of axis values is a *cell*; each seed in a cell is one
scenario. A cell is named by a key hashed from its values, the seeds and the content of its
call, so a sweep started again (or a larger grid sharing cells with a smaller one) finds the
cells it already has.

Control latency reuses the fault rules' distributions (:class:`~mgsim.server.faults.FaultRule`:
``fixed``, ``uniform``, ``normal``, ``exponential``) on every control request; an error rate
is the probability that a control request is answered 503-01 after its latency, so the
client's retries (and the PCI-safe stop's deadline) meet both.

>>> grid = Grid(namespaces=("twilio",), margins_before_ms=(0, 500), seeds=range(3))
>>> len(grid.cells()), grid.size
(2, 6)
>>> Grid(namespaces=("twillio",))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mgsim.sweep.grid.GridError: grid: unknown namespace 'twillio'; use siprec, twilio, ...
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mgsim.errors import ConfigError
from mgsim.server.faults import DISTRIBUTIONS, FaultRule, FaultRuleError
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import NAMESPACES, Scenario

__all__ = ["STRATEGIES", "Cell", "Grid", "GridError", "Latency", "call_digests", "load_calls"]

Strategy = Literal["naive", "confirm", "pci-safe"]
STRATEGIES: tuple[str, ...] = ("naive", "confirm", "pci-safe")
"""How the integration stops: ``naive`` sends one stop and assumes it worked; ``confirm``
retries per ASAPP's advice until the gateway confirms, without masking; ``pci-safe`` also
fails closed, masking the audio at the source when the stop is not confirmed in time."""

_PLANS = ("whole", "connect", "guard")
_FORMAT = 1  # bump when a row's meaning changes, so old cell files are not reused


class GridError(ConfigError):
    """A grid that cannot be run; raised before anything runs."""

    def __init__(self, message: str) -> None:
        super().__init__(f"grid: {message}")


@dataclass(frozen=True, slots=True)
class Latency:
    """A control-latency distribution, as a fault rule draws it (ms): ``fixed`` is
    ``latency_ms``; ``uniform`` adds U(0, ``spread_ms``); ``normal`` is N(``latency_ms``,
    ``spread_ms``) cut at 0; ``exponential`` adds an exponential tail of mean ``spread_ms``.

    >>> Latency.parse("exponential:100:200").label
    'exponential:100:200'
    >>> Latency.parse("fixed:250").rules()[0].latency_ms
    250.0
    """

    distribution: str = "fixed"
    latency_ms: float = 0.0
    spread_ms: float = 0.0

    def __post_init__(self) -> None:
        try:
            self._rule()  # the fault rules' own checks, so both accept the same values
        except FaultRuleError as exc:
            if exc.field:
                raise GridError(f"latency {self.label}: {exc}") from exc
            # a fixed 0 ms is "no latency", which a rule alone cannot say: allowed here

    @property
    def label(self) -> str:
        def num(x: float) -> str:
            return f"{x:g}"

        if self.distribution == "fixed":
            return f"fixed:{num(self.latency_ms)}"
        return f"{self.distribution}:{num(self.latency_ms)}:{num(self.spread_ms)}"

    @property
    def mean_ms(self) -> float:
        """The distribution's mean (the normal's ignores its cut at 0)."""
        extra = {"uniform": self.spread_ms / 2, "exponential": self.spread_ms}
        return self.latency_ms + extra.get(self.distribution, 0.0)

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``DIST:LATENCY[:SPREAD]`` (ms), e.g. ``fixed:200`` or ``uniform:100:300``."""
        parts = text.strip().split(":")
        if parts[0] not in DISTRIBUTIONS or len(parts) not in (2, 3):
            raise GridError(
                f"latency {text!r}: use DIST:LATENCY_MS[:SPREAD_MS] with DIST one of "
                f"{', '.join(DISTRIBUTIONS)} (e.g. fixed:200, exponential:50:200)"
            )
        try:
            numbers = [float(p) for p in parts[1:]]
        except ValueError:
            raise GridError(f"latency {text!r}: {parts[1:]} are not numbers (ms)") from None
        return cls(parts[0], *numbers)

    def _rule(self, error: str | None = None, probability: float = 1.0) -> FaultRule:
        return FaultRule(
            endpoint="any", error=error, probability=probability,
            latency_ms=float(self.latency_ms), distribution=self.distribution,  # type: ignore[arg-type]
            spread_ms=float(self.spread_ms),
        )  # fmt: skip

    def rules(self, error_rate: float = 0.0) -> tuple[FaultRule, ...]:
        """The fault rules giving every control request this latency and, with probability
        ``error_rate``, a 503-01 answer after it (the first rule that applies decides)."""
        out = []
        if error_rate > 0:
            out.append(self._rule("503-01", error_rate))
        if self.latency_ms or self.distribution != "fixed":
            out.append(self._rule())
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Cell:
    """One combination of axis values (every scenario in it differs only by its seed)."""

    namespace: str
    plan: str
    margin_before_ms: float
    margin_after_ms: float
    latency: Latency
    error_rate: float
    strategy: str
    call: str
    seeds: range
    call_digest: str = ""

    @property
    def key(self) -> str:
        """A stable name for the cell: its values, seeds and call content, hashed."""
        text = json.dumps(
            [_FORMAT, self.values(), [self.seeds.start, self.seeds.stop, self.seeds.step],
             self.call_digest],
            sort_keys=True,
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def values(self) -> dict[str, Any]:
        """The cell's axis values as plain columns (the same in rows and summaries)."""
        return {
            "namespace": self.namespace,
            "plan": self.plan,
            "margin_before_ms": float(self.margin_before_ms),
            "margin_after_ms": float(self.margin_after_ms),
            "latency": self.latency.label,
            "latency_mean_ms": self.latency.mean_ms,
            "error_rate": float(self.error_rate),
            "strategy": self.strategy,
            "call": self.call,
        }

    def scenario(self, call: Call, seed: int) -> Scenario:
        """The scenario for ``seed`` in this cell."""
        return Scenario(
            call,
            self.namespace,  # type: ignore[arg-type]
            Plan(self.plan, self.margin_before_ms, self.margin_after_ms),  # type: ignore[arg-type]
            fault_rules=self.latency.rules(self.error_rate),
            confirm_stop=self.strategy != "naive",
            fail_closed=self.strategy == "pci-safe",
            seed=seed,
        )


def _axis(name: str, values: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(values, str | bytes):
        values = (values,)
    out = tuple(values)
    if not out:
        raise GridError(f"the {name} axis is empty; give it at least one value")
    if len(set(out)) != len(out):
        raise GridError(f"the {name} axis repeats a value: {list(out)}")
    return out


@dataclass(frozen=True)
class Grid:
    """The axes of a sweep (see the module docstring). ``calls`` are sample names or paths
    to a call's ``.wav``/``.json`` (its word-level sidecar beside it); ``seeds`` is a range
    (or a count: ``range(seeds)``). Every value is checked when the grid is made."""

    namespaces: Sequence[str] = NAMESPACES
    plans: Sequence[str] = ("guard",)
    margins_before_ms: Sequence[float] = (1500.0,)
    margins_after_ms: Sequence[float] = (1000.0,)
    latencies: Sequence[Latency | str] = (Latency("fixed", 0.0),)
    error_rates: Sequence[float] = (0.0,)
    strategies: Sequence[str] = ("pci-safe",)
    calls: Sequence[str] = ("card_payment",)
    seeds: range | int = 10

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "namespaces", _axis("namespace", self.namespaces))
        for ns in self.namespaces:
            if ns not in NAMESPACES:
                raise GridError(f"unknown namespace {ns!r}; use {', '.join(NAMESPACES)}")
        set_(self, "plans", _axis("plan", self.plans))
        for plan in self.plans:
            if plan not in _PLANS:
                raise GridError(f"unknown plan {plan!r}; use {', '.join(_PLANS)}")
        for name in ("margins_before_ms", "margins_after_ms"):
            values = _axis(name, getattr(self, name))
            for m in values:
                if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m):
                    raise GridError(f"{name}: {m!r} is not a number of ms")
                if m < 0:
                    raise GridError(f"{name}: {m:g} ms is negative; margins are >= 0 ms")
            set_(self, name, tuple(float(m) for m in values))
        latencies = _axis("latency", self.latencies)
        set_(self, "latencies", tuple(
            lat if isinstance(lat, Latency) else Latency.parse(str(lat)) for lat in latencies
        ))  # fmt: skip
        rates = _axis("error rate", self.error_rates)
        for r in rates:
            if isinstance(r, bool) or not isinstance(r, int | float) or not 0.0 <= r < 1.0:
                raise GridError(f"error rate {r!r} must be in [0, 1)")
        set_(self, "error_rates", tuple(float(r) for r in rates))
        set_(self, "strategies", _axis("strategy", self.strategies))
        for s in self.strategies:
            if s not in STRATEGIES:
                raise GridError(f"unknown stop strategy {s!r}; use {', '.join(STRATEGIES)}")
        set_(self, "calls", _axis("call", self.calls))
        seeds = self.seeds
        if isinstance(seeds, bool) or not isinstance(seeds, int | range):
            raise GridError(f"seeds must be a count or a range, not {seeds!r}")
        if isinstance(seeds, int):
            seeds = range(seeds)
        if len(seeds) == 0 or seeds.step != 1 or seeds.start < 0:
            raise GridError(f"seeds {seeds} must be a non-empty range of seeds >= 0, step 1")
        set_(self, "seeds", seeds)
        load_calls(self.calls)  # every call must load before anything runs

    @property
    def size(self) -> int:
        """Scenarios in the grid."""
        assert isinstance(self.seeds, range)
        return len(self.cells()) * len(self.seeds)

    def cells(self) -> list[Cell]:
        """Every cell, in a fixed order (the axes' order, last axis fastest)."""
        assert isinstance(self.seeds, range)
        seeds = self.seeds
        digests = call_digests(self.calls)
        return [
            Cell(ns, plan, mb, ma, lat, rate, strat, call, seeds, digests[call])  # type: ignore[arg-type]
            for call, ns, plan, strat, rate, lat, ma, mb in itertools.product(
                self.calls, self.namespaces, self.plans, self.strategies, self.error_rates,
                self.latencies, self.margins_after_ms, self.margins_before_ms,
            )
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        assert isinstance(self.seeds, range)
        return {
            "namespaces": list(self.namespaces),
            "plans": list(self.plans),
            "margins_before_ms": list(self.margins_before_ms),
            "margins_after_ms": list(self.margins_after_ms),
            "latencies": [lat.label for lat in self.latencies],  # type: ignore[union-attr]
            "error_rates": list(self.error_rates),
            "strategies": list(self.strategies),
            "calls": list(self.calls),
            "seeds": [self.seeds.start, self.seeds.stop],
        }


def _digest(call: Call) -> str:
    h = hashlib.sha256(json.dumps(call.to_sidecar(), sort_keys=True).encode())
    h.update(call.audio.customer.tobytes())
    h.update(call.audio.agent.tobytes())
    return h.hexdigest()[:16]


# name -> (file's mtime, call, digest): a sweep reads each call once per process
_CACHE: dict[str, tuple[float, Call, str]] = {}


def load_calls(names: Iterable[str]) -> dict[str, Call]:
    """Load each call by sample name or path (cached per process while the file is
    unchanged); :class:`GridError` names one that cannot be loaded."""
    return {name: _load(name)[1] for name in names}


def call_digests(names: Iterable[str]) -> dict[str, str]:
    """A digest of each call's audio and sidecar (part of its cells' keys)."""
    return {name: _load(name)[2] for name in names}


def _load(name: str) -> tuple[float, Call, str]:
    try:
        path = Path(name)
        if path.suffix in (".wav", ".flac", ".json") or path.exists():
            if not path.exists():
                raise ConfigError(f"{path} does not exist")
            stamp = path.stat().st_mtime
            cached = _CACHE.get(name)
            if cached is None or cached[0] != stamp:
                call = Call.load(path)
                cached = _CACHE[name] = (stamp, call, _digest(call))
            return cached
        if name not in _CACHE:
            samples = [p.stem for p in list_samples()]
            if name not in samples:
                raise ConfigError(f"no sample call named {name!r}; samples: {', '.join(samples)}")
            call = load_sample(name)
            _CACHE[name] = (0.0, call, _digest(call))
        return _CACHE[name]
    except ConfigError as exc:
        raise GridError(f"call {name!r}: {exc}") from exc


def scenarios(cells: Sequence[Cell]) -> Iterator[tuple[int, int]]:
    """(cell index, seed) for every scenario of ``cells``, cell by cell."""
    for i, cell in enumerate(cells):
        for seed in cell.seeds:
            yield i, seed
