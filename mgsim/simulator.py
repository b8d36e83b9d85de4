"""The embedded simulator: a simulated gateway living in this process.

>>> sim = Simulator(virtual=True, seed=7)
>>> sim.gateway.calls
{}
>>> sim.close()
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
from mgsim.server.app import create_app
from mgsim.server.config import SimulatorConfig
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
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._sim.async_transport().handle_async_request(inner)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = runner.call(send())
        return httpx.Response(status, headers=headers, content=content, request=request)


class Simulator:
    """A simulated gateway with its clock, its call state and its ASGI app.

    ``virtual=True`` runs on a :class:`~mgsim.clock.VirtualClock` (instant, deterministic);
    ``seed`` makes ids and injected faults reproducible. ``sim.app`` can be served by any
    ASGI server; :class:`mgsim.Client` talks to it in-process by default.
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
        self.gateway = Gateway(self.clock, random.Random(config.seed))
        self.webhooks: WebhookSink | WebhookSender = WebhookSink()
        if config.webhook_url:
            self.webhooks = WebhookSender(
                config.webhook_url,
                secret=config.webhook_secret,
                secret_header_name=config.webhook_secret_header,
                seed=config.seed,
            )
        self.gateway.transcription.webhooks = self.webhooks
        self.app = create_app(config, clock=self.clock, gateway=self.gateway)
        self._async_transport = httpx.ASGITransport(app=self.app)
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None

    @property
    def state(self) -> Any:
        """The server state (config, counters, limits) behind :attr:`app`."""
        return self.app.state.mgsim

    def async_transport(self) -> httpx.ASGITransport:
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
