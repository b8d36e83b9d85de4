"""One log line per request that ``mgsim serve`` answers, with tokens masked.

uvicorn's own access lines are off: they would carry the Twilio media token, which sits in
the WebSocket path. :class:`AccessLog` wraps the app and writes its own lines instead::

    mgsim: POST /mg-autotranscribe/v1/start-streaming 200 1.4 ms
    mgsim: WS /mg-twilio-autotranscribe/twilio-media/*** accepted
    mgsim: WS /mg-twilio-autotranscribe/twilio-media/*** closed 1000

The path's token, any JWT and the configured secrets are replaced by ``***`` before a line
is written; headers (where credentials travel) and bodies are never logged.

>>> mask_path("/mg-twilio-autotranscribe/twilio-media/abc.def.ghi?x=1")
'/mg-twilio-autotranscribe/twilio-media/***?x=1'
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TextIO

from mgsim.journal import MASK, mask

__all__ = ["AccessLog", "mask_path"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN_PATHS = ("/mg-twilio-autotranscribe/twilio-media/",)


def mask_path(path: str, secrets: Iterable[str] = ()) -> str:
    """``path`` (with its query) with media tokens, JWTs and ``secrets`` masked."""
    for prefix in _TOKEN_PATHS:
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            query = rest[rest.index("?") :] if "?" in rest else ""
            path = prefix + MASK + query
    return str(mask(path, list(secrets)))


class AccessLog:
    """ASGI middleware writing one line per HTTP request and per WebSocket's accept and
    close to ``stream`` (a text file, stderr in ``mgsim serve``)."""

    def __init__(self, app: App, stream: TextIO, *, secrets: Iterable[str] = ()) -> None:
        self.app = app
        self.stream = stream
        self.secrets = [s for s in secrets if s]

    def _write(self, line: str) -> None:
        self.stream.write(f"mgsim: {line}\n")
        self.stream.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        path = mask_path(scope.get("path", "") + (f"?{query}" if query else ""), self.secrets)
        if kind == "websocket":
            await self._websocket(scope, receive, send, path)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ms = (time.perf_counter() - started) * 1000.0
            code = status[0] if status else "-"
            self._write(f"{scope.get('method', '?')} {path} {code} {ms:.1f} ms")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "websocket.accept":
                self._write(f"WS {path} accepted")
            elif message["type"] == "websocket.close":
                self._write(f"WS {path} closed {message.get('code', 1000)}")
            await send(message)

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self._write(f"WS {path} closed by the client {message.get('code', 1000)}")
            return message

        await self.app(scope, receiving, sending)
