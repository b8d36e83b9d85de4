"""The simulated router as an ASGI application.

Every vendor request passes the same steps, in the order a real API gateway applies them::

    credentials (401/403) → body size (413) → spike arrest, quota (429) → injected faults
    (fault rules, else the simulator's Faults: latency, an error, a timeout) → content type
    (415-01) → JSON (400-01)
    → contract schema (400-201) → rules (400-201/202) → call state (400-203,
    409-201/202/203) → 200

Every answer other than a success uses the vendor envelope with a fresh ``requestId``; an
unexpected exception becomes ``500-201`` (start/stop) or ``500-01`` in the envelope, never
a bare 500. A body must be JSON (415-01 for another declared ``Content-Type``) and Unicode
text (:mod:`mgsim.server.jsonbody`).

A request under a timeout fault is held until its client disconnects or
``SimulatorConfig.hang_cap_s`` passes (then 504-01). The in-process transport of
:class:`mgsim.Simulator` puts the instant its client gives up into the scope
(``scope["extensions"][DISCONNECT_AT]``, on the simulator's clock), so the hold ends exactly
then on any clock, virtual ones included; under a real server the disconnect is awaited.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import inspect
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route

from mgsim.clock import Clock, SystemClock, VirtualClock
from mgsim.contract import ContractViolation, Problem, spec_text, validate
from mgsim.gateway import ROLES, Gateway, StartParams
from mgsim.gateway.calls import DEFAULT_KEEP_AUDIO_OF, Segment
from mgsim.server import injection, jsonbody
from mgsim.server.config import SimulatorConfig
from mgsim.server.faults import (
    FaultDecision,
    FaultRules,
)
from mgsim.server.injection import (
    DISCONNECT_AT,
    draw_faults,
    sim_faults_add,
    sim_faults_clear,
    sim_faults_delete,
    sim_faults_list,
)
from mgsim.server.jsonbody import BodyError, content_type_problem
from mgsim.server.limits import DailyQuota, SpikeArrest
from mgsim.server.routing import one_path
from mgsim.server.rules import check_guid, check_start
from mgsim.server.tokens import TwilioTokens
from mgsim.server.warmup import warm_up
from mgsim.speech.engine import ScriptEngine, Word
from mgsim.transports.hub import MediaHub
from mgsim.transports.routes import media_lifespan, media_routes

__all__ = ["DISCONNECT_AT", "ServerState", "create_app"]

log = logging.getLogger("mgsim.server")

START = "/mg-autotranscribe/v1/start-streaming"
STOP = "/mg-autotranscribe/v1/stop-streaming"
TWILIO_URL = "/mg-autotranscribe/v1/twilio-media-stream-url"
MESSAGES = "/conversation/v1/conversation/messages"
TWILIO_WS_PREFIX = "/mg-twilio-autotranscribe/twilio-media/"
MAX_MESSAGES = 1000


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response, rendered by orjson: the same compact UTF-8 bytes for the
    API's bodies, and rendering was a tenth of a start/stop request's time."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


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
    rules: FaultRules
    counters: dict[str, int] = field(default_factory=dict)
    background: set[asyncio.Task[Response]] = field(default_factory=set)
    """Requests still being processed after their in-process client gave up."""

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


def _finished(state: ServerState, task: asyncio.Task[Response]) -> None:
    state.background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("request finished after its client left failed", exc_info=task.exception())


async def _withhold(state: ServerState, request: Request, decision: FaultDecision) -> Response:
    """Give no answer until the client leaves; 504-01 if it is still there at the cap."""
    cap = state.config.hang_cap_s
    if await injection.client_gone_within(state, request, cap):
        state.count("client-gone")
    return _envelope(
        state,
        Problem(
            "504-01",
            f"Gateway timeout: no answer within {cap:g} s "
            f"(injected {decision.timeout}, rule {decision.rule_id})",
        ),
    )


def _parse_json(request: Request, raw: bytes, schema: str) -> dict[str, Any]:
    unsupported = content_type_problem(request.headers.get("content-type"))
    if unsupported is not None:
        raise Problem("415-01", unsupported)
    try:
        body = jsonbody.loads(raw)
    except BodyError as exc:
        raise Problem("400-01", str(exc)) from None
    if not isinstance(body, dict):
        raise Problem("400-01", "Request body must be a JSON object")
    try:
        validate(schema, body)
    except ContractViolation as exc:
        raise Problem("400-201", str(exc)) from None
    return body


Handler = Callable[[ServerState, Request, dict[str, Any] | None], Awaitable[Response]]


def _endpoint(
    handler: Handler,
    *,
    schema: str | None = None,
    vendor: bool = True,
    per_call: bool = False,
    name: str = "",
    body_optional: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler in the common pipeline and the error envelope.

    Vendor endpoints (``name`` is what fault rules match) meet injected faults. Injected
    latency is spent before the handler runs, except for ``per_call`` handlers (start/stop),
    which spend it while holding their call, as a slow gateway would. With
    ``body_optional`` an empty body reaches the handler as None. An unexpected error
    is start/stop's own 500-201 there, and the vendor's generic 500-01 everywhere else.
    """
    internal = "500-201" if per_call else "500-01"

    async def process(state: ServerState, request: Request, raw: bytes) -> Response:
        try:
            wanted = schema is not None and (raw or not body_optional)
            body = _parse_json(request, raw, schema) if schema and wanted else None
            return await handler(state, request, body)
        except Problem as problem:
            return _envelope(state, problem)

    async def endpoint(request: Request) -> Response:
        state: ServerState = request.app.state.mgsim
        state.count("requests")
        try:
            _check_credentials(state, request)
            raw = await _read_body(state, request)
            _check_limits(state)
            fault = draw_faults(state, request, raw, name) if vendor else FaultDecision(None)
            if fault.error is not None or fault.timeout == "hang":
                # Never processed: the fault's latency passes, then the error or the hold.
                if fault.delay_s:
                    await state.clock.asleep(fault.delay_s)
                if fault.error is not None:
                    raise injection.injected(fault)
                return await _withhold(state, request, fault)
            request.state.delay = fault.delay_s

            async def run() -> Response:
                if request.state.delay and not per_call:
                    await state.clock.asleep(request.state.delay)
                return await process(state, request, raw)

            gives_up_at = injection.gives_up_at(request)
            if (
                fault.delay_s
                and gives_up_at is not None
                and not isinstance(state.clock, VirtualClock)
                and state.clock.now() + fault.delay_s >= gives_up_at
            ):
                # In process, the client leaves before this answer: the request goes on in
                # the background, as on a real server, while the client's wait ends on time.
                # (A manual VirtualClock cannot run two sleeps side by side: there the
                # request runs in line and the transport drops the late answer.)
                task = asyncio.ensure_future(run())
                state.background.add(task)
                task.add_done_callback(partial(_finished, state))
                await state.clock.asleep(max(0.0, gives_up_at - state.clock.now()))
                state.count("client-gone")
                return Response(status_code=504)  # nobody reads it
            response = await run()
            if fault.timeout == "lost-response":
                return await _withhold(state, request, fault)
            return response
        except Problem as problem:
            return _envelope(state, problem)
        except Exception:
            log.exception("unexpected error handling %s %s", request.method, request.url.path)
            return _envelope(state, Problem(internal))

    return endpoint


async def _with_guid_lock(
    state: ServerState, request: Request, namespace: str, guid: str, action: Callable[[], Any]
) -> Any:
    """Run ``action`` holding the call: a second request meanwhile gets 409-202. An
    ``action`` that returns an awaitable holds the call until it is done."""
    call = state.gateway.get(namespace, guid)
    if call.pending:
        raise Problem("409-202", f"Another API request for guid {guid} is pending")
    call.pending = True
    try:
        if request.state.delay:
            await state.clock.asleep(request.state.delay)
        result = action()
        return await result if inspect.isawaitable(result) else result
    finally:
        call.pending = False


async def _stop_and_transcribe(state: ServerState, namespace: str, guid: str) -> Segment:
    """Stop streaming and transcribe what the segment streamed before answering: in the
    gateway's recognition thread under a real clock, so that a recognizer taking seconds of
    CPU (Whisper) leaves the event loop free for every other call meanwhile; in line under
    a virtual clock and for the reference engine (see
    :meth:`~mgsim.gateway.transcription.GatewayTranscription.runs_off_loop`)."""
    seg, job = state.gateway.stop_deferred(namespace, guid)
    if job is not None:
        transcription = state.gateway.transcription
        if transcription.runs_off_loop(job):
            # Shielded: a request cancelled meanwhile (its client gone) still has its
            # segment transcribed, stored and sent; a failure is this request's 500-201.
            await asyncio.shield(transcription.recognise_off_loop(job, report=False))
        else:
            transcription.finish(job, job.recognise())
    return seg


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
        lambda: _stop_and_transcribe(state, body["namespace"], body["guid"]),
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
    # Messages past the vendor's 7-day retention, and those of ended calls the simulator no
    # longer keeps, are gone: an empty list, as the vendor answers after its retention.
    # A segment closed by a hang-up may still be in the recognition thread: its messages
    # are part of the answer.
    await state.gateway.transcription.settled(guid)
    items = state.gateway.conversation(guid)[:MAX_MESSAGES]
    return JSONResponse({"items": items})


def _sim_call_view(call: Any) -> dict[str, Any]:
    return {
        "namespace": call.namespace,
        "guid": call.guid,
        "open": call.closed_at is None,
        "streaming": call.streaming,
        "segments": len(call.segments),
    }


async def _sim_open(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    assert body is not None
    check_guid(body["namespace"], body["guid"])
    call = state.gateway.open_call(body["namespace"], body["guid"])
    return JSONResponse(_sim_call_view(call), status_code=201)


async def _sim_script(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    assert body is not None
    guid = request.path_params["guid"]
    words, source = await _script_words(body)
    state.gateway.transcription.attach(guid, ScriptEngine(words))
    return JSONResponse({"guid": guid, "words": len(words), "source": source})


async def _script_words(body: dict[str, Any]) -> tuple[list[Word], str]:
    """The words a script request names, or 400-201 naming what is wrong. (The schema has
    made sure it names either a sample, perhaps with ``untilMs``, or words.)"""
    if "sample" in body:
        from mgsim.sim.call import samples_dir  # the simulation package: only when asked

        name = body["sample"]
        # Reading a sample (its audio and sidecar) blocks; the loop carries live calls.
        script = await asyncio.to_thread(_sample_script, name, str(samples_dir()))
        if script is None:
            raise Problem("400-201", f"sample: no sample call named {name!r}")
        until = body.get("untilMs", math.inf)
        return [w for w in script if w.end_ms <= until], f"sample:{name}"
    words = []
    for i, w in enumerate(body["words"]):
        if w["endMs"] < w["startMs"]:
            raise Problem("400-201", f"words[{i}].endMs: {w['endMs']} is before startMs")
        words.append(Word(w["speaker"], w["text"], w["startMs"], w["endMs"]))
    return words, "words"


@lru_cache(maxsize=32)
def _sample_script(name: str, directory: str) -> tuple[Word, ...] | None:
    """The words of sample call ``name`` in ``directory`` (None if there is none), read once:
    loading a sample reads and checks its audio and sidecar (about 25 ms), which a server
    attaching a script to every call must not pay each time on its event loop."""
    from mgsim.sim.call import list_samples, load_sample  # reads files: only when asked

    if name not in {p.stem for p in list_samples(directory)}:
        return None
    words = load_sample(name, directory).words
    return tuple(Word(w.speaker, w.text, w.start_ms, w.end_ms) for w in words)


def _sim_find(state: ServerState, guid: str) -> Any:
    """The open or kept ended call ``guid``; 404-01 otherwise, saying when older ended calls
    were released (only the most recent ``keep_calls`` are kept)."""
    call = state.gateway.find(guid)
    if call is None:
        raise state.gateway.not_found(guid)
    return call


async def _sim_get(state: ServerState, request: Request, body: dict[str, Any] | None) -> Response:
    await state.gateway.transcription.settled(request.path_params["guid"])
    return JSONResponse(_sim_call_view(_sim_find(state, request.path_params["guid"])))


async def _sim_delete(
    state: ServerState, request: Request, body: dict[str, Any] | None
) -> Response:
    call = state.gateway.hang_up(request.path_params["guid"])
    # Answered once the closing segment is transcribed (off the loop, under a real clock).
    await state.gateway.transcription.settled(call.guid)
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
    path = request.url.path
    hint = " (without the trailing slash)" if path.endswith("/") and len(path) > 1 else ""
    return _envelope(state, Problem("404-01", f"No such path: {path}{hint}"))


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Under a real server: warm up off the loop (:mod:`mgsim.server.warmup`), then the
    media listeners."""
    await asyncio.to_thread(warm_up)
    # What start-up made (modules, the contract, validators) lives as long as the server:
    # keep it out of the collector's full passes, which would otherwise scan it all again
    # and again, each time holding the loop.
    gc.collect()
    gc.freeze()
    try:
        async with media_lifespan(app):
            yield
    finally:
        # Nothing accepted is lost: segments closed by the last hang-ups are transcribed
        # (and their webhooks sent) before the server goes.
        await app.state.mgsim.gateway.transcription.settled()


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
    gateway = gateway or Gateway(
        clock,
        random.Random(seed),
        keep_audio_of=min(DEFAULT_KEEP_AUDIO_OF, config.keep_calls),
        keep_calls=config.keep_calls,
    )
    state = ServerState(
        config=config,
        clock=clock,
        gateway=gateway,
        tokens=TwilioTokens(clock, config.twilio_url_ttl_s),
        fault_rng=random.Random(None if seed is None else seed + 1),
        rules=FaultRules(config.fault_rules, seed=seed),
        spike=SpikeArrest(config.spike_arrest_per_s, clock) if config.spike_arrest_per_s else None,
        quota=DailyQuota(config.daily_quota, clock) if config.daily_quota else None,
    )
    state.rules.on_remove = partial(injection.forget_rule_counters, state)
    if gateway.transcription.executor is None:
        # One recognition at a time: each uses the threads its engine is given (Whisper: 2),
        # so more would only share the same cores; and none waits behind asyncio's default
        # pool, which serves everything else. Its idle thread goes with the gateway.
        gateway.transcription.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mgsim-recognise"
        )
    routes = [
        Route(
            START,
            _endpoint(
                _start, schema="StartStreamingRequest", per_call=True, name="start-streaming"
            ),
            methods=["POST"],
        ),
        Route(
            STOP,
            _endpoint(_stop, schema="StopStreamingRequest", per_call=True, name="stop-streaming"),
            methods=["POST"],
        ),
        Route(TWILIO_URL, _endpoint(_twilio_url, name="twilio-media-stream-url"), methods=["GET"]),
        Route(MESSAGES, _endpoint(_messages, name="conversation-messages"), methods=["GET"]),
        Route(
            "/_sim/v1/calls",
            _endpoint(_sim_open, schema="SimCallRequest", vendor=False),
            methods=["POST"],
        ),
        one_path(
            "/_sim/v1/calls/{guid}",
            GET=_endpoint(_sim_get, vendor=False),
            DELETE=_endpoint(_sim_delete, vendor=False),
        ),
        Route(
            "/_sim/v1/calls/{guid}/script",
            _endpoint(_sim_script, schema="SimScriptRequest", vendor=False),
            methods=["PUT"],
        ),
        one_path(
            "/_sim/v1/faults",
            GET=_endpoint(sim_faults_list, vendor=False),
            POST=_endpoint(sim_faults_add, schema="FaultRuleRequest", vendor=False),
            DELETE=_endpoint(sim_faults_clear, vendor=False),
        ),
        Route(
            "/_sim/v1/faults/{ruleId}",
            _endpoint(sim_faults_delete, vendor=False),
            methods=["DELETE"],
        ),
        Route("/openapi.yaml", _openapi, methods=["GET"]),
        # Real media transports: Twilio/AudioHook WebSockets, Kinesis Video over HTTP.
        *media_routes(TWILIO_WS_PREFIX, partial(_endpoint, vendor=False)),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={404: _http_error, 405: _http_error},
        lifespan=_lifespan,  # warm-up and SIP/RTP listeners, under a real server only
    )
    # A path with a trailing slash is not the API's: 404-01 in the envelope, where
    # Starlette would redirect (307) without checking credentials or saying why.
    app.router.redirect_slashes = False
    app.state.mgsim = state
    app.state.media = MediaHub(state)
    return app
