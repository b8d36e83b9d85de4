"""Scenarios over real loopback sockets: the ``--transport socket`` twin of
:func:`~mgsim.sim.scenario.run_scenario`.

:func:`run_scenario_over_sockets` starts a real server (uvicorn with its lifespan, SIP and
RTP listeners on free loopback ports) in a background thread, plays the scenario's wires
to it over the platform's own transport (SIP/RTP, Twilio or AudioHook WebSocket, KVS over
HTTP) and sends the plan's start/stop actions with an :class:`~mgsim.AsyncClient` pointed
at its base URL. Playback runs in fast mode (unless ``Scenario.realtime``): before each
action it waits until the server has accounted for every media message sent, so what is
streamed matches the in-process run of the same scenario. The result is built from the
server's gateway state exactly as the in-process runner builds it.

Control-plane latency and injected faults need real time (``Scenario.realtime``): the
server then spends the latency and draws the faults, each action runs beside the media
(a slow or retried stop lets audio through meanwhile, as on a real call), and a guard whose
stop is not confirmed by its deadline masks the audio at the source, as in process. In fast
mode there is no clock for latency to take: a scenario asking for it raises
:class:`~mgsim.errors.ConfigError`. (Fast-mode playback holds the media until each stop is
answered, so a fail-closed guard never has anything to mask.)

>>> from mgsim.sim.call import load_sample
>>> from mgsim.sim.plans import Plan
>>> call = load_sample("card_payment").truncated(30_000)
>>> result = run_scenario_over_sockets(Scenario(call, "twilio", Plan("guard")))
>>> result.leaks["pci_words_transcribed"]
0
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import numpy as np

from mgsim.client import AsyncClient, RetryPolicy
from mgsim.contract.models import AmazonConnectParams, AutotranscribeParams
from mgsim.errors import ConfigError, MgsimError, TransportError
from mgsim.journal import Journal
from mgsim.media._base import Wire
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.server.webhooks import WebhookSink
from mgsim.sim.engines import engine_for
from mgsim.sim.masking import silence
from mgsim.sim.plans import ControlAction
from mgsim.sim.scenario import (
    ActionRecord,
    Scenario,
    ScenarioResult,
    collect_result,
    failed_closed,
    in_fresh_loop,
    perform_action,
)
from mgsim.simulator import Simulator
from mgsim.transports.playback import Endpoints, play_over_sockets
from mgsim.transports.senders import Sender
from mgsim.transports.serve import ServerThread

__all__ = ["check_socket_scenario", "play_scenario", "run_scenario_over_sockets"]

_OPEN_TIMEOUT_S = 10.0
_POLL_S = 0.005
_AFTER_MS = 1e-3  # after a wire at the same media time: actions at t precede wires at t
_RTP_BURST_MS = 500.0  # 25 packets per RTP socket between waits


def check_socket_scenario(scenario: Scenario) -> None:
    """Raise :class:`ConfigError` if ``scenario`` asks for what the socket transport does
    not simulate in fast mode (control latency or jitter, injected faults).

    >>> from mgsim.sim.call import load_sample
    >>> slow = Scenario(load_sample("card_payment"), control_latency_ms=400)
    >>> check_socket_scenario(slow)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    mgsim.errors.ConfigError: over sockets, control latency and faults need real time ...
    """
    if _has_faults(scenario) and not scenario.realtime:
        raise ConfigError(
            "over sockets, control latency and faults need real time (Scenario.realtime, "
            "mgsim call --realtime); fast mode has no clock for them to take"
        )


def _has_faults(sc: Scenario) -> bool:
    faults = sc.faults
    drawn = faults is not None and any(
        (faults.latency_ms, faults.jitter_ms, faults.rate_503, faults.rate_500, faults.rate_429)
    )
    return bool(drawn or sc.fault_rules or sc.control_latency_ms or sc.control_jitter_ms)


def _server_faults(sc: Scenario) -> Faults:
    base = sc.faults or Faults()
    return replace(
        base,
        latency_ms=base.latency_ms + sc.control_latency_ms,
        jitter_ms=base.jitter_ms + sc.control_jitter_ms,
    )


def run_scenario_over_sockets(scenario: Scenario) -> ScenarioResult:
    """Run ``scenario`` against a real loopback server and analyse it like
    :func:`~mgsim.sim.scenario.run_scenario` does. The server is always shut down."""
    check_socket_scenario(scenario)
    config = SimulatorConfig(
        seed=scenario.seed,
        spike_arrest_per_s=None,
        daily_quota=None,
        sip_port=0,
        faults=_server_faults(scenario),
        fault_rules=scenario.fault_rules,
    )
    sim = Simulator(config)
    sink = WebhookSink()
    transcription = sim.gateway.transcription
    # Set up before the server thread starts, so nothing on its loop can race these writes.
    transcription.webhooks = sink
    transcription.attach(scenario.guid, engine_for(scenario.call, scenario.engine))
    server = ServerThread(sim)
    used: dict[str, str] = {}
    try:
        server.start()
        records, journal = in_fresh_loop(_play_on(scenario, server, used))
    finally:
        # Joined (bounded) before the gateway state is read below.
        server.stop()
        sim.close()
    guid = scenario.guid
    call = sim.gateway.calls.get(guid) or sim.gateway.ended.get(guid)
    result = collect_result(scenario, transcription, call, records, journal,
                            extra={"transport": "socket"})  # fmt: skip
    if scenario.impairment is not None:
        result.impairment = scenario.impaired().report  # seeded: what was played
    result.transport = used
    return result


async def _play_on(
    sc: Scenario, server: ServerThread, used: dict[str, str]
) -> tuple[list[ActionRecord], Journal]:
    # Two clients: the control one's journal is the result's (only the integration's
    # requests), the other follows the media accounting and fetches the Twilio URL.
    async with (
        AsyncClient(server.base_url, retry=RetryPolicy()) as control,
        AsyncClient(server.base_url) as media,
    ):
        replies: list[str | bytes] = []
        played = await play_scenario(
            sc, server.endpoints, control=control, media=media, replies=replies
        )
        used.update(transport_used(sc.namespace, server, replies))
        return played


async def play_scenario(
    sc: Scenario,
    endpoints: Endpoints,
    *,
    control: AsyncClient,
    media: AsyncClient,
    probe: bool = True,
    sip_transport: str = "udp",
    on_sent: Callable[[Wire, Sender], None] | None = None,
    replies: list[str | bytes] | None = None,
) -> tuple[list[ActionRecord], Journal]:
    """Play ``sc`` to the gateway at ``endpoints`` over its platform's transport while
    ``control`` sends the plan's actions; ``media`` fetches the Twilio URL and, with
    ``probe`` (an ``mgsim serve``), follows the call's accounting. Without ``probe`` (a
    gateway with no ``/_sim`` API) the scenario must be real time. Returns the action
    records and the control journal; ``replies`` (if given) collects what the gateway
    answered on the media transport."""
    guid = sc.guid
    params = sc.start_params()
    stream_arn = params.stream_arn if isinstance(params, AmazonConnectParams) else None
    autotranscribe = AutotranscribeParams(
        redaction_output=sc.redaction_output, detailed_token=sc.detailed_token or None
    )
    within_ms = sc.stop_within_ms if sc.stop_within_ms is not None else sc.plan.margin_before_ms
    records: list[ActionRecord] = []

    async def call_opened() -> None:
        # An integration learns of a call from its platform, never before media opens.
        if not probe:
            return  # a real gateway shows no call list: the first wire has gone out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _OPEN_TIMEOUT_S
        while loop.time() < deadline:
            response = await media.request("GET", f"/_sim/v1/media/calls/{guid}")
            if response.status_code == 200:
                return
            await asyncio.sleep(_POLL_S)
        raise TransportError(f"the server never opened call {guid}")

    async def act(action: ControlAction) -> ActionRecord:
        if not records:
            try:
                await call_opened()
            except MgsimError as exc:
                return record(action, False, f"{type(exc).__name__}: {exc}")
        sent_ms = round((loop.time() - started) * 1000.0, 3) if concurrent else None

        async def ended() -> bool:
            return probe and await _ended(media, guid)

        confirmed, detail = await perform_action(
            control, sc, guid, action, autotranscribe=autotranscribe, params=params,
            within_ms=within_ms, call_ended=ended,
        )  # fmt: skip
        return record(action, confirmed, detail, sent_ms)

    # In real time actions run beside the media and a guard keeps its deadline on the
    # clock (as in process); in fast mode each action holds the media until answered.
    concurrent = sc.realtime
    loop = asyncio.get_running_loop()
    started = loop.time()
    actions = sc.plan.actions(sc.call)
    confirmed_at: dict[int, float] = {}
    mask: list[tuple[float, float]] = []
    masked: dict[int, tuple[float, float]] = {}

    def schedule_entry(i: int, action: ControlAction) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            done = await act(action)
            if done.confirmed and action.action == "stop":
                confirmed_at[i] = done.done_ms
            records.append(done)

        return run

    def watchdog(i: int, action: ControlAction) -> Callable[[], None]:
        def check() -> None:
            if i not in confirmed_at:
                until = next(
                    (a.at_ms for a in actions[i + 1 :] if a.action == "start"),
                    sc.call.duration_ms,
                )
                window = (action.at_ms + within_ms, until)
                mask.append(window)
                masked[i] = window

        return check

    def at_source(wire: Wire) -> Wire:
        if mask and any(lo <= wire.at_ms < hi for lo, hi in mask):
            return silence(sc.namespace, wire)
        return wire

    def record(
        action: ControlAction, confirmed: bool, detail: str, sent_ms: float | None = None
    ) -> ActionRecord:
        # Fast mode holds the media while an action runs: it takes effect at its
        # (possibly deferred) media time. In real time it took what the clock says.
        done_ms = max(action.at_ms, opens_ms)
        if concurrent:
            done_ms = round((loop.time() - started) * 1000.0, 3)
        return ActionRecord(
            action.at_ms, action.action, action.reason, confirmed, detail, done_ms,
            sent_ms=done_ms if sent_ms is None else sent_ms,
        )  # fmt: skip

    wires = list(sc.wires())
    # Nothing is asked of a call before its platform opened it (in-process, the control
    # client waits for the session the same way): an action planned before the first
    # wire (Connect's first fragment ends at 1 s) goes right after it.
    opens_ms = wires[0].at_ms + _AFTER_MS if wires else 0.0
    schedule: list[tuple[float, Callable[[], Any]]] = [
        (max(a.at_ms, opens_ms), schedule_entry(i, a)) for i, a in enumerate(actions)
    ]
    if concurrent and sc.confirm_stop and sc.fail_closed:
        schedule += [
            (a.at_ms + within_ms, watchdog(i, a))
            for i, a in enumerate(actions)
            if a.action == "stop" and a.guards
        ]
    if sc.namespace == "siprec" and not sc.realtime:
        # RTP is UDP: unpaced, a whole call overflows the server's receive buffer. A
        # no-op action every so often makes fast mode wait until the server has
        # accounted for the media so far.
        end_ms = wires[-1].at_ms if wires else 0.0
        schedule += [(float(t), _nothing) for t in np.arange(_RTP_BURST_MS, end_ms, _RTP_BURST_MS)]
    played = await play_over_sockets(
        endpoints,
        sc.namespace,
        wires,
        schedule,
        client=media,
        guid=guid,
        realtime=sc.realtime,
        stream_arn=stream_arn,
        concurrent_actions=concurrent,
        transform=at_source if concurrent else None,
        probe=probe,
        sip_transport=sip_transport,
        on_sent=on_sent,
    )
    if replies is not None:
        replies.extend(played.replies)
    records.sort(key=lambda r: r.at_ms)
    for i, window in masked.items():
        action = actions[i]
        for k, rec in enumerate(records):
            if (rec.at_ms, rec.action, rec.reason) == (action.at_ms, "stop", action.reason):
                records[k] = failed_closed(rec, window)
    return records, control.journal


def transport_used(
    namespace: str, server: ServerThread, replies: list[str | bytes]
) -> dict[str, str]:
    """Which transport and ports a socket run used: ``control`` and ``media`` (for SIPREC
    the RTP ports come from the SDP answer of the server's replies)."""
    host, port = server.host, server.port
    if namespace == "siprec":
        sip = server.endpoints.sip
        rtp = sorted(
            {
                int(line.split()[1])
                for reply in replies
                for line in (
                    reply.decode("latin-1") if isinstance(reply, bytes) else reply
                ).splitlines()
                if line.startswith("m=audio ")
            }
        )
        where = f"{sip[0]}:{sip[1]}" if sip else "?"
        ports = ", ".join(map(str, rtp)) or "?"
        media = f"SIP over UDP to {where}, RTP over UDP to ports {ports} (from the SDP answer)"
    elif namespace == "twilio":
        media = f"Twilio Media Streams over WebSocket ws://{host}:{port}/mg-twilio-autotranscribe/twilio-media/***"
    elif namespace == "genesysaudiohook":
        media = f"AudioHook over WebSocket ws://{host}:{port}/audiohook/ws"
    else:
        media = f"Kinesis Video Streams over HTTP: PutMedia to http://{host}:{port}/putMedia"
    return {"transport": "socket", "control": f"HTTP {server.base_url}", "media": media}


async def _ended(client: AsyncClient, guid: str) -> bool:
    response = await client.request("GET", f"/_sim/v1/media/calls/{guid}")
    return response.status_code == 200 and not response.json().get("open", True)


def _nothing() -> None:
    """A pacing point for fast-mode playback."""
