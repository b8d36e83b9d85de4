"""What :func:`mgsim.server.app.create_app` mounts for the real transports.

:func:`media_routes` are the WebSocket, Kinesis Video and statistics routes;
:func:`media_lifespan` starts the SIP/RTP listeners when the app runs under a real ASGI
server with ``config.sip_port`` set (in-process use never runs a lifespan, so it never
opens a socket).

``GET /_sim/v1/media/stats`` (simulator credentials) answers the ``media.*`` counters, the
open sessions, the frame lateness, the SIP ports and, under a real server, ``loop``: the
longest stall of the event loop seen (``worst_stall_ms``, measured by a
:class:`~mgsim.transports.loopwatch.LoopWatch` ticker; a blocking call on any path shows
there; ``worst_stall_cpu_ms`` counts only the loop thread's CPU time, which a process the
operating system did not run does not spend); ``POST`` to it (no body, or
``{"reset_lateness": true}``) starts a fresh lateness and stall measurement and answers the
statistics after the reset; ``{"reset_lateness": false}`` only answers them. The contract
(``/_sim/v1/media/...``) gives both answers' schemas.
``GET /_sim/v1/media/calls/{guid}`` answers one call's media accounting (open or ended),
its platform pauses (samples) and, while its media session is kept, the session's
per-stream counters (SIPREC: per m-line received, lost, paused, SSRC changes, RTCP).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from mgsim.server.routing import one_path
from mgsim.transports.hub import MediaHub, hub_of
from mgsim.transports.kvs_http import end_media, get_media, put_media
from mgsim.transports.loopwatch import LoopWatch
from mgsim.transports.sip import SipServer
from mgsim.transports.websocket import AUDIOHOOK_PATH, audiohook_endpoint, twilio_endpoint

__all__ = ["MEDIA_CALLS", "MEDIA_STATS", "media_lifespan", "media_routes"]

MEDIA_STATS = "/_sim/v1/media/stats"
MEDIA_CALLS = "/_sim/v1/media/calls/{guid}"


def media_routes(twilio_prefix: str, endpoint: Any) -> list[BaseRoute]:
    """The transport routes; ``endpoint`` wraps a handler in the app's credential check,
    body reading (``schema``, ``body_optional``) and error envelope (as
    ``mgsim.server.app._endpoint`` with ``vendor=False``)."""
    return [
        WebSocketRoute(twilio_prefix + "{token}", twilio_endpoint),
        WebSocketRoute(AUDIOHOOK_PATH, audiohook_endpoint),
        Route("/putMedia", put_media, methods=["PUT", "POST"]),
        Route("/putMedia", end_media, methods=["DELETE"]),
        Route("/getMedia", get_media, methods=["POST"]),
        one_path(
            MEDIA_STATS,
            GET=endpoint(_stats),
            POST=endpoint(_reset, schema="SimMediaStatsReset", body_optional=True),
        ),
        Route(MEDIA_CALLS, endpoint(_call), methods=["GET"]),
    ]


async def _stats(state: Any, request: Request, body: Any) -> Response:
    return JSONResponse(hub_of(request.app).stats())


async def _reset(state: Any, request: Request, body: Any) -> Response:
    # The body is optional (an empty POST resets); {"reset_lateness": false} only reads.
    hub = hub_of(request.app)
    if (body or {}).get("reset_lateness", True):
        hub.lateness.reset()
        if hub.loop_watch is not None:
            hub.loop_watch.reset()
    return JSONResponse(hub.stats())


async def _call(state: Any, request: Request, body: Any) -> Response:
    guid = request.path_params["guid"]
    gateway = hub_of(request.app).gateway
    call = gateway.find(guid)
    if call is None:
        raise gateway.not_found(guid)
    session = hub_of(request.app).sessions.get(guid)
    stats = getattr(getattr(session, "decoder", None), "stats", None)
    if call.namespace != "siprec":
        stats = None  # only the SIPREC session's counters are plain JSON
    return JSONResponse(
        {
            "namespace": call.namespace,
            "guid": call.guid,
            "open": call.closed_at is None,
            "source": call.source,
            "accounting": call.accounting.as_dict(),
            "total": call.accounting.total,
            "pauses": [list(p) for p in call.pauses],
            "streams": stats() if callable(stats) else None,
        }
    )


@asynccontextmanager
async def media_lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the SIP/RTP listeners for the app's lifetime (when ``sip_port`` is set)."""
    hub: MediaHub = hub_of(app)
    config = hub.state.config
    hub.loop_watch = LoopWatch(period_s=0.02).start()  # 50 ticks/s: resolves stalls of 20 ms
    sip: SipServer | None = None
    if config.sip_port is not None:
        sip = SipServer(
            hub, host=config.media_host, port=config.sip_port, rtp_ports=config.rtp_ports
        )
        await sip.start()
        hub.sip = sip
    try:
        yield
    finally:
        if sip is not None:
            await sip.stop()
            hub.sip = None
        for feeder in list(hub.open_sessions):
            feeder.close()
        if hub.captures is not None:
            await asyncio.to_thread(hub.captures.close)  # what is queued reaches the disk
        await hub.loop_watch.stop()
        hub.loop_watch = None
