"""Per-request fault rules for the simulated gateway's control plane.

A :class:`FaultRule` picks requests by endpoint and, optionally, namespace and guid, and
gives them an effect: an error answer (a vendor code such as ``503-01``), added latency
(fixed or drawn from a small seeded distribution), or a timeout. A :class:`FaultRules` set
holds the rules of one simulator, in the order they were added, with their counters.

How a vendor request meets the rules (after credentials, body size and rate limits):

1. the rules are tried in the order they were added; expired rules are skipped;
2. a rule *matches* when endpoint, namespace and guid agree (unset fields match anything);
3. a matching rule draws against its ``probability`` (from its own seeded stream); when the
   draw succeeds the rule *applies*: it decides the request's fate and no later rule, nor the
   simulator's :class:`~mgsim.server.config.Faults`, is consulted;
4. a rule with a ``count`` expires after applying that many times;
5. when no rule applies, the simulator's ``Faults`` are drawn as before (the fallback).

Effects, which may be combined as noted:

* ``error``: answer that code in the vendor envelope instead of processing the request
  (after the rule's latency, if any). A rejected request changes no state.
* ``latency_ms`` / ``distribution`` / ``spread_ms``: the request waits before it takes effect
  (start and stop wait while holding their call, so a second request meets 409-202).
  ``fixed``: ``latency_ms``; ``uniform``: plus U(0, ``spread_ms``); ``normal``: N(``latency_ms``,
  ``spread_ms``) cut at 0; ``exponential``: plus an exponential tail of mean ``spread_ms``.
* ``timeout="hang"``: the request is never processed and no answer comes: the gateway holds
  it until the client gives up (disconnects), at most ``SimulatorConfig.hang_cap_s``, and
  then answers 504-01.
* ``timeout="lost-response"``: the request *is* processed (a stop takes effect) but its
  answer is withheld the same way, so the client times out and its retry meets 409-201.

>>> rules = FaultRules(seed=1)
>>> rule = rules.add(FaultRule(endpoint="stop-streaming", error="503-01", count=1))
>>> rules.decide(FaultRequest("stop-streaming", "siprec", "1")).error
'503-01'
>>> rules.decide(FaultRequest("stop-streaming", "siprec", "1")) is None  # expired
True
>>> (rule.matched, rule.applied, rule.expired)
(1, 1, True)
"""

from __future__ import annotations

import itertools
import math
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from mgsim.errors import ConfigError
from mgsim.gateway.guids import canonical_guid
from mgsim.server.rules import guid_form_problem

__all__ = [
    "DISTRIBUTIONS",
    "ENDPOINTS",
    "INJECTABLE_CODES",
    "MAX_RULES",
    "TIMEOUTS",
    "ActiveRule",
    "FaultDecision",
    "FaultRequest",
    "FaultRule",
    "FaultRuleError",
    "FaultRules",
]

Endpoint = Literal[
    "any",
    "start-streaming",
    "stop-streaming",
    "twilio-media-stream-url",
    "conversation-messages",
]
Distribution = Literal["fixed", "uniform", "normal", "exponential"]
Timeout = Literal["hang", "lost-response"]

ENDPOINTS: tuple[str, ...] = (
    "any",
    "start-streaming",
    "stop-streaming",
    "twilio-media-stream-url",
    "conversation-messages",
)
DISTRIBUTIONS: tuple[str, ...] = ("fixed", "uniform", "normal", "exponential")
TIMEOUTS: tuple[str, ...] = ("hang", "lost-response")
NAMESPACES: tuple[str, ...] = ("siprec", "twilio", "amazonconnect", "genesysaudiohook")

INJECTABLE_CODES: frozenset[str] = frozenset(
    {
        "401-01",  # credentials revoked or rotated under the integrator
        "403-01",
        "409-202",  # another request for the guid is pending
        "409-203",  # a SIPREC BYE is being processed
        "429-01",
        "500-01",
        "500-201",
        "503-01",
        "504-01",
    }
)
"""Codes a rule may answer: what a well-formed request can still meet from the gateway's
side. Codes that describe the request itself (400-01, 400-201, ...) are left to the
request."""

MAX_RULES = 100
"""Rules one simulator holds at most (the HTTP API must not grow memory without bound)."""

_JSON_NAMES = {
    "endpoint": "endpoint",
    "namespace": "namespace",
    "guid": "guid",
    "error": "error",
    "latency_ms": "latencyMs",
    "distribution": "distribution",
    "spread_ms": "spreadMs",
    "timeout": "timeout",
    "count": "count",
    "probability": "probability",
    "name": "name",
}


class FaultRuleError(ConfigError):
    """A fault rule that cannot be applied; ``field`` names the offending field (Python
    spelling, ``""`` for the rule as a whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field or 'rule'}: {message}")
        self.field = field
        self.message = message

    @property
    def json_field(self) -> str:
        """The field as the HTTP API spells it (``latencyMs``)."""
        return _JSON_NAMES.get(self.field, self.field)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Which requests to disturb, and how (see the module docstring for the semantics).

    >>> FaultRule(endpoint="stop-streaming", guid="1", timeout="lost-response", count=1).effect
    'lost-response'
    >>> FaultRule(error="503-01", latency_ms=250, probability=0.3).effect
    '503-01 after latency'
    """

    endpoint: Endpoint = "any"
    namespace: str | None = None
    guid: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    distribution: Distribution = "fixed"
    spread_ms: float = 0.0
    timeout: Timeout | None = None
    count: int | None = None
    probability: float = 1.0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise FaultRuleError("endpoint", f"must be one of: {', '.join(ENDPOINTS)}")
        if self.namespace is not None:
            if self.namespace not in NAMESPACES:
                raise FaultRuleError("namespace", f"must be one of: {', '.join(NAMESPACES)}")
            if self.endpoint in ("twilio-media-stream-url", "conversation-messages"):
                raise FaultRuleError(
                    "namespace", f"{self.endpoint} requests carry no namespace to match"
                )
        if self.guid is not None:
            if not isinstance(self.guid, str) or not 1 <= len(self.guid) <= 128:
                raise FaultRuleError("guid", "must be 1 to 128 characters")
            if self.endpoint == "twilio-media-stream-url":
                raise FaultRuleError("guid", "twilio-media-stream-url requests carry no guid")
            # The form start-streaming asks (a whole match): a guid no call can have, such
            # as one with a trailing newline, would silently match nothing.
            problem = guid_form_problem(self.namespace, self.guid)
            if problem is not None:
                raise FaultRuleError("guid", problem.removeprefix("the guid ").strip())
        if self.error is not None and self.error not in INJECTABLE_CODES:
            raise FaultRuleError("error", f"must be one of: {', '.join(sorted(INJECTABLE_CODES))}")
        for name in ("latency_ms", "spread_ms"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultRuleError(name, "must be a number")
            if not (math.isfinite(value) and 0 <= value <= 600_000):
                raise FaultRuleError(name, "must be between 0 and 600000 (ms)")
        if self.distribution not in DISTRIBUTIONS:
            raise FaultRuleError("distribution", f"must be one of: {', '.join(DISTRIBUTIONS)}")
        if self.distribution == "fixed" and self.spread_ms:
            raise FaultRuleError("spread_ms", "needs a distribution other than fixed")
        if self.distribution != "fixed" and not self.spread_ms:
            raise FaultRuleError("spread_ms", f"must be > 0 for distribution {self.distribution}")
        if self.timeout is not None:
            if self.timeout not in TIMEOUTS:
                raise FaultRuleError("timeout", f"must be one of: {', '.join(TIMEOUTS)}")
            if self.error is not None:
                raise FaultRuleError("timeout", "cannot be combined with error")
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise FaultRuleError("count", "must be an integer >= 1 (or unset: no limit)")
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p <= 1.0:
            raise FaultRuleError("probability", "must be in (0, 1]")
        if self.name is not None and not 1 <= len(self.name) <= 64:
            raise FaultRuleError("name", "must be 1 to 64 characters")
        if self.effect == "none":
            raise FaultRuleError("", "needs an effect: error, latency_ms or timeout")

    @property
    def has_latency(self) -> bool:
        return bool(self.latency_ms) or self.distribution != "fixed"

    @property
    def effect(self) -> str:
        """A short description of what the rule does (for listings and logs)."""
        main: str
        if self.timeout is not None:
            main = self.timeout
        elif self.error is not None:
            main = self.error
        else:
            return "latency" if self.has_latency else "none"
        return f"{main} after latency" if self.has_latency else main

    def matches(self, request: FaultRequest) -> bool:
        """True when the rule's endpoint, namespace and guid fit ``request``."""
        return (
            (self.endpoint == "any" or self.endpoint == request.endpoint)
            and (self.namespace is None or self.namespace == request.namespace)
            and (self.guid is None or _same_guid(self.guid, request.guid))
        )

    def draw_latency_ms(self, rng: random.Random) -> float:
        """One latency draw, in milliseconds (never negative)."""
        base, spread = self.latency_ms, self.spread_ms
        if self.distribution == "uniform":
            return base + rng.uniform(0.0, spread)
        if self.distribution == "normal":
            return max(0.0, rng.gauss(base, spread))
        if self.distribution == "exponential":
            return base + rng.expovariate(1.0 / spread)
        return base

    def to_json(self) -> dict[str, Any]:
        """The rule as the HTTP API shows it (camelCase; unset fields left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[_JSON_NAMES[f.name]] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from its HTTP form; :class:`FaultRuleError` names a bad field."""
        by_json = {v: k for k, v in _JSON_NAMES.items()}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in by_json:
                raise FaultRuleError(key, "unknown field; check the spelling")
            kwargs[by_json[key]] = value
        return cls(**kwargs)


def _same_guid(rule: str, request: str | None) -> bool:
    # UUIDs compare case-insensitively, as the gateway keys calls (mgsim.gateway.guids).
    return request is not None and (
        rule == request or canonical_guid(rule) == canonical_guid(request)
    )


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """What a rule can see of a request: its endpoint name and, where it has them, the
    namespace and guid (``externalId`` for conversation messages)."""

    endpoint: str
    namespace: str | None = None
    guid: str | None = None


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fate of one request: wait ``delay_s``, then answer ``error``, or withhold the
    answer (``timeout``), or process it normally. ``rule_id`` is None for the simulator's
    own :class:`~mgsim.server.config.Faults`."""

    rule_id: str | None
    delay_s: float = 0.0
    error: str | None = None
    timeout: Timeout | None = None


class ActiveRule:
    """A rule in a :class:`FaultRules` set, with its id and counters.

    ``matched`` counts requests the rule fitted (whether or not its probability draw
    succeeded); ``applied`` counts those it decided.
    """

    def __init__(self, rule_id: str, rule: FaultRule, rng: random.Random) -> None:
        self.id = rule_id
        self.rule = rule
        self.matched = 0
        self.applied = 0
        self._rng = rng

    @property
    def remaining(self) -> int | None:
        """Applications left before the rule expires (None: no limit)."""
        return None if self.rule.count is None else max(0, self.rule.count - self.applied)

    @property
    def expired(self) -> bool:
        return self.remaining == 0

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, **self.rule.to_json(), "matched": self.matched}
        out["applied"] = self.applied
        if self.remaining is not None:
            out["remaining"] = self.remaining
        out["expired"] = self.expired
        return out

    def __repr__(self) -> str:
        return (
            f"ActiveRule({self.id!r}, {self.rule.effect}, matched={self.matched}, "
            f"applied={self.applied}, remaining={self.remaining})"
        )

    def _try(self, request: FaultRequest) -> FaultDecision | None:
        if self.expired or not self.rule.matches(request):
            return None
        self.matched += 1
        if self.rule.probability < 1.0 and self._rng.random() >= self.rule.probability:
            return None
        self.applied += 1
        delay_ms = self.rule.draw_latency_ms(self._rng) if self.rule.has_latency else 0.0
        return FaultDecision(self.id, delay_ms / 1000.0, self.rule.error, self.rule.timeout)


class FaultRules:
    """The ordered fault rules of one simulator; safe to change from another thread.

    Each rule draws from its own random stream, seeded by ``seed`` and the rule's id, so
    adding a rule never shifts another rule's draws, and the same seed, rules and requests
    give the same faults.
    """

    def __init__(self, rules: tuple[FaultRule, ...] = (), *, seed: int | None = None) -> None:
        self._seed = seed
        self._rules: list[ActiveRule] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.on_remove: Callable[[list[str]], None] | None = None
        """Told the ids of rules removed or cleared (the server drops their counters)."""
        for rule in rules:
            self.add(rule)

    def add(self, rule: FaultRule) -> ActiveRule:
        """Append ``rule`` (tried after the existing ones); returns it with its id."""
        if not isinstance(rule, FaultRule):
            raise FaultRuleError("", "must be a FaultRule")
        with self._lock:
            if len(self._rules) >= MAX_RULES:
                raise FaultRuleError("", f"at most {MAX_RULES} rules; remove some first")
            rule_id = f"r{next(self._ids)}"
            rng = random.Random(None if self._seed is None else f"{self._seed}/{rule_id}")
            active = ActiveRule(rule_id, rule, rng)
            self._rules.append(active)
            return active

    def remove(self, rule_id: str) -> None:
        """Drop one rule; :class:`KeyError` if there is none with that id."""
        with self._lock:
            found = next((i for i, a in enumerate(self._rules) if a.id == rule_id), None)
            if found is not None:
                del self._rules[found]
        if found is None:
            raise KeyError(rule_id)
        self._removed([rule_id])

    def clear(self) -> None:
        """Drop every rule (ids are not reused)."""
        with self._lock:
            ids = [active.id for active in self._rules]
            self._rules.clear()
        self._removed(ids)

    def _removed(self, ids: list[str]) -> None:
        if ids and self.on_remove is not None:
            self.on_remove(ids)

    def get(self, rule_id: str) -> ActiveRule:
        with self._lock:
            for active in self._rules:
                if active.id == rule_id:
                    return active
        raise KeyError(rule_id)

    def __iter__(self) -> Iterator[ActiveRule]:
        with self._lock:
            return iter(list(self._rules))

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"FaultRules({list(self)!r})"

    def to_json(self) -> list[dict[str, Any]]:
        return [active.to_json() for active in self]

    def decide(self, request: FaultRequest) -> FaultDecision | None:
        """The first rule that applies to ``request`` decides; None when none does."""
        with self._lock:
            for active in self._rules:
                decision = active._try(request)
                if decision is not None:
                    return decision
        return None
