"""Why words of a call were not transcribed, and where the audio was masked.

A run loses words for reasons an integrator can act on: streaming had not started yet (a
Connect call reaches the gateway with its first Kinesis fragment), a stop was in force (for
hold, a transfer or a PCI guard), the audio was masked at the source after a stop failed
closed, or the media itself was lost. :func:`lost_words` names the reason for each stretch
of lost words, using when each action actually **took effect** (not when it was planned).

:func:`masked_spans` says where a fail-closed guard masked the audio. The mask covers
**both participants**: it stands in for the stop-streaming the gateway did not confirm,
and a stop ends both participants' streams; an agent reading a card number back is as
sensitive as the caller reading it. Every word either participant spoke inside the mask is
*clipped* (:attr:`LostStretch.clipped`).

>>> from mgsim.sim.call import load_sample
>>> from mgsim.sim.plans import Plan
>>> from mgsim.sim.scenario import Scenario, run_scenario
>>> result = run_scenario(Scenario(load_sample("card_payment"), "amazonconnect", Plan("whole")))
>>> first = lost_words(result)[0]
>>> first.role, first.words
('agent', ('Thank', 'you', 'for'))
>>> print(first.reason)
before streaming began: start-streaming was sent at 1.02 s, when the call reached the gateway, and took effect at 1.02 s
"""  # noqa: E501

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mgsim.speech.engine import SAMPLES_PER_MS

if TYPE_CHECKING:
    from mgsim.sim.scenario import ActionRecord, ScenarioResult

__all__ = ["LostStretch", "lost_words", "masked_spans"]


@dataclass(frozen=True, slots=True)
class LostStretch:
    """Consecutive words of one participant lost for one reason. ``words`` is empty for
    sensitive words (never quoted); ``sensitive`` counts them."""

    role: str
    start_ms: float
    end_ms: float
    words: tuple[str, ...]
    sensitive: int
    reason: str
    clipped: bool = False
    """True when the words were lost to audio masked at the source."""

    @property
    def count(self) -> int:
        return len(self.words) + self.sensitive


def masked_spans(result: ScenarioResult) -> list[tuple[float, float]]:
    """Where (ms) the audio of both participants was masked at the source, in time order."""
    sc = result.scenario
    within = sc.stop_within_ms if sc.stop_within_ms is not None else sc.plan.margin_before_ms
    spans = [
        (a.at_ms + within, a.masked_until_ms)
        for a in result.actions
        if a.masked_until_ms is not None and a.masked_until_ms > a.at_ms + within
    ]
    return sorted(spans)


def _streamed_share(result: ScenarioResult, role: str, start_ms: float, end_ms: float) -> float:
    mask = result.streamed[role]
    a = min(max(round(start_ms * SAMPLES_PER_MS), 0), len(mask))
    b = min(max(round(end_ms * SAMPLES_PER_MS), a), len(mask))
    return float(mask[a:b].mean()) if b > a else 0.0


def _reason(
    result: ScenarioResult,
    role: str,
    start_ms: float,
    end_ms: float,
    effects: list[tuple[float, ActionRecord]],
    masked: list[tuple[float, float]],
) -> tuple[str, bool]:
    mid = (start_ms + end_ms) / 2.0
    for lo, hi in masked:
        if lo <= mid < hi:
            return (
                f"masked at the source from {lo / 1000:.2f} to {hi / 1000:.2f} s "
                "(a guard's stop failed closed; both participants are masked)",
                True,
            )
    if _streamed_share(result, role, start_ms, end_ms) >= 0.5:
        return "streamed, but the audio was lost or silent (media loss)", False
    before = [(t, a) for t, a in effects if t <= mid]
    if not before:
        starts = [a for a in result.actions if a.action == "start"]
        if not starts:
            return "never streamed: no start-streaming was sent", False
        first = starts[0]
        if first.effective_ms is None:
            code = first.detail.split(" (requestId=")[0]
            return (
                f"before streaming began: the start-streaming sent at "
                f"{(first.sent_ms or first.at_ms) / 1000:.2f} s failed ({code})",
                False,
            )
        sent = first.sent_ms if first.sent_ms is not None else first.at_ms
        late = ""
        if sent > first.at_ms + 1.0:
            late = f" was sent at {sent / 1000:.2f} s, when the call reached the gateway, and"
        return (
            f"before streaming began: start-streaming{late} took effect at "
            f"{first.effective_ms / 1000:.2f} s",
            False,
        )
    t, last = before[-1]
    if last.action == "stop":
        return f"streaming stopped at {t / 1000:.2f} s ({last.reason})", False
    return (
        f"not received while streaming was on (since {t / 1000:.2f} s): lost, late, or "
        "outside what the platform's reader delivered",
        False,
    )


def lost_words(result: ScenarioResult) -> list[LostStretch]:
    """Every stretch of words that no transcript holds, with the reason, in time order."""
    call = result.scenario.call
    done = {w.index for u in result.utterances for w in u.words if w.index is not None}
    sensitive = {i for s in call.sensitive for i in s.word_indexes}
    effects = sorted((a.effective_ms, a) for a in result.actions if a.effective_ms is not None)
    masked = masked_spans(result)
    stretches: list[LostStretch] = []
    open_: dict[str, int] = {}  # role -> index of its stretch still growing
    for i, word in enumerate(call.words):
        role = "customer" if word.speaker == "customer" else "agent"  # agent2, IVR: agent lane
        if i in done:
            open_.pop(role, None)
            continue
        reason, clipped = _reason(result, role, word.start_ms, word.end_ms, effects, masked)
        secret = i in sensitive
        text = () if secret else (word.text,)
        k = open_.get(role)
        if k is not None and stretches[k].reason == reason:
            last = stretches[k]
            stretches[k] = LostStretch(
                role, last.start_ms, word.end_ms, last.words + text,
                last.sensitive + secret, reason, clipped,
            )  # fmt: skip
            continue
        open_[role] = len(stretches)
        stretches.append(
            LostStretch(role, word.start_ms, word.end_ms, text, int(secret), reason, clipped)
        )
    return stretches
