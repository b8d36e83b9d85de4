"""Transcript delivery: an in-process sink and an HTTP sender.

The vendor POSTs each utterance to the integrator's URL **once**: a failed delivery (an
error status, a refused connection, a timeout) is logged and counted, and the transcript is
not sent again; it stays available from the conversation API. mgsim does the same, so a
delivery never raises into the gateway: every attempt ends as a :class:`DeliveryRecord`
with one of three outcomes:

* ``delivered``: the receiver answered 2xx;
* ``failed``: it answered something else (``status`` says what) or not at all (``error``
  names the exception);
* ``dropped``: fault injection discarded the body before sending (no request was made).

Both targets share :class:`WebhookTarget`: ``await target.deliver(body)``. Each holds the
records (and the sink the bodies) of its most recent ``keep`` deliveries
(:data:`DEFAULT_KEEP`); older ones are let go so that a long run stays in flat memory, while
``counts`` and ``offered`` go on counting every delivery.
:class:`WebhookSink` keeps every body in memory (tests, notebooks);
:class:`WebhookSender` POSTs it as JSON with the shared secret in a header (the vendor's
"secret in a header" option; mTLS and OAuth2 are not simulated). The secret never appears in
logs, records, reprs or errors: records name the target without credentials or query
string, and exception texts are scrubbed of the secret before they are kept.

Both targets take the same faults (:class:`WebhookFaults`, or the keyword arguments
``drop_rate``, ``drop_next``, ``delay_ms``, ``seed``): a seeded share of bodies, or the next
N, is dropped (recorded as ``dropped``, never silently missing), and each delivery can wait
on the clock first. So every body handed to a target is accounted for::

    target.offered == sum(target.counts.values()) + target.in_flight

>>> import asyncio
>>> sink = WebhookSink()
>>> asyncio.run(sink.deliver({"type": "transcript", "externalConversationId": "g"})).outcome
'delivered'
>>> sink.for_guid("g")[0]["type"]
'transcript'
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from mgsim.clock import Clock, SystemClock
from mgsim.errors import ConfigError

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_SECRET_HEADER",
    "DeliveryRecord",
    "Outcome",
    "WebhookFaults",
    "WebhookSender",
    "WebhookSink",
    "WebhookTarget",
]

log = logging.getLogger("mgsim.webhooks")

DEFAULT_SECRET_HEADER = "X-Webhook-Secret"
"""Header that carries the shared secret unless the integrator names another."""

DEFAULT_KEEP = 10_000
"""Deliveries whose records (and, for the sink, bodies) a target keeps, most recent first."""

Outcome = Literal["delivered", "failed", "dropped"]
_OUTCOMES: tuple[Outcome, ...] = ("delivered", "failed", "dropped")


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """How one webhook delivery ended (never holds the secret or the body's text).

    ``guid``, ``role`` and ``start`` come from the body; ``elapsed_ms`` is the time spent
    sending (not counting an injected delay).
    """

    seq: int
    target: str
    outcome: Outcome
    guid: str | None = None
    role: str | None = None
    start: int | None = None
    status: int | None = None
    error: str | None = None
    delay_ms: float = 0.0
    elapsed_ms: float = 0.0


class WebhookTarget(Protocol):
    """Where the gateway sends transcript webhooks."""

    records: list[DeliveryRecord]

    async def deliver(self, body: Mapping[str, Any]) -> DeliveryRecord: ...


def _describe(body: Mapping[str, Any]) -> tuple[str | None, str | None, int | None]:
    sender = body.get("sender")
    response = body.get("autotranscribeResponse")
    role = sender.get("role") if isinstance(sender, Mapping) else None
    start = response.get("start") if isinstance(response, Mapping) else None
    guid = body.get("externalConversationId")
    return (
        guid if isinstance(guid, str) else None,
        role if isinstance(role, str) else None,
        start if isinstance(start, int) else None,
    )


@dataclass(frozen=True, slots=True)
class WebhookFaults:
    """Fault injection on webhook delivery (``SimulatorConfig.webhook_faults``).

    ``drop_rate``: the seeded share of bodies discarded unsent; ``drop_next``: the next N
    bodies are discarded whatever the rate; ``delay_ms``: a wait before each delivery, a
    number or a ``(low, high)`` range drawn uniformly.

    >>> WebhookFaults(drop_next=2).as_kwargs()["drop_next"]
    2
    """

    drop_rate: float = 0.0
    drop_next: int = 0
    delay_ms: float | tuple[float, float] = 0.0

    def __post_init__(self) -> None:
        _check_faults(self.drop_rate, self.drop_next, self.delay_ms)

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`WebhookSink` or :class:`WebhookSender`."""
        return {"drop_rate": self.drop_rate, "drop_next": self.drop_next, "delay_ms": self.delay_ms}


def _check_faults(
    drop_rate: float, drop_next: int, delay_ms: float | tuple[float, float]
) -> tuple[float, float]:
    if not 0.0 <= drop_rate <= 1.0:
        raise ConfigError(f"drop_rate must be in [0, 1], got {drop_rate}")
    if isinstance(drop_next, bool) or not isinstance(drop_next, int) or drop_next < 0:
        raise ConfigError("drop_next must be an integer >= 0")
    low, high = delay_ms if isinstance(delay_ms, tuple) else (delay_ms, delay_ms)
    if not 0 <= low <= high:
        raise ConfigError("delay_ms must be >= 0 (and low <= high for a range)")
    return float(low), float(high)


def _append_bounded(items: list[Any], item: Any, keep: int) -> None:
    items.append(item)
    if len(items) > keep:
        # A list (not a deque) so that callers may slice and compare it; trimming from the
        # front moves at most ``keep`` pointers.
        del items[: len(items) - keep]


class _Records:
    """Records, counts and the fault draws both targets share."""

    target: str

    def __init__(
        self,
        *,
        drop_rate: float = 0.0,
        drop_next: int = 0,
        delay_ms: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        clock: Clock | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        self.delay_range_ms = _check_faults(drop_rate, drop_next, delay_ms)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"keep must be an integer >= 1, got {keep!r}")
        self.keep = keep
        """How many of the most recent delivery records (and sink bodies) are kept."""
        self.drop_rate = drop_rate
        self._drop_next = drop_next
        self._rng = random.Random(seed)
        self._clock: Clock = clock or SystemClock()
        self.records: list[DeliveryRecord] = []
        """The most recent :attr:`keep` deliveries' records, oldest first."""
        self._counts: Counter[str] = Counter()
        self._seq = itertools.count()
        self.offered = 0
        """Bodies handed to this target so far."""
        self.in_flight = 0
        """Deliveries begun and not yet recorded (waiting out a delay, or sending)."""

    @property
    def counts(self) -> dict[str, int]:
        """Deliveries per outcome (every outcome present, zero when none), all of them
        since the start or the last ``clear()``, not only the records kept."""
        return {o: self._counts[o] for o in _OUTCOMES}

    def _record(self, record: DeliveryRecord) -> None:
        self._counts[record.outcome] += 1
        _append_bounded(self.records, record, self.keep)

    @property
    def drops_pending(self) -> int:
        """How many of the next deliveries :meth:`drop_next` will still drop."""
        return self._drop_next

    def drop_next(self, n: int) -> None:
        """Drop the next ``n`` deliveries (replacing any earlier ``drop_next``)."""
        _check_faults(0.0, n, 0.0)
        self._drop_next = n

    def _begin(self, body: Mapping[str, Any]) -> tuple[DeliveryRecord, float]:
        """Number the delivery and draw its faults: a ``dropped`` record (already kept), or
        the record to complete and the delay (ms) to wait first."""
        seq = next(self._seq)
        self.offered += 1
        guid, role, start = _describe(body)
        # Both draws are made for every body, so one fault setting never shifts the other's.
        by_rate = self._rng.random() < self.drop_rate
        low, high = self.delay_range_ms
        delay = self._rng.uniform(low, high) if high > low else low
        reason = None
        if self._drop_next > 0:
            self._drop_next -= 1
            reason = "dropped by fault injection (drop_next)"
        elif by_rate:
            reason = "dropped by fault injection (drop_rate)"
        if reason is not None:
            record = DeliveryRecord(seq, self.target, "dropped", guid, role, start, error=reason)
            log.info("webhook %d for guid %s %s", seq, guid, reason)
            self._record(record)
            return record, 0.0
        pending = DeliveryRecord(seq, self.target, "delivered", guid, role, start, delay_ms=delay)
        return pending, delay


class WebhookSink(_Records):
    """Keeps the bodies it is given, in order (the most recent ``keep``); every delivery
    that is not dropped succeeds.

    Faults (keyword arguments, see :class:`WebhookFaults`) wait on ``clock``; with a delay,
    :meth:`deliver_nowait` stores the body from a task on the running loop once the delay is
    over (or sleeps on the clock when no loop runs).
    """

    target = "memory"

    def __init__(
        self,
        *,
        drop_rate: float = 0.0,
        drop_next: int = 0,
        delay_ms: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        clock: Clock | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        super().__init__(
            drop_rate=drop_rate,
            drop_next=drop_next,
            delay_ms=delay_ms,
            seed=seed,
            clock=clock,
            keep=keep,
        )
        self.bodies: list[dict[str, Any]] = []
        """The most recent :attr:`keep` bodies stored, oldest first."""
        self._tasks: set[asyncio.Task[DeliveryRecord]] = set()

    def _store(self, pending: DeliveryRecord, body: Mapping[str, Any]) -> DeliveryRecord:
        _append_bounded(self.bodies, dict(body), self.keep)
        self._record(pending)
        return pending

    async def _store_later(
        self, pending: DeliveryRecord, body: Mapping[str, Any]
    ) -> DeliveryRecord:
        # The caller counted the delivery in flight, so it is accounted for from the start.
        try:
            await self._clock.asleep(pending.delay_ms / 1000.0)
            return self._store(pending, body)
        finally:
            self.in_flight -= 1

    def deliver_nowait(self, body: Mapping[str, Any]) -> DeliveryRecord | None:
        """Store ``body`` (a copy) and record it; None when a delay defers the storing."""
        pending, delay = self._begin(body)
        if pending.outcome == "dropped":
            return pending
        if not delay:
            return self._store(pending, body)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._clock.sleep(delay / 1000.0)
            return self._store(pending, body)
        self.in_flight += 1
        task = loop.create_task(self._store_later(pending, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def deliver(self, body: Mapping[str, Any]) -> DeliveryRecord:
        pending, delay = self._begin(body)
        if pending.outcome == "dropped":
            return pending
        if not delay:
            return self._store(pending, body)
        self.in_flight += 1
        return await self._store_later(pending, body)

    def for_guid(self, guid: str) -> list[dict[str, Any]]:
        """The bodies delivered for one call."""
        return [b for b in self.bodies if b.get("externalConversationId") == guid]

    def clear(self) -> None:
        """Forget the bodies, records and counts kept so far."""
        self.bodies.clear()
        self.records.clear()
        self._counts.clear()


class WebhookSender(_Records):
    """POSTs webhook bodies to ``url`` with ``secret`` in ``secret_header_name``.

    ``client`` is an ``httpx.AsyncClient`` (for tests, one with a ``MockTransport``); without
    one the sender makes its own on first use and closes it in :meth:`aclose`. Faults:
    ``drop_rate`` discards that share of bodies unsent, ``drop_next`` the next N,
    ``delay_ms`` (a number, or a ``(low, high)`` range drawn uniformly) waits on ``clock``
    before each send; ``seed`` makes the draws reproducible. No delivery is ever retried.
    """

    def __init__(
        self,
        url: str,
        *,
        secret_header_name: str = DEFAULT_SECRET_HEADER,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
        drop_rate: float = 0.0,
        drop_next: int = 0,
        delay_ms: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
        keep: int = DEFAULT_KEEP,
    ) -> None:
        super().__init__(
            drop_rate=drop_rate,
            drop_next=drop_next,
            delay_ms=delay_ms,
            seed=seed,
            clock=clock,
            keep=keep,
        )
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError("the webhook url is not a valid URL") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError("the webhook url must be an absolute http(s) URL")
        if not secret_header_name or not secret_header_name.isascii():
            raise ConfigError("secret_header_name must be a non-empty ASCII header name")
        self.url = url
        port = f":{parsed.port}" if parsed.port else ""
        self.target = f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
        self.secret_header_name = secret_header_name
        self._secret = secret
        self._client = client
        self._owns_client = client is None
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        secret = "set" if self._secret else "none"
        return (
            f"WebhookSender(target={self.target!r}, header={self.secret_header_name!r}, "
            f"secret={secret}, drop_rate={self.drop_rate}, counts={self.counts})"
        )

    def _scrub(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def _client_for_use(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)
        return self._client

    async def deliver(self, body: Mapping[str, Any]) -> DeliveryRecord:
        """Send one body (or drop it); never raises for a delivery that goes wrong."""
        pending, delay = self._begin(body)
        if pending.outcome == "dropped":
            return pending
        self.in_flight += 1
        try:
            return await self._send(pending, body, delay)
        finally:
            self.in_flight -= 1

    async def _send(
        self, pending: DeliveryRecord, body: Mapping[str, Any], delay: float
    ) -> DeliveryRecord:
        seq, guid = pending.seq, pending.guid
        if delay:
            await self._clock.asleep(delay / 1000.0)
        headers = {self.secret_header_name: self._secret} if self._secret else {}
        began = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            response = await self._client_for_use().post(self.url, json=dict(body), headers=headers)
            status = response.status_code
        except Exception as exc:  # the vendor logs and drops every failure, whatever it is
            error = self._scrub(f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - began) * 1000.0
        ok = status is not None and 200 <= status < 300
        record = dataclasses.replace(
            pending,
            outcome="delivered" if ok else "failed",
            status=status,
            error=error,
            elapsed_ms=elapsed,
        )
        if not ok:
            log.warning(
                "webhook %d for guid %s to %s failed (%s); not retried",
                seq,
                guid,
                self.target,
                f"status {status}" if status is not None else error,
            )
        self._record(record)
        return record

    async def deliver_all(self, bodies: Iterable[Mapping[str, Any]]) -> list[DeliveryRecord]:
        """Deliver bodies one after another, in order."""
        return [await self.deliver(body) for body in bodies]

    async def aclose(self) -> None:
        """Close the HTTP client if the sender made it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
