"""Play a call's wire messages and timed control actions together, on the gateway's clock.

:func:`play` feeds an encoder's :class:`~mgsim.media._base.Wire` messages into a media
session of the gateway while running scheduled callables (start-streaming, stop-streaming,
hang-ups, anything) at their times. Both are keyed by media time in milliseconds from the
start of playback; before acting the clock is moved to that time (a
:class:`~mgsim.clock.VirtualClock` jumps, a real clock sleeps), so what was streamed is
decided exactly by when start and stop happened relative to the media.

Ordering rule: wires are delivered in the order the encoder produced them (a reordered
packet stays reordered); an action at ``t`` runs before any wire with ``at_ms >= t``, so
**actions at the same time as a wire come first**. A media message is streamed when it is
delivered while a segment is open, and each encoder says what its ``at_ms`` is: the first
sample's time for Twilio and RTP, the last sample's for AudioHook frames and Kinesis
fragments (they are sent once complete). With 20 ms frames, a start at ``a`` and a stop at
``b`` therefore stream exactly the frames delivered in ``[a, b)``: samples
``[8a, 8b)`` for Twilio and SIPREC and ``[8a - 160, 8b - 160)`` for AudioHook and
Amazon Connect (``a``, ``b`` in ms, on frame boundaries).

>>> import numpy as np
>>> from mgsim.clock import VirtualClock
>>> from mgsim.gateway import Gateway, StartParams
>>> from mgsim.media import twilio
>>> from mgsim.media._base import StereoCall
>>> gw = Gateway(VirtualClock())
>>> guid = "CA" + "0" * 32
>>> call = StereoCall(np.full(16000, 500, np.int16), np.zeros(16000, np.int16))
>>> result = play(gw, "twilio", twilio.encode(call, guid=guid), {
...     500.0: lambda: gw.start("twilio", guid, StartParams("c", "a")),
...     1500.0: lambda: gw.stop("twilio", guid)})
>>> result.streamed_ranges("customer"), result.call.segments[0].samples["customer"]
([(4000, 12000)], 8000)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.clock import Clock
from mgsim.errors import ConfigError
from mgsim.gateway.accounting import Accounting
from mgsim.gateway.calls import CallState, Gateway
from mgsim.gateway.mapping import ROLES, Role
from mgsim.gateway.sessions import MediaSession, is_media, open_media_session
from mgsim.media._base import Reply, Wire

__all__ = ["ActionOutcome", "PlayResult", "play"]

Action = Callable[[], Any]
Schedule = Mapping[float, Action] | Iterable[tuple[float, Action]]


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What one scheduled action returned (``value``) or raised (``error``)."""

    at_ms: float
    value: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class PlayResult:
    """The outcome of :func:`play`.

    ``call`` is the call the media session opened (None for a probe), also after it hung
    up; ``audio``, ``received`` and ``streamed`` hold, per role, the recovered audio and its
    per-sample masks (roles as the latest start-streaming mapped them, or the defaults);
    ``sent`` is how many media messages were fed; ``replies`` what the gateway answered.
    """

    namespace: str
    session: MediaSession
    call: CallState | None
    sent: int
    replies: list[Reply] = field(default_factory=list)
    actions: list[ActionOutcome] = field(default_factory=list)
    audio: dict[Role, npt.NDArray[np.int16]] = field(default_factory=dict)
    received: dict[Role, npt.NDArray[np.bool_]] = field(default_factory=dict)
    streamed: dict[Role, npt.NDArray[np.bool_]] = field(default_factory=dict)

    @property
    def accounting(self) -> Accounting:
        """Where every media message went (the call's, or the session's without a call)."""
        return self.session.accounting

    def balanced(self) -> bool:
        """``sent == received + dropped + lost`` for this call."""
        return self.accounting.total == self.sent

    def streamed_ranges(self, role: Role) -> list[tuple[int, int]]:
        """The streamed samples of ``role`` as ``[start, end)`` runs."""
        return _runs(self.streamed.get(role, np.zeros(0, np.bool_)))


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _gateway_of(target: Any) -> Gateway:
    if isinstance(target, Gateway):
        return target
    gateway = getattr(target, "gateway", None)
    if isinstance(gateway, Gateway):
        return gateway  # a Simulator
    simulator = getattr(target, "simulator", None)
    if simulator is not None and isinstance(getattr(simulator, "gateway", None), Gateway):
        gw: Gateway = simulator.gateway  # an embedded Client
        return gw
    raise ConfigError("play needs a Gateway, a Simulator or a Client with an embedded simulator")


def _move_to(clock: Clock, t: float) -> None:
    advance_to = getattr(clock, "advance_to", None)
    if callable(advance_to):
        advance_to(t)
    else:
        clock.sleep(t - clock.now())


def play(
    target: Any,
    namespace: str,
    wires: Iterable[Wire],
    actions: Schedule | None = None,
    *,
    session: MediaSession | None = None,
    session_options: Mapping[str, Any] | None = None,
    close: bool = True,
    close_at_ms: float | None = None,
    strict: bool = True,
    roles: Mapping[str, Role] | None = None,
    on_open: Callable[[CallState], Any] | None = None,
) -> PlayResult:
    """Feed ``wires`` into a new media session of ``namespace`` while running ``actions``.

    ``target`` is a :class:`~mgsim.gateway.Gateway`, a :class:`~mgsim.Simulator` or an
    embedded :class:`~mgsim.Client` (they share the gateway and its clock). ``actions``
    maps media time in ms to callables (or is a list of ``(ms, callable)`` pairs, which
    may repeat a time). ``session`` reuses an open media session instead of opening one
    with ``session_options``. With ``close`` the session is closed at ``close_at_ms``
    (default: the last wire's time), after the actions due by then. An action's exception
    propagates unless ``strict=False``, which records it in :attr:`PlayResult.actions`.
    ``roles`` overrides the channel → role mapping of the result. ``on_open`` runs once,
    right after the message that opened the call (as an integrator reacting to the call's
    start event would), so it can start streaming before the first audio arrives.
    """
    gw = _gateway_of(target)
    clock = gw.clock
    t0 = clock.now()
    if session is None:
        session = open_media_session(gw, namespace, **dict(session_options or {}))
    items = actions.items() if isinstance(actions, Mapping) else (actions or ())
    schedule = sorted(((float(t), i, fn) for i, (t, fn) in enumerate(items)), key=lambda a: a[:2])
    outcomes: list[ActionOutcome] = []
    replies: list[Reply] = []
    pending = 0

    def act(at_ms: float, fn: Action) -> None:
        session.flush()  # held media is on the call before an action sees it
        try:
            outcomes.append(ActionOutcome(at_ms, fn()))
        except Exception as exc:
            if strict:
                raise
            outcomes.append(ActionOutcome(at_ms, error=exc))

    def run_due(until_ms: float) -> None:
        nonlocal pending
        while pending < len(schedule) and schedule[pending][0] <= until_ms:
            at_ms, _, fn = schedule[pending]
            pending += 1
            _move_to(clock, t0 + at_ms / 1000.0)
            act(at_ms, fn)

    sent = 0
    last_ms = 0.0
    for wire in wires:
        run_due(wire.at_ms)
        _move_to(clock, t0 + wire.at_ms / 1000.0)
        last_ms = max(last_ms, wire.at_ms)
        sent += is_media(namespace, wire)
        replies.extend(session.feed(wire, hold=True))
        if on_open is not None and session.call is not None:
            act(wire.at_ms, partial(on_open, session.call))
            on_open = None
    if close:
        end_ms = last_ms if close_at_ms is None else max(close_at_ms, last_ms)
        run_due(end_ms)
        _move_to(clock, t0 + end_ms / 1000.0)
        replies.extend(session.close())
    run_due(float("inf"))
    session.flush()

    result = PlayResult(namespace, session, session.call, sent, replies, outcomes)
    call = session.call
    if call is not None:
        mapping = dict(roles) if roles is not None else call.roles
        for role in ROLES:
            channel = call.channel_of(role, mapping)
            timeline = call.timeline(channel)
            result.audio[role] = timeline.audio()
            result.received[role] = timeline.received_mask()
            result.streamed[role] = timeline.streamed_mask()
    return result
