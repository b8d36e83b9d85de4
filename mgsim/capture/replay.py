"""Replay a capture into the simulated gateway: ``mgsim replay CAPTURE``.

:func:`replay` plays a capture's wires (:func:`~mgsim.capture.load_capture`) into an
embedded simulator through the platform's own decoder, with the same plan options as
``mgsim call``: the plan's start/stop actions are sent by the control client at their
times, in virtual time (``whole`` streams from the first media message: see
:class:`_WholeCapture`). Plans that follow a call's flow or its sensitive spans (``connect``,
``guard``) need the call's script: give ``call=`` (``--audio`` a sample name or a sidecar),
which also lets the reference engine transcribe what was streamed and the leak analysis
follow each span. Without it the plan is ``whole`` and nothing can be transcribed (the
report says so).

The :class:`ReplayReport` says what the gateway would have received, accepted, dropped (by
reason) and transcribed, and lists every protocol problem found in the capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mgsim.capture.files import Capture
from mgsim.errors import ConfigError
from mgsim.media._base import StereoCall
from mgsim.sim.call import Call
from mgsim.sim.plans import ControlAction, Plan
from mgsim.sim.scenario import Scenario, ScenarioResult, run_scenario

__all__ = ["ReplayReport", "replay"]

_SAMPLES_PER_MS = 8


@dataclass(slots=True)
class ReplayReport:
    """What replaying a capture did; :meth:`to_json` is ``mgsim replay --json``."""

    capture: Capture
    result: ScenarioResult
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Received, accepted, dropped and transcribed: the numbers two replays of the
        same call (or a replay and the live call) agree on."""
        call = self.result.call
        accounting = call.accounting.as_dict() if call is not None else {}
        segments = []
        if call is not None:
            for seg in call.segments:
                segments.append(dict(seg.samples))
        return {
            "namespace": self.capture.namespace,
            "guid": self.capture.guid,
            "accounting": accounting,
            "streamed_samples": segments,
            "utterances": [
                {
                    "role": r["role"],
                    "start_ms": r["start_ms"],
                    "end_ms": r["end_ms"],
                    "text": r["redacted_text"],
                }
                for r in self.result.utterance_rows()
            ],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "problems": self.capture.problems,
            "ignored": self.capture.ignored,
            "leaks": self.result.leaks if self.result.scenario.call.sensitive else None,
            "notes": self.notes,
        }


def _silent_call(capture: Capture) -> Call:
    n = int((capture.duration_ms + 1000.0) * _SAMPLES_PER_MS)
    silence = np.zeros(n, np.int16)
    return Call(f"replay-{capture.guid}", StereoCall(silence, silence.copy()))


def _padded(call: Call, until_ms: float) -> Call:
    extra = int(until_ms * _SAMPLES_PER_MS) - len(call.audio.customer)
    pad = np.zeros(max(extra, 0), np.int16)
    audio = StereoCall(
        np.concatenate([call.audio.customer, pad]), np.concatenate([call.audio.agent, pad])
    )
    return replace(call, audio=audio)


@dataclass(frozen=True, slots=True)
class _WholeCapture(Plan):
    """The whole plan for a capture: streaming from the call's first media message.

    A live call's ``whole`` plan starts once media is up (20 ms in); when the integration
    really started is not in a capture, and an SBC often waits after its INVITE, so an
    integration that started when the call opened streamed every packet. Replaying the
    whole capture means streaming all of it."""

    def actions(self, call: Call) -> list[ControlAction]:
        out = Plan.actions(self, call)
        if out and out[0].action == "start":
            out[0] = replace(out[0], at_ms=0.0)
        return out


def replay(
    capture: Capture,
    plan: Plan | None = None,
    *,
    call: Call | None = None,
    redaction_output: str = "redacted",
    seed: int = 0,
) -> ReplayReport:
    """Play ``capture`` into an embedded simulator under ``plan`` (default ``whole``)."""
    plan = plan or Plan("whole")
    notes: list[str] = []
    if call is None:
        if plan.kind != "whole":
            raise ConfigError(
                f"plan {plan.kind} follows the call's script (its flow and sensitive spans): "
                "give the call (--audio NAME or a sidecar .json) or use --plan whole"
            )
        call = _silent_call(capture)
        notes.append(
            "no script given (--audio): nothing is transcribed; the accounting shows what "
            "the gateway received and streamed"
        )
    elif capture.duration_ms > call.duration_ms:
        # The plan ends with the call: a capture running longer than the script (an SBC
        # that waited before its RTP, a BYE after the audio) must not be cut short.
        call = _padded(call, capture.duration_ms + 1000.0)
    if plan.kind == "whole":
        plan = _WholeCapture("whole", plan.margin_before_ms, plan.margin_after_ms)
    scenario = Scenario(
        call,
        capture.namespace,  # type: ignore[arg-type]
        plan,
        redaction_output=redaction_output,  # type: ignore[arg-type]
        seed=seed,
        call_guid=capture.guid,
        wires_override=tuple(capture.wires),
    )
    return ReplayReport(capture, run_scenario(scenario), notes)
