"""Scenarios: a call, a namespace, a control plan and a clock, run end to end.

:func:`run_scenario` plays a :class:`~mgsim.sim.call.Call` through one platform's wire
format into an embedded simulator while a client sends start-streaming / stop-streaming at
the plan's times, then reports what was transcribed, redacted and leaked.

Everything runs as concurrent coroutines on one event loop: the media feeder, the control
client (with its retries) and the server (with its injected latency). In virtual time
(the default) the loop fast-forwards whenever every coroutine waits, so a 50-second call
takes a fraction of a second, yet a stop that is slow or retried still lets media through
meanwhile, exactly as in real time. That exposure is what the leak analysis measures.

>>> from mgsim.sim.call import load_sample
>>> result = run_scenario(Scenario(load_sample("card_payment"), "twilio", Plan("guard")))
>>> result.leaks["pci_words_transcribed"], result.leaks["pci_words"]
(0, 23)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from mgsim.client import AsyncClient, RetryPolicy
from mgsim.clock import LoopClock, virtual_time
from mgsim.contract.models import (
    AmazonConnectParams,
    AutotranscribeParams,
    NamespaceParams,
    SiprecParams,
    TwilioParams,
)
from mgsim.errors import ConfigError, MgsimError
from mgsim.gateway.calls import CallState
from mgsim.gateway.mapping import ROLES, channel_roles
from mgsim.gateway.sessions import open_media_session
from mgsim.gateway.transcription import GatewayTranscription
from mgsim.journal import Journal
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import Wire
from mgsim.media.impair import Impaired, Impairment, ImpairReport
from mgsim.server.config import Faults, SimulatorConfig
from mgsim.server.faults import FaultRule
from mgsim.server.webhooks import WebhookSink
from mgsim.sim.call import Call
from mgsim.sim.engines import ENGINES, EngineKind, engine_for
from mgsim.sim.explain import lost_words, masked_spans
from mgsim.sim.masking import silence
from mgsim.sim.plans import ControlAction, Plan
from mgsim.simulator import Simulator
from mgsim.speech.engine import Utterance
from mgsim.speech.leaks import LeakReport, analyze_leaks
from mgsim.speech.redact import ParticipantPolicies, redact_words
from mgsim.targets import Target

__all__ = [
    "NAMESPACES",
    "ActionRecord",
    "Scenario",
    "ScenarioResult",
    "collect_result",
    "failed_closed",
    "guid_for",
    "in_fresh_loop",
    "perform_action",
    "run_scenario",
    "streamed_by_role",
]

NAMESPACES = ("siprec", "twilio", "genesysaudiohook", "amazonconnect")
Namespace = Literal["siprec", "twilio", "genesysaudiohook", "amazonconnect"]
KVS_FRAGMENT_MS = 1000
BATCH_MEDIA = True
"""Feed media due before the next control event in one step (virtual time only). Off,
every frame takes its own turn of the event loop; the outcome is the same (tested)."""
T = TypeVar("T")


def guid_for(namespace: str, call_id: str) -> str:
    """A stable call id in the form ``namespace`` uses, derived from ``call_id``.

    >>> guid_for("twilio", "card_payment")[:2], len(guid_for("twilio", "card_payment"))
    ('CA', 34)
    """
    digest = hashlib.sha256(f"{namespace}:{call_id}".encode()).hexdigest()
    if namespace == "siprec":
        digits = str(int(digest, 16))[:40]
        return "-".join(digits[i : i + 10] for i in range(0, 40, 10))
    if namespace == "twilio":
        return "CA" + digest[:32]
    if namespace in ("amazonconnect", "genesysaudiohook"):
        return str(uuid.UUID(digest[:32]))
    raise ConfigError(f"unknown namespace {namespace!r}")


def _stream_arn(guid: str) -> str:
    return (
        "arn:aws:kinesisvideo:us-east-1:123456789012:stream/"
        f"mgsim-connect-demo-contact-{guid}/1767603600000"
    )


@dataclass(frozen=True, slots=True)
class Scenario:
    """What to run. ``params`` are the namespace parameters sent with start-streaming (and
    the platform is set up to match them); ``control_latency_ms`` and ``faults`` make the
    simulated gateway slow or flaky; ``confirm_stop`` uses the PCI-safe stop (retried until
    confirmed within ``stop_within_ms``, by default the plan's margin before a span); with
    ``fail_closed``, a stop that is not confirmed in time makes the integration mask the
    audio at the source until the guard's next start (see :mod:`mgsim.sim.masking`)."""

    call: Call
    namespace: Namespace = "siprec"
    plan: Plan = field(default_factory=Plan)
    params: NamespaceParams | None = None
    redaction_output: Literal["redacted", "unredacted", "redacted_and_unredacted"] = "redacted"
    detailed_token: bool = False
    control_latency_ms: float = 0.0
    control_jitter_ms: float = 0.0
    faults: Faults | None = None
    fault_rules: tuple[FaultRule, ...] = ()
    """Per-request fault rules for the scenario's simulator (tried before ``faults``; see
    :mod:`mgsim.server.faults`), e.g. a latency distribution on every control request."""
    confirm_stop: bool = True
    fail_closed: bool = True
    stop_within_ms: float | None = None
    seed: int = 0
    realtime: bool = False
    customer_id: str = "customer-1"
    agent_id: str = "agent-1"
    engine: EngineKind = "auto"
    """The gateway's transcription engine (:func:`mgsim.sim.engines.engine_for`): ``auto``
    replays a scripted call's words and runs Whisper on a recording."""
    impairment: Impairment | None = None
    """Network effects on the media as the platform's transport allows them (see
    :mod:`mgsim.media.impair`); fail-closed masking then applies at each message's
    arrival, which is never earlier than its sending, so it can only mask more."""
    wires_override: tuple[Wire, ...] | None = field(default=None, repr=False)
    """The wires to play instead of encoding the call (a replayed capture,
    :mod:`mgsim.capture.replay`); the call then supplies only the plan's times and script."""
    call_guid: str | None = None
    """The call's guid; None: derived from the call's id (:func:`guid_for`), the same
    every run. A run against a target gets a fresh one unless this is set."""
    target: Target | None = None
    """A gateway that is not the embedded one (:class:`mgsim.targets.Target`): the call is
    played to it over the platform's real transport and its control API is driven (see
    :mod:`mgsim.sim.target_scenario`). None, the default: an embedded simulator."""

    def __post_init__(self) -> None:
        if self.namespace not in NAMESPACES:
            raise ConfigError(f"unknown namespace {self.namespace!r}; use one of {NAMESPACES}")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; use one of {ENGINES}")
        if self.impairment is not None:
            self.impairment.check(self.namespace)
        if self.params is not None and self.params.namespace != self.namespace:
            raise ConfigError(
                f"{type(self.params).__name__} belongs to {self.params.namespace}, "
                f"not {self.namespace}"
            )

    @property
    def guid(self) -> str:
        if self.call_guid is not None:
            return self.call_guid
        return guid_for(self.namespace, self.call.call_id)

    def start_params(self) -> NamespaceParams | None:
        if self.params is not None:
            return self.params
        if self.namespace == "amazonconnect":
            return AmazonConnectParams(_stream_arn(self.guid))
        return None

    def wires(self) -> Iterator[Wire]:
        """The call as the gateway receives it: encoded, then impaired if asked."""
        return iter(self.impaired().wires) if self.impairment else self.sent_wires()

    def impaired(self) -> Impaired:
        """The impaired wires and the report of what the impairment did."""
        if self.impairment is None:
            raise ConfigError("this scenario has no impairment")
        return self.impairment.apply(self.sent_wires(), self.namespace)

    def sent_wires(self) -> Iterator[Wire]:
        """The call as the platform sends it (its encoder's output, or the override)."""
        if self.wires_override is not None:
            return iter(self.wires_override)
        audio, guid = self.call.audio, self.guid
        params = self.start_params()
        if self.namespace == "siprec":
            order = (
                params.media_line_order if isinstance(params, SiprecParams) else "CUSTOMER_FIRST"
            )
            return siprec.encode(audio, guid=guid, media_line_order=order, seed=self.seed)
        if self.namespace == "twilio":
            track = "inbound"
            if isinstance(params, TwilioParams) and params.inbound == "agent":
                track = "outbound"
            return twilio.encode(audio, guid=guid, customer_track=track)  # type: ignore[arg-type]
        if self.namespace == "genesysaudiohook":
            return audiohook.encode(audio, guid=guid)
        assert isinstance(params, AmazonConnectParams)
        return kvs.encode(
            audio, guid=guid, stream_arn=params.stream_arn, fragment_ms=KVS_FRAGMENT_MS
        )


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One control action as it happened: ``at_ms`` when the plan wanted it, ``sent_ms``
    when its first request went out (later when the call reached the gateway later),
    ``done_ms`` when the client was done with it (for a confirmed action, when it took
    effect) and whether the gateway confirmed it."""

    at_ms: float
    action: str
    reason: str
    confirmed: bool
    detail: str
    done_ms: float
    masked_until_ms: float | None = None
    sent_ms: float | None = None

    @property
    def effective_ms(self) -> float | None:
        """When the action took effect on the gateway (None when it never did)."""
        return self.done_ms if self.confirmed else None


@dataclass(slots=True)
class ScenarioResult:
    """What a scenario produced. ``leaks`` is the leak summary (see
    :meth:`mgsim.speech.leaks.LeakReport.summary`); ``report`` the per-span detail."""

    scenario: Scenario
    guid: str
    call: CallState | None
    utterances: list[Utterance]
    webhooks: list[dict[str, Any]]
    streamed: dict[str, npt.NDArray[np.bool_]]
    actions: list[ActionRecord]
    journal: Journal
    report: LeakReport
    policies: ParticipantPolicies
    impairment: ImpairReport | None = None
    """What the scenario's impairment did to the media (None without one)."""
    transport: dict[str, str] | None = None
    """Over sockets: the transport and the addresses and ports used (``control``,
    ``media``); None in process."""
    remote: Any = None
    """Against a target (:mod:`mgsim.sim.target_scenario`): its
    :class:`~mgsim.sim.target_scenario.RemoteOutcome` (messages, webhooks, stop summaries);
    None in process."""

    def __repr__(self) -> str:
        # Short: the generated repr spelt out the call, every utterance, webhook and
        # request, and asyncio.run formats the finished task's result when it restores
        # SIGINT (3.11), a few ms and megabytes of text per scenario.
        return (
            f"<ScenarioResult {self.scenario.call.call_id} on {self.scenario.namespace}: "
            f"{self.report.verdict}, {len(self.utterances)} utterances>"
        )

    @property
    def leaks(self) -> dict[str, Any]:
        return self.report.summary()

    def utterance_rows(self) -> list[dict[str, Any]]:
        """One dict per utterance: role, start_ms, end_ms, text (what was said) and
        redacted_text (what redaction delivered of it, with the participant's context)."""
        delivered: dict[tuple[str, int, int], str] = {}
        for body in self.webhooks:
            response = body["autotranscribeResponse"]
            key = (body["sender"]["role"], response["start"], response["end"])
            delivered[key] = response["utterance"][0]["text"]
        rows = []
        for utt in self.utterances:
            key = (utt.role, round(utt.start_ms), round(utt.end_ms))
            redacted = delivered.get(key)
            if redacted is None or self.scenario.redaction_output == "unredacted":
                redacted = redact_words(list(utt.texts), self.policies.for_role(utt.role)).text
            rows.append(
                {
                    "role": utt.role,
                    "start_ms": round(utt.start_ms),
                    "end_ms": round(utt.end_ms),
                    "text": utt.text,
                    "redacted_text": redacted,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        """The whole outcome as plain JSON (what ``mgsim call --json`` prints)."""
        summary = self.leaks
        return {
            "call": self.scenario.call.call_id,
            "namespace": self.scenario.namespace,
            "guid": self.guid,
            "plan": {
                "kind": self.scenario.plan.kind,
                "margin_before_ms": self.scenario.plan.margin_before_ms,
                "margin_after_ms": self.scenario.plan.margin_after_ms,
            },
            "redaction_output": self.scenario.redaction_output,
            "transport": self.transport or {"transport": "inprocess"},
            "utterances": self.utterance_rows(),
            "verdict": self.report.verdict,
            "spans": [span.to_json() for span in self.report.spans],
            "masked": [
                {"start_ms": a, "end_ms": b, "roles": ["customer", "agent"]}
                for a, b in masked_spans(self)
            ],
            "lost": [
                {
                    "role": x.role,
                    "start_ms": x.start_ms,
                    "end_ms": x.end_ms,
                    "words": list(x.words),
                    "sensitive_words": x.sensitive,
                    "reason": x.reason,
                    "clipped": x.clipped,
                }
                for x in lost_words(self)
            ],
            "leaks": {
                "pci_words": summary["pci_words"],
                "pci_words_transcribed": summary["pci_words_transcribed"],
                "pci_ms_transcribed": summary["pci_ms_transcribed"],
                "pci_words_visible": summary["pci_words_visible"],
                "pci_words_inferable": summary["pci_words_inferable"],
                "spans_leaked": summary["spans_leaked"],
                "verdicts": summary["verdicts"],
                "leaked_labels": summary["leaked_labels"],
            },
            "actions": [
                {
                    "at_ms": a.at_ms,
                    "sent_ms": a.sent_ms,
                    "effective_ms": a.effective_ms,
                    "action": a.action,
                    "reason": a.reason,
                    "confirmed": a.confirmed,
                    "detail": a.detail,
                    "done_ms": a.done_ms,
                    "masked_until_ms": a.masked_until_ms,
                }
                for a in self.actions
            ],
            "requests": [
                {
                    "endpoint": e.endpoint,
                    "status": e.status,
                    "code": e.code,
                    "attempt": e.attempt,
                    "latency_ms": e.latency_ms,
                }
                for e in self.journal.entries
            ],
            "accounting": self.call.accounting.as_dict()
            if self.call is not None
            else (self.remote.accounting if self.remote is not None else None),
            "target": None if self.remote is None else self.remote.to_json(),
            "impairment": None
            if self.impairment is None
            else {
                "sent": self.impairment.sent,
                "lost": self.impairment.dropped,
                "duplicated": self.impairment.duplicated,
                "reordered": self.impairment.reordered,
                "delayed": self.impairment.delayed,
            },
        }


async def perform_action(
    client: AsyncClient,
    sc: Scenario,
    guid: str,
    action: ControlAction,
    *,
    autotranscribe: AutotranscribeParams,
    params: NamespaceParams | None,
    within_ms: float,
    call_ended: Callable[[], Awaitable[bool]],
) -> tuple[bool, str]:
    """Send one planned start or stop as the scenario's integration does; return whether the
    gateway confirmed it and what happened. Both the in-process and the socket runner use it.

    Starts use the client's retries; stops are PCI-safe
    (:meth:`AsyncClient.stop_streaming_confirmed`) unless ``sc.confirm_stop`` is off, when one
    stop is sent and assumed to work. A stop that
    meets a call that has already hung up, and a start that meets one already streaming, are
    confirmed: nothing is left to do.
    """
    try:
        if action.action == "start":
            await client.start_streaming(
                sc.namespace, guid, sc.customer_id, sc.agent_id,
                autotranscribe=autotranscribe, params=params,
            )  # fmt: skip
            return True, "started"
        if sc.confirm_stop:
            outcome = await client.stop_streaming_confirmed(
                sc.namespace, guid, within_s=within_ms / 1000.0
            )
            if not outcome.confirmed and await call_ended():
                return True, "call had ended"  # its open segment closed with it
            return outcome.confirmed, outcome.reason
        # The naive integration: one stop, no retry, assumed to have worked.
        await client.request(
            "POST", "/mg-autotranscribe/v1/stop-streaming",
            json={"namespace": sc.namespace, "guid": guid}, raise_for_status=True,
            retry=RetryPolicy.off(),
        )  # fmt: skip
        return True, "stopped"
    except MgsimError as exc:
        if action.action == "stop" and await call_ended():
            return True, "call had ended"
        if action.action == "start" and getattr(exc, "code", "") == "409-201":
            return True, "already streaming"
        return False, f"{type(exc).__name__}: {exc}"


def in_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on its own event loop, also from inside a running one (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_scenario(scenario: Scenario) -> ScenarioResult:
    """Run ``scenario`` to the end of its call and analyse it (against ``scenario.target``
    when one is named, else in an embedded simulator)."""
    if scenario.target is not None:
        from mgsim.sim.target_scenario import run_scenario_on_target

        return run_scenario_on_target(scenario)
    return in_fresh_loop(_run(scenario))


async def _run(sc: Scenario) -> ScenarioResult:
    if sc.realtime:
        return await _run_on_clock(sc)
    with virtual_time():
        return await _run_on_clock(sc)


async def _run_on_clock(sc: Scenario) -> ScenarioResult:
    clock = LoopClock()
    base = sc.faults or Faults()
    faults = Faults(
        latency_ms=base.latency_ms + sc.control_latency_ms,
        jitter_ms=base.jitter_ms + sc.control_jitter_ms,
        rate_503=base.rate_503,
        rate_500=base.rate_500,
        rate_429=base.rate_429,
    )
    config = SimulatorConfig(
        seed=sc.seed, spike_arrest_per_s=None, daily_quota=None, faults=faults,
        fault_rules=sc.fault_rules,
    )  # fmt: skip
    sim = Simulator(config, clock=clock)
    sink = WebhookSink()
    transcription = sim.gateway.transcription
    transcription.webhooks = sink
    guid = sc.guid
    transcription.attach(guid, engine_for(sc.call, sc.engine))
    params = sc.start_params()
    options = {"stream_arn": params.stream_arn} if isinstance(params, AmazonConnectParams) else {}
    session = open_media_session(sim.gateway, sc.namespace, **options)
    autotranscribe = AutotranscribeParams(
        redaction_output=sc.redaction_output, detailed_token=sc.detailed_token or None
    )
    within_s = sc.stop_within_ms if sc.stop_within_ms is not None else sc.plan.margin_before_ms
    records: list[ActionRecord] = []
    # Media ties break in favour of control actions planned for the same instant.
    epsilon = 1e-6
    actions = sc.plan.actions(sc.call)
    mask: list[tuple[float, float]] = []  # fail-closed windows (ms) of audio masked at source
    confirmed_at: dict[int, float] = {}  # stop action index -> when its confirmation came
    masked: dict[int, tuple[float, float]] = {}

    # The next instant (s) at which the control task or a guard's watchdog acts. Media due
    # before it can be fed in one go: nothing else changes the call meanwhile (see media()).
    wakes: dict[object, float] = {}
    batch = BATCH_MEDIA and not sc.realtime

    impaired = sc.impaired() if sc.impairment is not None else None

    async with AsyncClient(simulator=sim, retry=RetryPolicy()) as client:

        async def media() -> None:
            # In virtual time, stepping the loop once per 20 ms frame costs far more than
            # the frame itself. While no control request is in flight and no watchdog is
            # due, the only thing that can happen before the next planned wake is more
            # media, so frames due before it are fed at once, each stamped with its own
            # time: the outcome is the same as stepping frame by frame.
            last = None
            horizon = min(wakes.values(), default=math.inf) if batch else -math.inf
            for wire in impaired.wires if impaired is not None else sc.sent_wires():
                last = wire
                t = wire.at_ms / 1000.0 + epsilon
                if t < horizon:
                    clock.pin(t)
                    _feed(wire, hold=True)
                    continue
                session.flush()  # what was held is on the call before anything else runs
                clock.pin(None)
                await clock.sleep_until(t)
                _feed(wire)
                # Only other tasks move the wakes, and they ran only while this one slept.
                horizon = min(wakes.values(), default=math.inf) if batch else -math.inf
            session.flush()
            clock.pin(None)
            if last is not None:
                await clock.sleep_until(last.at_ms / 1000.0 + epsilon)
            session.close()  # the transport ends with the media (a SIPREC BYE completes)

        def _feed(wire: Wire, hold: bool = False) -> None:
            if mask and any(lo <= wire.at_ms < hi for lo, hi in mask):
                wire = silence(sc.namespace, wire)
            session.feed(wire, hold=hold)

        async def control(actions: list[ControlAction]) -> None:
            # An integration learns of a call from its platform (an SBC event, Twilio's
            # start, a Connect Lambda once media streaming began): never before media opens.
            while session.call is None and clock.now() * 1000.0 < sc.call.duration_ms:
                wakes[control] = clock.now() + 0.02
                await clock.asleep(0.02)
            for i, action in enumerate(actions):
                # Stays in the past while the action runs: media steps frame by frame
                # until its requests (latency, retries) are over.
                wakes[control] = action.at_ms / 1000.0
                await clock.sleep_until(action.at_ms / 1000.0)
                record = await _act(action)
                if record.confirmed and action.action == "stop":
                    confirmed_at[i] = clock.now() * 1000.0
                records.append(record)
            wakes.pop(control, None)

        async def watchdog(i: int, action: ControlAction) -> None:
            # PCI-safe integrations keep each guard's deadline on the clock, independent of
            # requests still in flight: if the stop is not confirmed when the sensitive
            # moment arrives, the audio is masked at the source until the plan's restart.
            deadline = action.at_ms + within_s
            await clock.sleep_until(deadline / 1000.0)
            wakes.pop(i, None)
            if i not in confirmed_at:
                until = next(
                    (a.at_ms for a in actions[i + 1 :] if a.action == "start"),
                    sc.call.duration_ms,
                )
                mask.append((deadline, until))
                masked[i] = (deadline, until)

        async def _act(action: ControlAction) -> ActionRecord:
            async def ended() -> bool:
                return guid in sim.gateway.ended

            sent_ms = round(clock.now() * 1000.0, 3)
            confirmed, detail = await perform_action(
                client, sc, guid, action, autotranscribe=autotranscribe, params=params,
                within_ms=within_s, call_ended=ended,
            )  # fmt: skip
            return _record(action, confirmed, detail, sent_ms)

        def _record(
            action: ControlAction, confirmed: bool, detail: str, sent_ms: float
        ) -> ActionRecord:
            return ActionRecord(
                action.at_ms,
                action.action,
                action.reason,
                confirmed,
                detail,
                round(clock.now() * 1000.0, 3),
                sent_ms=sent_ms,
            )

        guarded = [
            i
            for i, a in enumerate(actions)
            if a.action == "stop" and a.guards and sc.confirm_stop and sc.fail_closed
        ]
        wakes.update({i: (actions[i].at_ms + within_s) / 1000.0 for i in guarded})
        wakes[control] = 0.0  # until the control task has looked at the call
        guards = [watchdog(i, actions[i]) for i in guarded]
        await asyncio.gather(media(), control(actions), *guards)
        for i, window in masked.items():
            records[i] = failed_closed(records[i], window)
        call = session.call
        journal = client.journal
        # In real time a hang-up's segment may still be in the recognition thread.
        await transcription.settled()

    sim.close()
    result = collect_result(sc, transcription, call, records, journal)
    result.impairment = impaired.report if impaired is not None else None
    return result


def failed_closed(record: ActionRecord, window: tuple[float, float]) -> ActionRecord:
    """``record`` of a guard's stop whose deadline passed unconfirmed: not confirmed, and
    the audio masked at the source over ``window`` (ms). Both runners use it."""
    lo, hi = window
    late = " (confirmed too late)" if record.confirmed else ""
    return replace(
        record,
        confirmed=False,
        detail=f"{record.detail}{late}; audio masked at the source from {lo / 1000:.2f} s "
        f"to {hi / 1000:.2f} s (fail closed)",
        masked_until_ms=hi,
    )


def collect_result(
    sc: Scenario,
    transcription: GatewayTranscription,
    call: CallState | None,
    actions: list[ActionRecord],
    journal: Journal,
    *,
    extra: dict[str, Any] | None = None,
) -> ScenarioResult:
    """Read what a scenario produced off the gateway and analyse its leaks (both runners)."""
    guid = sc.guid
    utterances = transcription.utterances(guid)
    webhooks = transcription.webhooks_of(guid)
    streamed = streamed_by_role(call, sc, len(sc.call.audio.customer))
    report = analyze_leaks(
        sc.call,
        utterances,
        streamed=streamed,
        webhooks=webhooks,
        plan=sc.plan.kind,
        extra={"namespace": sc.namespace, **(extra or {})},
    )
    return ScenarioResult(
        scenario=sc,
        guid=guid,
        call=call,
        utterances=utterances,
        webhooks=webhooks,
        streamed=streamed,
        actions=actions,
        journal=journal,
        report=report,
        policies=transcription.policies,
    )


def streamed_by_role(
    call: CallState | None, sc: Scenario, n: int
) -> dict[str, npt.NDArray[np.bool_]]:
    out: dict[str, npt.NDArray[np.bool_]] = {role: np.zeros(n, dtype=bool) for role in ROLES}
    if call is None:
        return out
    body: dict[str, Any] = {}
    params = sc.start_params()
    if params is not None:
        body.update(params.to_body())
    for channel, role in channel_roles(sc.namespace, body).items():
        timeline = call.timelines.get(channel)
        if timeline is None:
            continue
        mask = timeline.streamed_mask()[:n]
        out[role][: len(mask)] |= mask
    return out
