"""The embedded simulator: a simulated gateway living in this process.

>>> sim = Simulator(virtual=True, seed=7)
>>> sim.gateway.calls
{}
>>> from mgsim.server.faults import FaultRule
>>> rule = sim.faults.add(FaultRule(endpoint="stop-streaming", error="503-01", count=1))
>>> rule.id
'r1'
>>> sim.close()

Its in-process transports honour the client's read timeout on the simulator's clock: an
answer that comes at or after the client's deadline raises :class:`httpx.ReadTimeout`, as a
real connection would, and a request the gateway holds (a timeout fault) ends when the
client gives up. So retries after a timeout work the same in virtual and in real time.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx

from mgsim.clock import Clock, SystemClock, VirtualClock
from mgsim.gateway import Gateway
from mgsim.gateway.calls import DEFAULT_KEEP_AUDIO_OF
from mgsim.server.app import DISCONNECT_AT, create_app
from mgsim.server.config import SimulatorConfig
from mgsim.server.faults import FaultRules
from mgsim.server.webhooks import WebhookSender, WebhookSink

__all__ = ["Simulator"]

T = TypeVar("T")


class _LoopThread:
    """An asyncio loop on a daemon thread (a forgotten close never blocks interpreter exit)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="mgsim-simulator", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


class _PortalTransport(httpx.BaseTransport):
    """Sync httpx transport that runs the ASGI app on the simulator's event-loop thread.

    httpx's ASGITransport is async-only; this hands each request to a long-lived loop in a
    background thread and waits for the buffered response.
    """

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        runner = self._sim._loop_thread()

        async def send() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            inner = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=body,
                extensions=request.extensions,
            )
            response = await self._sim.async_transport().handle_async_request(inner)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = runner.call(send())
        return httpx.Response(status, headers=headers, content=content, request=request)


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return float(value) if isinstance(value, int | float) else None


class _InProcessTransport(httpx.AsyncBaseTransport):
    """httpx's ASGITransport, plus the client's read timeout measured on the simulator's
    clock (ASGITransport itself has no timeouts: it awaits the app however long it takes).

    The app is told when the client gives up (scope extension ``DISCONNECT_AT``): a request
    held by a timeout fault, or slowed past that instant, stops keeping the client waiting
    then (the gateway still finishes a slow request, as a real server would). An answer that
    comes at or after the deadline raises :class:`httpx.ReadTimeout`. The app runs in the
    caller's task, so a request without faults is scheduled exactly as before.
    """

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._plain = httpx.ASGITransport(app=sim.app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = _read_timeout(request)
        if timeout is None:
            return await self._plain.handle_async_request(request)
        clock = self._sim.clock
        deadline = clock.now() + timeout
        app = self._sim.app

        async def told(scope: Any, receive: Any, send: Any) -> None:
            extensions = {**(scope.get("extensions") or {}), DISCONNECT_AT: deadline}
            await app({**scope, "extensions": extensions}, receive, send)

        response = await httpx.ASGITransport(app=told).handle_async_request(request)
        if clock.now() >= deadline:
            await response.aclose()
            raise httpx.ReadTimeout(f"no answer within {timeout:g} s", request=request)
        return response


class Simulator:
    """A simulated gateway with its clock, its call state and its ASGI app.

    ``virtual=True`` runs on a :class:`~mgsim.clock.VirtualClock` (instant, deterministic);
    ``seed`` makes ids and injected faults reproducible. ``sim.app`` can be served by any
    ASGI server; :class:`mgsim.Client` talks to it in-process by default.

    Faults: ``config.faults`` for every request, :attr:`faults` (per-request rules; also
    ``config.fault_rules`` and ``/_sim/v1/faults``) and ``config.webhook_faults`` for
    transcript delivery (see docs/FAULTS.md).
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Clock | None = None,
        virtual: bool = False,
        seed: int | None = None,
    ) -> None:
        if config is None:
            config = SimulatorConfig.from_env(seed=seed)
        elif seed is not None:
            raise ValueError("pass seed inside config, or config=None with seed=")
        self.config = config
        self.clock: Clock = clock or (VirtualClock() if virtual else SystemClock())
        self.gateway = Gateway(
            self.clock,
            random.Random(config.seed),
            keep_audio_of=min(DEFAULT_KEEP_AUDIO_OF, config.keep_calls),
            keep_calls=config.keep_calls,
        )
        # The webhook fault draws get their own seed, apart from the gateway's ids.
        webhook_seed = None if config.seed is None else config.seed + 2
        webhook_faults = config.webhook_faults.as_kwargs()
        self.webhooks: WebhookSink | WebhookSender = WebhookSink(
            seed=webhook_seed, clock=self.clock, **webhook_faults
        )
        if config.webhook_url:
            self.webhooks = WebhookSender(
                config.webhook_url,
                secret=config.webhook_secret,
                secret_header_name=config.webhook_secret_header,
                seed=config.seed,
                clock=self.clock,
                **webhook_faults,
            )
        self.gateway.transcription.webhooks = self.webhooks
        self.app = create_app(config, clock=self.clock, gateway=self.gateway)
        self._async_transport = _InProcessTransport(self)
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None

    @property
    def state(self) -> Any:
        """The server state (config, counters, limits) behind :attr:`app`."""
        return self.app.state.mgsim

    @property
    def faults(self) -> FaultRules:
        """The per-request fault rules: ``add(FaultRule(...))``, ``remove(id)``, ``clear()``,
        iterate for the rules with their counters."""
        rules: FaultRules = self.app.state.mgsim.rules
        return rules

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport for :class:`httpx.AsyncClient` that calls :attr:`app` directly."""
        return self._async_transport

    def sync_transport(self) -> httpx.BaseTransport:
        """An httpx transport for :class:`httpx.Client` (runs the app on a helper thread)."""
        return _PortalTransport(self)

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
            return self._runner

    def client(self, **kwargs: Any) -> Any:
        """A :class:`mgsim.Client` bound to this simulator."""
        from mgsim.client import Client

        return Client(simulator=self, **kwargs)

    def close(self) -> None:
        """Stop the helper thread, if one was started."""
        with self._lock:
            if self._runner is not None:
                self._runner.stop()
                self._runner = None

    def __enter__(self) -> Simulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
