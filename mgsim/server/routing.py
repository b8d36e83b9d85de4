"""Routes whose methods have different handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["one_path"]


def one_path(path: str, **by_method: Callable[[Request], Awaitable[Response]]) -> Route:
    """One route for a path whose methods have different handlers, so that a 405 there
    names every method the path has in its ``Allow`` header (one route per method would
    name only the first route's)."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return Route(path, dispatch, methods=list(by_method))
