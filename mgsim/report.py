"""What ``mgsim call`` prints, and the exit code CI gates on.

The verdicts themselves are decided in :mod:`mgsim.speech.leaks` (one per sensitive span:
never transcribed, transcribed but redacted, visible); this module only renders them, with
the plan, the actions as they took effect, the transcript as delivered, the words lost
and why (:mod:`mgsim.sim.explain`).

Exit codes of ``mgsim call`` (also in ``mgsim call --help``):

==  ========================================================================
0   safe: no sensitive span is visible in anything delivered
1   leak: at least one span is visible (shown, or inferable from its masks)
2   usage error: a bad flag, value, audio file or sample name
3   the run could not be completed (a server, socket or protocol failure)
==  ========================================================================
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from mgsim.sim.explain import lost_words, masked_spans
from mgsim.speech.leaks import VERDICT_TEXT

if TYPE_CHECKING:
    from mgsim.sim.scenario import ScenarioResult

__all__ = [
    "EXIT_FAILED",
    "EXIT_LEAK",
    "EXIT_SAFE",
    "EXIT_USAGE",
    "exit_code",
    "print_call",
    "realtime_progress",
]

EXIT_SAFE = 0
EXIT_LEAK = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

EXIT_CODES_HELP = (
    "exit status: 0 safe (no sensitive span visible), 1 leak (a span visible or inferable "
    "from its masks), 2 usage error, 3 the run could not be completed."
)


def exit_code(result: ScenarioResult) -> int:
    """0 when no span is visible, 1 when one is."""
    return EXIT_LEAK if result.report.leaked else EXIT_SAFE


def _s(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def _stops(result: ScenarioResult) -> str:
    sc = result.scenario
    if not sc.confirm_stop:
        return "naive (one stop-streaming, assumed to work)"
    if sc.plan.kind != "guard":
        return "PCI-safe (retried until the gateway confirms)"
    within = sc.stop_within_ms if sc.stop_within_ms is not None else sc.plan.margin_before_ms
    text = f"PCI-safe (a guard's stop is retried until the gateway confirms, for {within:.0f} ms"
    if sc.fail_closed:
        text += "; unconfirmed by then, both participants' audio is masked at the source"
        text += " until the guard's start"
    return text + ")"


def print_call(result: ScenarioResult, out: Callable[[str], None] = print) -> None:
    """Render one run for a terminal."""
    sc = result.scenario
    out(f"{sc.call.title or sc.call.call_id} via {sc.namespace} (guid {result.guid})")
    out(f"plan {sc.plan.describe()}")
    out(f"stops: {_stops(result)}")
    out(f"redaction: {sc.redaction_output}")
    if result.transport:
        out(f"over sockets: control over {result.transport['control']}")
        out(f"  media: {result.transport['media']}")
    out("")
    out(f"  {'planned':>8}  {'sent':>8}  {'in effect':>9}  action  outcome")
    for a in result.actions:
        mark = "ok" if a.confirmed else ("MASKED" if a.masked_until_ms else "FAILED")
        out(
            f"  {_s(a.at_ms):>8}  {_s(a.sent_ms):>8}  {_s(a.effective_ms):>9}  {a.action:6}  "
            f"{mark:6}  {a.reason} ({a.detail})"
        )
    masked = masked_spans(result)
    if masked:
        spans = ", ".join(f"{a / 1000:.2f}-{b / 1000:.2f} s" for a, b in masked)
        out(f"  audio masked at the source, customer and agent alike: {spans}")
    out("")
    shown = "text as delivered" if sc.redaction_output != "unredacted" else "text (unredacted)"
    out(f"transcript ({shown}):")
    for row in result.utterance_rows():
        text = row["redacted_text"] if sc.redaction_output != "unredacted" else row["text"]
        out(f"  {_s(row['start_ms']):>8}  {row['role']:8}  {text}")
    lost = lost_words(result)
    if lost:
        out("")
        out("words not transcribed, and why ([masked] = clipped by the fail-closed mask):")
        for x in lost:
            words = x.words if len(x.words) <= 8 else (*x.words[:4], "…", *x.words[-3:])
            said = f' "{" ".join(words)}"' if x.words else ""
            if len(x.words) > 8:
                said += f" ({len(x.words)} words)"
            secret = f" + {x.sensitive} sensitive" if x.words and x.sensitive else ""
            if not x.words:
                secret = f" {x.sensitive} sensitive"
            marker = " [masked]" if x.clipped else ""
            out(
                f"  {x.start_ms / 1000:6.2f}-{x.end_ms / 1000:.2f} s  {x.role:8}{marker}"
                f"{said}{secret}: {x.reason}"
            )
    out("")
    report = result.report
    out(f"sensitive spans ({len(report.spans)}):")
    for span in report.spans:
        out(
            f"  {span.name:14} {span.role:8}  {span.start_ms / 1000:6.2f}-"
            f"{span.end_ms / 1000:.2f} s  {span.describe()}"
        )
    if not report.spans:
        out("  none in this call")
    out("")
    out(verdict_line(result))
    codes = sorted({f"{e.status}" for e in result.journal.entries})
    out(f"requests: {len(result.journal.entries)} ({', '.join(codes)})")
    if result.impairment is not None:
        imp = result.impairment
        out(
            f"media impaired: {imp.sent} messages sent, {imp.dropped} lost, "
            f"{imp.reordered} reordered, {imp.delayed} delayed"
        )


def verdict_line(result: ScenarioResult) -> str:
    """``verdict: LEAK (exit 1): CVV visible`` or ``verdict: safe (exit 0): ...``."""
    report = result.report
    code = exit_code(result)
    if report.leaked:
        names = ", ".join(s.name for s in report.spans if s.leaked)
        return f"verdict: LEAK (exit {code}): {names} visible"
    if not report.spans:
        return f"verdict: safe (exit {code}): the call has no sensitive span"
    counts: dict[str, list[str]] = {}
    for span in report.spans:
        counts.setdefault(VERDICT_TEXT[span.verdict], []).append(span.name)
    parts = "; ".join(f"{', '.join(names)} {text}" for text, names in counts.items())
    return f"verdict: safe (exit {code}): no sensitive span visible ({parts})"


def demo_verdict(summary: dict[str, Any]) -> str:
    """A demo row's verdict from a leak summary: ``LEAK (n)``, ``redacted`` or ``never
    transcribed`` (the worst span)."""
    verdicts = summary["verdicts"]
    if verdicts["visible"]:
        return f"LEAK ({verdicts['visible']})"
    if verdicts["redacted"]:
        return "redacted"
    return "never transcribed"


@contextlib.contextmanager
def realtime_progress(
    duration_ms: float, *, stream: TextIO | None = None, every_s: float = 5.0
) -> Iterator[None]:
    """While a real-time call plays, say how far it has got on ``stream`` (stderr): on a
    terminal one line rewritten each second, otherwise a line every ``every_s``. The call
    is paced by the wall clock, so the time elapsed is the call time played."""
    out = sys.stderr if stream is None else stream
    tty = out.isatty()
    total_s = duration_ms / 1000.0
    done = threading.Event()
    started = time.monotonic()

    def report() -> None:
        while not done.wait(1.0 if tty else every_s):
            played = min(time.monotonic() - started, total_s)
            line = f"mgsim: playing in real time: {played:5.1f} of {total_s:.1f} s"
            out.write(f"\r{line}" if tty else f"{line}\n")
            out.flush()

    out.write(f"mgsim: playing the call in real time ({total_s:.1f} s)\n")
    out.flush()
    thread = threading.Thread(target=report, name="mgsim-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2.0)
        elapsed = time.monotonic() - started
        out.write(f"{chr(13) if tty else ''}mgsim: call played in {elapsed:.1f} s\n")
        out.flush()
