"""Run a simulator on real loopback sockets in a background thread (tests, notebooks).

:class:`ServerThread` serves a :class:`~mgsim.Simulator`'s app with uvicorn on a free
loopback port, with its lifespan, so the SIP/RTP listeners run when the simulator's config
has ``sip_port`` set (0 picks a free one). Its :attr:`~ServerThread.endpoints` tell a
sender where everything listens::

    with ServerThread(Simulator(SimulatorConfig(sip_port=0))) as server:
        host, port = server.endpoints.sip
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from mgsim.errors import TransportError
from mgsim.simulator import Simulator
from mgsim.transports.playback import Endpoints

__all__ = ["WEBSOCKET_OPTIONS", "AppThread", "ServerThread", "free_port"]

WEBSOCKET_OPTIONS: dict[str, Any] = {
    # The decoders refuse messages over 64 kB with their own close codes.
    "ws_max_size": 1 << 20,
    # The WebSockets carry µ-law audio, which deflate barely shrinks (AudioHook frames by
    # 21%) for ~11x the receiving CPU per frame (benchmarks/ws_deflate.py); RFC 7692 lets
    # the server decline the extension, and clients then send uncompressed.
    "ws_per_message_deflate": False,
}
"""uvicorn options for the media WebSockets, shared by ``mgsim serve`` and :class:`ServerThread`."""


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class AppThread:
    """uvicorn serving any ASGI ``app`` on ``host``:``port`` (0: a free port) in a daemon
    thread (a webhook receiver, for instance)."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, start_s: float = 10.0
    ) -> None:
        self.app = app
        self.host = host
        # Bound here and handed to uvicorn: no window for another process to take the port.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self.start_s = start_s
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=self.port,
                log_level="critical",
                lifespan="on",
                access_log=False,
                **WEBSOCKET_OPTIONS,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, args=([self._socket],), name="mgsim-serve", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> AppThread:
        self._thread.start()
        deadline = time.monotonic() + self.start_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise TransportError(f"the server did not start within {self.start_s} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> AppThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ServerThread(AppThread):
    """uvicorn serving ``sim.app`` on ``host``:``port`` (0: a free port) in a daemon thread."""

    def __init__(
        self, sim: Simulator, *, host: str = "127.0.0.1", port: int = 0, start_s: float = 10.0
    ) -> None:
        super().__init__(sim.app, host=host, port=port, start_s=start_s)
        self.sim = sim

    @property
    def endpoints(self) -> Endpoints:
        """Where this server listens (SIP from the running listener, if any)."""
        config = self.sim.config
        sip = self.sim.app.state.media.sip
        return Endpoints(
            self.base_url,
            sip=None if sip is None else (sip.host, sip.port),
            audiohook_api_key=config.audiohook_api_key,
            audiohook_client_secret=config.audiohook_client_secret,
        )

    def start(self) -> ServerThread:
        super().start()
        return self

    def __enter__(self) -> ServerThread:
        return self.start()
