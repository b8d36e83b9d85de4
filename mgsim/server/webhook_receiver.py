"""A webhook receiver, as an integrator runs one: checks the shared secret, keeps the bodies.

Point ``mgsim serve`` at it (``MGSIM_WEBHOOK_URL``, ``MGSIM_WEBHOOK_SECRET``) to watch
transcripts arrive as the real gateway would POST them. The secret is compared in constant
time, and a wrong or missing one is answered 401 without saying which.

>>> app = create_receiver_app("s3cret")
>>> app.state.received
[]
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mgsim.errors import ConfigError
from mgsim.server.jsonbody import BodyError, loads
from mgsim.server.webhooks import DEFAULT_SECRET_HEADER

__all__ = ["create_receiver_app"]


def create_receiver_app(
    secret: str, *, header_name: str = DEFAULT_SECRET_HEADER, path: str = "/webhooks/transcripts"
) -> Starlette:
    """A Starlette app that accepts transcript webhooks POSTed to ``path``."""
    if not secret:
        raise ConfigError("a webhook receiver needs a non-empty secret")
    expected = secret.encode()

    async def receive(request: Request) -> Response:
        given = request.headers.get(header_name, "").encode()
        if not hmac.compare_digest(given, expected):
            request.app.state.rejected += 1
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body: Any = loads(await request.body())
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        request.app.state.received.append(body)
        return Response(status_code=204)

    app = Starlette(routes=[Route(path, receive, methods=["POST"])])
    app.state.received = []
    app.state.rejected = 0
    return app
