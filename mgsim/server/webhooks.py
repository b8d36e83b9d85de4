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

Both targets share :class:`WebhookTarget`: ``await target.deliver(body)``.
:class:`WebhookSink` keeps every body in memory (tests, notebooks);
:class:`WebhookSender` POSTs it as JSON with the shared secret in a header (the vendor's
"secret in a header" option; mTLS and OAuth2 are not simulated), optionally after a delay
and with a seeded drop rate. The secret never appears in logs, records, reprs or errors:
records name the target without credentials or query string, and exception texts are
scrubbed of the secret before they are kept.

>>> import asyncio
>>> sink = WebhookSink()
>>> asyncio.run(sink.deliver({"type": "transcript", "externalConversationId": "g"})).outcome
'delivered'
>>> sink.for_guid("g")[0]["type"]
'transcript'
"""

from __future__ import annotations

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
    "DEFAULT_SECRET_HEADER",
    "DeliveryRecord",
    "Outcome",
    "WebhookSender",
    "WebhookSink",
    "WebhookTarget",
]

log = logging.getLogger("mgsim.webhooks")

DEFAULT_SECRET_HEADER = "X-Webhook-Secret"
"""Header that carries the shared secret unless the integrator names another."""

Outcome = Literal["delivered", "failed", "dropped"]


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


class _Records:
    def __init__(self) -> None:
        self.records: list[DeliveryRecord] = []
        self._seq = itertools.count()

    @property
    def counts(self) -> dict[str, int]:
        """Deliveries per outcome (every outcome present, zero when none)."""
        seen = Counter(r.outcome for r in self.records)
        return {o: seen.get(o, 0) for o in ("delivered", "failed", "dropped")}


class WebhookSink(_Records):
    """Keeps every body it is given, in order; every delivery succeeds."""

    target = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def deliver_nowait(self, body: Mapping[str, Any]) -> DeliveryRecord:
        """Store ``body`` (a copy) and record it as delivered."""
        self.bodies.append(dict(body))
        guid, role, start = _describe(body)
        record = DeliveryRecord(next(self._seq), self.target, "delivered", guid, role, start)
        self.records.append(record)
        return record

    async def deliver(self, body: Mapping[str, Any]) -> DeliveryRecord:
        return self.deliver_nowait(body)

    def for_guid(self, guid: str) -> list[dict[str, Any]]:
        """The bodies delivered for one call."""
        return [b for b in self.bodies if b.get("externalConversationId") == guid]

    def clear(self) -> None:
        self.bodies.clear()
        self.records.clear()


class WebhookSender(_Records):
    """POSTs webhook bodies to ``url`` with ``secret`` in ``secret_header_name``.

    ``client`` is an ``httpx.AsyncClient`` (for tests, one with a ``MockTransport``); without
    one the sender makes its own on first use and closes it in :meth:`aclose`. Faults:
    ``drop_rate`` discards that share of bodies unsent, ``delay_ms`` (a number, or a
    ``(low, high)`` range drawn uniformly) waits on ``clock`` before each send; ``seed``
    makes the draws reproducible. No delivery is ever retried.
    """

    def __init__(
        self,
        url: str,
        *,
        secret_header_name: str = DEFAULT_SECRET_HEADER,
        secret: str | None = None,
        client: httpx.AsyncClient | None = None,
        drop_rate: float = 0.0,
        delay_ms: float | tuple[float, float] = 0.0,
        seed: int | None = None,
        timeout_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ConfigError("the webhook url is not a valid URL") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ConfigError("the webhook url must be an absolute http(s) URL")
        if not 0.0 <= drop_rate <= 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1], got {drop_rate}")
        low, high = delay_ms if isinstance(delay_ms, tuple) else (delay_ms, delay_ms)
        if not 0 <= low <= high:
            raise ConfigError("delay_ms must be >= 0 (and low <= high for a range)")
        if not secret_header_name or not secret_header_name.isascii():
            raise ConfigError("secret_header_name must be a non-empty ASCII header name")
        self.url = url
        port = f":{parsed.port}" if parsed.port else ""
        self.target = f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
        self.secret_header_name = secret_header_name
        self._secret = secret
        self._client = client
        self._owns_client = client is None
        self.drop_rate = drop_rate
        self.delay_range_ms = (float(low), float(high))
        self.timeout_s = timeout_s
        self._rng = random.Random(seed)
        self._clock: Clock = clock or SystemClock()

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
        seq = next(self._seq)
        guid, role, start = _describe(body)
        # Both draws are made for every body, so one fault setting never shifts the other's.
        dropped = self._rng.random() < self.drop_rate
        low, high = self.delay_range_ms
        delay = self._rng.uniform(low, high) if high > low else low
        if dropped:
            record = DeliveryRecord(seq, self.target, "dropped", guid, role, start)
            log.info("webhook %d for guid %s dropped by fault injection", seq, guid)
            self.records.append(record)
            return record
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
        record = DeliveryRecord(
            seq,
            self.target,
            "delivered" if ok else "failed",
            guid,
            role,
            start,
            status,
            error,
            delay,
            elapsed,
        )
        if not ok:
            log.warning(
                "webhook %d for guid %s to %s failed (%s); not retried",
                seq,
                guid,
                self.target,
                f"status {status}" if status is not None else error,
            )
        self.records.append(record)
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
