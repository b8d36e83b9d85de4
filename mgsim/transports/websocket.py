"""The Twilio Media Streams and Genesys AudioHook WebSocket endpoints.

Both feed the same media sessions as in-process playback (:mod:`mgsim.gateway.sessions`):

* ``/mg-twilio-autotranscribe/twilio-media/{token}``: the URL that
  ``GET /mg-autotranscribe/v1/twilio-media-stream-url`` hands out. The token is checked
  before anything is read: a forged or expired one gets the socket closed with 1008
  (policy violation). One token may open many streams during its 5-minute life. A message
  the decoder refuses closes the socket with the session's ``close_code`` and the reason as
  the close reason (1007 bad JSON or base64, or ``bad-sid``: a start whose callSid,
  streamSid or accountSid is not its prefix and 32 lowercase hex digits; 1003 unknown event;
  1008 wrong order, or ``guid-in-use``: a start whose callSid another open stream or call
  already has; 1009 too big). A refused start opens no call.
* ``/audiohook/ws``: the upgrade request must carry a valid, fresh HTTP message signature
  (RFC 9421, the configured API key and client secret; see
  :mod:`mgsim.media.audiohook_signature` for the freshness rules, and a nonce is never
  accepted twice); a missing, stale or bad one is refused with HTTP 401 before the socket
  opens. With no client secret configured, unsigned upgrades carrying the API key are
  accepted instead. JSON text and binary audio are fed in order and
  the session's replies sent back, in the order they were made, by one writer per
  connection (a gateway hang-up sends ``disconnect`` while the connection waits for the
  client). After a protocol error, or a ``disconnect`` for a call the gateway hung up
  (``DELETE /_sim/v1/calls/{guid}``, reason ``"completed"``), the server waits up to 10 s
  for the client's ``close``, answers ``closed`` and closes normally (or closes with the
  error's code when the client never does). The ``open``'s organizationId must be the
  signed ``Audiohook-Organization-Id`` (else ``disconnect`` reason ``"unauthorized"``).

**Session drops.** A connection that ends before the platform's closing handshake (no
Twilio ``stop``, no AudioHook ``close``) ends the call as dropped
(:meth:`~mgsim.gateway.media_session.MediaSession.drop`): its open segment closes, what it
streamed is transcribed, and its accounting says ``ended_by="drop"`` with
``end_reason`` ``"connection-lost"`` when the socket died without a WebSocket close frame
(close code 1006, a TCP reset) or ``"no-stop"`` / ``"no-close"`` when the client closed the
WebSocket cleanly but skipped the handshake. Every media message that arrived before the
drop stays accounted for; the counter ``media.<namespace>.drop.<reason>`` counts drops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from mgsim.media._base import Reply
from mgsim.media.audiohook_signature import (
    AudioHookSignatureError,
    check_api_key,
    verify_signature,
)
from mgsim.server.tokens import TokenError
from mgsim.transports.hub import Feeder, hub_of

__all__ = [
    "ABNORMAL_CLOSURE",
    "AUDIOHOOK_PATH",
    "CLOSE_WAIT_S",
    "audiohook_endpoint",
    "twilio_endpoint",
]

AUDIOHOOK_PATH = "/audiohook/ws"
CLOSE_WAIT_S = 10.0
"""How long the server waits for an AudioHook client's ``close`` after ``disconnect``."""
ABNORMAL_CLOSURE = 1006
"""RFC 6455 close code for a connection that ended without a close frame."""
NO_STATUS = 1005


def _lost(message: Mapping[str, Any]) -> bool:
    """Whether a ``websocket.disconnect`` means the connection died without a close frame.

    That is close code 1006; uvicorn reports a TCP connection lost after the handshake as
    1005 ("no status") without a ``reason`` key, which a received close frame always has.
    """
    code = message.get("code")
    if not isinstance(code, int) or code == ABNORMAL_CLOSURE:
        return True
    return code == NO_STATUS and "reason" not in message


def _end(feeder: Feeder, lost: bool) -> list[Reply]:
    """Close ``feeder``'s session: as a drop when the connection died; count a drop."""
    session = feeder.session
    replies = session.drop("connection-lost") if lost else []
    replies += feeder.close()
    call = session.call
    if call is not None and call.accounting.ended_by == "drop":
        feeder.hub.count(f"media.{feeder.namespace}.drop.{call.accounting.end_reason}")
    return replies


async def _close(
    websocket: WebSocket, code: int, reason: str = "", feeder: Feeder | None = None
) -> None:
    if websocket.application_state == WebSocketState.DISCONNECTED:
        return
    if feeder is not None and websocket.client_state == WebSocketState.CONNECTED:
        feeder.note_close("server", code, reason[:120])
    with contextlib.suppress(Exception):  # the peer may already be gone
        await websocket.close(code, reason[:120])


async def _send(websocket: WebSocket, replies: list[Reply], feeder: Feeder | None = None) -> None:
    for reply in replies:
        if isinstance(reply.data, str):
            await websocket.send_text(reply.data)
        else:
            await websocket.send_bytes(reply.data)
    if feeder is not None and replies:
        feeder.note_sent(replies)


def _client_closed(feeder: Feeder, message: Mapping[str, Any]) -> bool:
    """Record the client's close (or its connection's death); whether it died."""
    lost = _lost(message)
    code = message.get("code")
    feeder.note_close("client", None if lost else code, str(message.get("reason") or ""))
    return lost


def _payload(message: Mapping[str, Any]) -> str | bytes:
    text = message.get("text")
    if isinstance(text, str):
        return text
    data = message.get("bytes")
    return data if isinstance(data, bytes) else b""


async def twilio_endpoint(websocket: WebSocket) -> None:
    """One Twilio Media Stream (see the module docstring)."""
    hub = hub_of(websocket.app)
    try:
        hub.state.tokens.check(websocket.path_params.get("token", ""))
    except TokenError:
        hub.count("media.twilio.rejected.token")
        await websocket.accept()
        await _close(websocket, 1008, "invalid or expired media stream token")
        return
    await websocket.accept()
    feeder = hub.open("twilio")

    closing: list[asyncio.Future[None]] = []

    def hung_up(replies: list[Reply]) -> None:
        # The gateway ended the call: Twilio Media Streams has no message for that, so the
        # server ends the stream by closing the WebSocket normally.
        closing.append(
            asyncio.ensure_future(_close(websocket, 1000, "call ended by the gateway", feeder))
        )

    feeder.session.push = hung_up
    lost = True
    try:
        lost = await _pump(websocket, feeder)
    finally:
        feeder.session.push = None
        _end(feeder, lost)


async def _pump(websocket: WebSocket, feeder: Feeder) -> bool:
    """Feed the socket's messages; return whether the connection died (no close frame)."""
    session = feeder.session
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return _client_closed(feeder, message)
            replies = feeder.feed("ws", _payload(message))
            await _send(websocket, replies, feeder)
            if session.close_code is not None:
                reason = next(reversed(session.errors), "error") if session.errors else "error"
                await _close(websocket, session.close_code, reason, feeder)
                return False
    except WebSocketDisconnect as exc:
        feeder.note_close("client", exc.code, str(exc.reason or ""))
        return exc.code in (ABNORMAL_CLOSURE, NO_STATUS)
    except (RuntimeError, OSError):
        return True


async def _deny(websocket: WebSocket, status: int, reason: str) -> None:
    from starlette.responses import JSONResponse

    body = {"code": status, "message": f"AudioHook signature refused: {reason}"}
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, status_code=status))
    else:
        await websocket.close(1008)  # the server answers the upgrade with 403


def _request_target(websocket: WebSocket) -> str:
    query = websocket.url.query
    return websocket.url.path + (f"?{query}" if query else "")


async def audiohook_endpoint(websocket: WebSocket) -> None:
    """One Genesys AudioHook connection (see the module docstring)."""
    hub = hub_of(websocket.app)
    config = hub.state.config
    headers = dict(websocket.headers.items())
    try:
        if config.audiohook_client_secret is None:
            check_api_key(headers, config.audiohook_api_key)
        else:
            verify_signature(
                "GET",
                _request_target(websocket),
                headers.get("host", ""),
                headers,
                client_secret_b64=config.audiohook_client_secret,
                api_key=config.audiohook_api_key,
                now=hub.clock.wall().timestamp(),
                nonces=hub.audiohook_nonces,
            )
    except AudioHookSignatureError as exc:
        hub.count(f"media.genesysaudiohook.rejected.{exc.reason}")
        await _deny(websocket, 401, exc.reason)
        return
    await websocket.accept()
    feeder = hub.open(
        "genesysaudiohook",
        session_id=headers.get("audiohook-session-id"),
        organization_id=headers.get("audiohook-organization-id"),
    )
    outbox = _Outbox(websocket, feeder)
    lost = True
    try:
        lost = await _audiohook_pump(websocket, feeder, outbox)
    finally:
        feeder.session.push = None
        outbox.put(_end(feeder, lost))
        await outbox.finish()
        await _close(websocket, 1000, "", feeder)


class _Outbox:
    """One connection's writer: replies go out in the order they were made, whether the
    pump made them (answers to client messages) or the gateway did (a hang-up's
    ``disconnect``), so the client sees the server's ``seq`` in order."""

    def __init__(self, websocket: WebSocket, feeder: Feeder | None = None) -> None:
        self._websocket = websocket
        self._feeder = feeder
        # Replies to send; an int is a close code (close the socket); None ends the writer.
        self._queue: asyncio.Queue[list[Reply] | int | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())
        self._deadline: asyncio.TimerHandle | None = None

    def put(self, replies: list[Reply]) -> None:
        if replies:
            self._queue.put_nowait(replies)

    def push(self, replies: list[Reply]) -> None:
        """Send what the session says unprompted (a ``disconnect``): the client then has
        :data:`CLOSE_WAIT_S` to close before the server closes the socket."""
        if not replies:
            return  # nothing to tell the client (it is already closing)
        self.put(replies)
        if self._deadline is None:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(CLOSE_WAIT_S, self._give_up)

    def _give_up(self) -> None:
        self._queue.put_nowait(1008)  # after what is queued

    async def drain(self) -> None:
        """Wait until everything put so far is sent."""
        await self._queue.join()

    async def finish(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await self._task

    async def _run(self) -> None:
        websocket, queue = self._websocket, self._queue
        while True:
            replies = await queue.get()
            try:
                if replies is None:
                    return
                if isinstance(replies, int):
                    await _close(websocket, replies, "no close after disconnect", self._feeder)
                elif websocket.application_state == WebSocketState.CONNECTED:
                    with contextlib.suppress(Exception):  # the peer may be gone
                        await _send(websocket, replies, self._feeder)
            finally:
                queue.task_done()


async def _audiohook_pump(websocket: WebSocket, feeder: Feeder, outbox: _Outbox) -> bool:
    """Feed the socket's messages; return whether the connection died (no close frame)."""
    session = feeder.session
    decoder = getattr(session, "decoder", None)
    session.push = outbox.push
    try:
        while True:
            if session.failed:
                try:
                    message = await asyncio.wait_for(websocket.receive(), CLOSE_WAIT_S)
                except TimeoutError:
                    await outbox.drain()
                    await _close(websocket, session.close_code or 1008,
                                 "no close after disconnect", feeder)  # fmt: skip
                    return False
            else:
                message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return _client_closed(feeder, message)
            outbox.put(feeder.feed("ws", _payload(message)))
            if decoder is not None and decoder.state == "closed":
                await outbox.drain()
                await _close(websocket, 1000, "", feeder)
                return False
    except WebSocketDisconnect as exc:
        feeder.note_close("client", exc.code, str(exc.reason or ""))
        return exc.code in (ABNORMAL_CLOSURE, NO_STATUS)
    except (RuntimeError, OSError):
        return True
