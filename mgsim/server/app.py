"""The simulated router as an ASGI application.

Every vendor request passes the same steps, in the order a real API gateway applies them::

    credentials (401/403) → body size (413) → spike arrest, quota (429) → injected faults
    (503/500/429) → JSON (400-01) → contract schema (400-201) → rules (400-201/202)
    → call state (400-203, 409-201/202/203) → 200

Every answer other than a success uses the vendor envelope with a fresh ``requestId``; an
unexpected exception becomes ``500-201`` in the envelope, never a bare 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mgsim.clock import Clock, SystemClock
from mgsim.contract import ContractViolation, Problem, spec_text, validate
from mgsim.gateway import ROLES, Gateway, StartParams
from mgsim.server.config import SimulatorConfig
from mgsim.server.limits import DailyQuota, SpikeArrest
from mgsim.server.rules import check_guid, check_start
from mgsim.server.tokens import TwilioTokens
from mgsim.transports.hub import MediaHub
from mgsim.transports.routes import media_lifespan, media_routes

__all__ = ["ServerState", "create_app"]

log = logging.getLogger("mgsim.server")

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
TWILIO_URL = "/mg-autotranscribe/v1/twilio-media-stream-url"
MESSAGES = "/conversation/v1/conversation/messages"
TWILIO_WS_PREFIX = "/mg-twilio-autotranscribe/twilio-media/"
MAX_MESSAGES = 1000


@dataclass
class ServerState:
    """What one simulated router holds; reachable as ``app.state.mgsim``."""

    config: SimulatorConfig
    clock: Clock
    gateway: Gateway
    tokens: TwilioTokens
    fault_rng: random.Random
    spike: SpikeArrest | None
    quota: DailyQuota | None
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1


def _envelope(
    state: ServerState, problem: Problem, headers: dict[str, str] | None = None
) -> JSONResponse:
    state.count(problem.code)
    body = {
        "error": {
            "requestId": state.gateway.new_id(),
            "code": problem.code,
            "message": problem.message,
        }
    }
    return JSONResponse(body, status_code=problem.status, headers=headers)


def _check_credentials(state: ServerState, request: Request) -> None:
    api_id = request.headers.get("asapp-api-id")
    secret = request.headers.get("asapp-api-secret")
    if not api_id or not secret:
        raise Problem("401-01", "Missing asapp-api-id or asapp-api-secret header")
    # Both comparisons always run, so the time taken does not tell which one failed.
    ok_id = hmac.compare_digest(api_id.encode(), state.config.api_id.encode())
    ok_secret = hmac.compare_digest(secret.encode(), state.config.api_secret.encode())
    if not (ok_id and ok_secret):
        raise Problem("403-01", "Invalid asapp-api-id or asapp-api-secret")


async def _read_body(state: ServerState, request: Request) -> bytes:
    limit = state.config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem("413-01", f"Request body over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("413-01", f"Request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_limits(state: ServerState) -> None:
    if state.spike is not None and not state.spike.allow():
        raise Problem(
            "429-01", f"Spike arrest: more than {state.spike.per_second} requests per second"
        )
    if state.quota is not None and not state.quota.allow():
        raise Problem(
            "429-01", f"Daily quota of {state.quota.limit} requests used up; it resets at 00:00 UTC"
        )


def _draw_faults(state: ServerState) -> float:
    """Raise an injected error, or return the seconds of latency this request suffers."""
    faults = state.config.faults
    delay = faults.latency_ms + (
        state.fault_rng.uniform(0.0, faults.jitter_ms) if faults.jitter_ms else 0.0
    )
    draw = state.fault_rng.random()
    if draw < faults.rate_503:
        raise Problem("503-01", "Service unavailable (injected fault)")
    if draw < faults.rate_503 + faults.rate_500:
        raise Problem("500-201", "Internal error (injected fault)")
    if draw < faults.rate_503 + faults.rate_500 + faults.rate_429:
        raise Problem("429-01", "Too many requests (injected fault)")
    return delay / 1000.0


def _parse_json(raw: bytes, schema: str) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem("400-01", "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Problem("400-01", "Request body must be a JSON object")
    try:
        validate(schema, body)
    except ContractViolation as exc:
        raise Problem("400-201", str(exc)) from None
    return body


Handler = Callable[[ServerState, Request, dict[str, Any] | None], Awaitable[Response]]


def _endpoint(
    handler: Handler, *, schema: str | None = None, vendor: bool = True, per_call: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler in the common pipeline and the error envelope.

    Injected latency is spent before the handler runs, except for ``per_call`` handlers
    (start/stop), which spend it while holding their call, as a slow gateway would.
    """

    async def endpoint(request: Request) -> Response:
        state: ServerState = request.app.state.mgsim
        state.count("requests")
        try:
            _check_credentials(state, request)
            raw = await _read_body(state, request)
            _check_limits(state)
            request.state.delay = _draw_faults(state) if vendor else 0.0
            if request.state.delay and not per_call:
                await state.clock.asleep(request.state.delay)
            body = _parse_json(raw, schema) if schema else None
            return await handler(state, request, body)
        except Problem as problem:
            return _envelope(state, problem)
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.url.path)
            return _envelope(state, Problem("500-201"))

    return endpoint


async def _with_guid_lock(
    state: ServerState, request: Request, namespace: str, guid: str, action: Callable[[], Any]
) -> Any:
    """Run ``action`` holding the call: a second request meanwhile gets 409-202."""
    call = state.gateway.get(namespace, guid)
    if call.pending:
        raise Problem("409-202", f"Another API request for guid {guid} is pending")
    call.pending = True
    try:
        if request.state.delay:
            await state.clock.asleep(request.state.delay)
        return action()
    finally:
        call.pending = False


async def _start(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    assert body is not None
    check_start(body, redaction_rules_configured=state.config.redaction_rules_configured)
    params = StartParams.from_body(body)
    seg = await _with_guid_lock(
        state,
        request,
        body["namespace"],
        body["guid"],
        lambda: state.gateway.start(body["namespace"], body["guid"], params),
    )
    code, description = seg.status
    participants = {
        role: {
            "streamId": seg.stream_ids[role],
            "status": {"code": code, "description": description},
        }
        for role in ROLES
    }
    answer: dict[str, Any] = {"isOk": code == 1000, "autotranscribeResponse": participants}
    if code != 1000:
        answer["errorMessage"] = f"{description}: {params.language}"
    return JSONResponse(answer)


async def _stop(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    assert body is not None
    check_guid(body["namespace"], body["guid"])
    seg = await _with_guid_lock(
        state,
        request,
        body["namespace"],
        body["guid"],
        lambda: state.gateway.stop(body["namespace"], body["guid"]),
    )
    code, description = seg.status
    participants = {
        role: {
            "streamId": seg.stream_ids[role],
            "status": {"code": code, "description": description},
            "summary": seg.summary(role),
        }
        for role in ROLES
    }
    return JSONResponse({"isOk": True, "autotranscribeResponse": participants})


async def _twilio_url(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    base = state.config.public_url or str(request.base_url)
    base = base.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    token = state.tokens.issue("twilio-media")
    return JSONResponse({"streamingUrl": f"{base}{TWILIO_WS_PREFIX}{token}"})


async def _messages(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    guid = request.query_params.get("externalId", "")
    if not guid:
        raise Problem("400-201", "externalId: query parameter is required")
    if len(guid) > 128:
        raise Problem("400-201", "externalId: must be at most 128 characters")
    items = state.gateway.messages.get(guid, [])[:MAX_MESSAGES]
    return JSONResponse({"items": items})


def _sim_call_view(call: Any) -> dict[str, Any]:
    return {
        "namespace": call.namespace,
        "guid": call.guid,
        "streaming": call.streaming,
        "segments": len(call.segments),
    }


async def _sim_open(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    assert body is not None
    check_guid(body["namespace"], body["guid"])
    call = state.gateway.open_call(body["namespace"], body["guid"])
    return JSONResponse(_sim_call_view(call), status_code=201)


def _sim_find(state: ServerState, guid: str) -> Any:
    call = state.gateway.calls.get(guid)
    if call is None:
        raise Problem("404-01", f"No open call with guid {guid}")
    return call


async def _sim_get(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    return JSONResponse(_sim_call_view(_sim_find(state, request.path_params["guid"])))


async def _sim_delete(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    state.gateway.hang_up(request.path_params["guid"])
    return Response(status_code=204)


async def _openapi(request: Request) -> Response:
    return Response(spec_text(), media_type="application/yaml")


async def _http_error(request: Request, exc: Exception) -> Response:
    state: ServerState = request.app.state.mgsim
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return _envelope(
            state,
            Problem("405-01", f"Method {request.method} is not allowed on {request.url.path}"),
            headers=dict(exc.headers or {}),
        )
    return _envelope(state, Problem("404-01", f"No such path: {request.url.path}"))


def create_app(
    config: SimulatorConfig | None = None,
    *,
    clock: Clock | None = None,
    gateway: Gateway | None = None,
) -> Starlette:
    """Build the simulated router.

    >>> app = create_app(SimulatorConfig(seed=1))
    >>> app.state.mgsim.gateway.calls
    {}
    """
    config = config or SimulatorConfig.from_env()
    clock = clock or (gateway.clock if gateway else SystemClock())
    seed = config.seed
    gateway = gateway or Gateway(clock, random.Random(seed))
    state = ServerState(
        config=config,
        clock=clock,
        gateway=gateway,
        tokens=TwilioTokens(clock, config.twilio_url_ttl_s),
        fault_rng=random.Random(None if seed is None else seed + 1),
        spike=SpikeArrest(config.spike_arrest_per_s, clock) if config.spike_arrest_per_s else None,
        quota=DailyQuota(config.daily_quota, clock) if config.daily_quota else None,
    )
    routes = [
        Route(
            START,
            _endpoint(_start, schema="StartStreamingRequest", per_call=True),
            methods=["POST"],
        ),
        Route(
            STOP, _endpoint(_stop, schema="StopStreamingRequest", per_call=True), methods=["POST"]
        ),
        Route(TWILIO_URL, _endpoint(_twilio_url), methods=["GET"]),
        Route(MESSAGES, _endpoint(_messages), methods=["GET"]),
        Route(
            "/_sim/v1/calls",
            _endpoint(_sim_open, schema="SimCallRequest", vendor=False),
            methods=["POST"],
        ),
        Route("/_sim/v1/calls/{guid}", _endpoint(_sim_get, vendor=False), methods=["GET"]),
        Route("/_sim/v1/calls/{guid}", _endpoint(_sim_delete, vendor=False), methods=["DELETE"]),
        Route("/openapi.yaml", _openapi, methods=["GET"]),
        # Real media transports: Twilio/AudioHook WebSockets, Kinesis Video over HTTP.
        *media_routes(TWILIO_WS_PREFIX, lambda h: _endpoint(h, vendor=False)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=media_lifespan,  # SIP/RTP listeners, under a real server only
    )
    app.state.mgsim = state
    app.state.media = MediaHub(state)
    return app
