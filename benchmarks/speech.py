"""Speed of the reference transcription, redaction and leak analysis on a long call.

Builds a call of ``minutes`` minutes from the sample calls (``make_long_call``), streams all
of it except its sensitive spans plus a 300 ms guard (a typical PCI plan) and 5 % packet
loss, then times, best of ``repeats``:

* ``transcribe``: :class:`~mgsim.speech.engine.ScriptEngine` over both participants;
* ``render``: webhook bodies and messages with ``redacted_and_unredacted`` (redaction runs
  for every utterance);
* ``leaks``: :func:`~mgsim.speech.leaks.analyze_leaks` of the result;
* ``stream_1s``: the same transcription polled once per second of audio through
  :class:`~mgsim.speech.engine.StreamingTranscriber` (what a live gateway would do).

Each is reported in seconds and as a multiple of real time (audio seconds per second).

    python benchmarks/speech.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from mgsim.sim.call import make_long_call
from mgsim.speech.engine import (
    ROLES,
    ScriptEngine,
    StreamingTranscriber,
    Utterance,
    punch_holes,
    streamed_mask,
)
from mgsim.speech.leaks import analyze_leaks
from mgsim.speech.redact import ParticipantPolicies
from mgsim.speech.transcripts import SegmentContext, render_segment

T = TypeVar("T")
GUARD_MS = 300


def _best_of(repeats: int, fn: Callable[[], T]) -> tuple[float, T]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def run(minutes: float = 10, repeats: int = 3) -> dict[str, Any]:
    """Time the speech pipeline on a ``minutes``-long call; return timings and counts."""
    call = make_long_call(minutes)
    audio_s = call.duration_ms / 1000
    pcm = {r: getattr(call.audio, r) for r in ROLES}
    masks = {r: np.ones(len(pcm[r]), bool) for r in ROLES}
    for span in call.sensitive:
        n = len(masks[span.speaker])
        guard = [(span.start_ms - GUARD_MS, span.end_ms + GUARD_MS)]
        masks[span.speaker] &= ~streamed_mask(n, guard)
    masks = {r: punch_holes(m, hole_ms=20, every_ms=400) for r, m in masks.items()}
    ctx = SegmentContext(
        "bench",
        {"customer": "s-customer", "agent": "s-agent"},
        {"customer": "customer-1", "agent": "agent-1"},
        "redacted_and_unredacted",
        policies=ParticipantPolicies(),
    )
    base = datetime(2026, 1, 5, 9, tzinfo=UTC)

    def transcribe() -> list[Utterance]:
        engine = ScriptEngine(call.words)
        out: list[Utterance] = []
        for role in ROLES:
            out += engine.transcribe(role, pcm[role], masks[role])
        return out

    t_transcribe, utterances = _best_of(repeats, transcribe)
    t_render, rendered = _best_of(repeats, lambda: render_segment(utterances, ctx, wall_base=base))
    t_leaks, report = _best_of(
        repeats,
        lambda: analyze_leaks(call, utterances, streamed=masks, webhooks=rendered.webhooks),
    )

    def stream() -> int:
        engine = ScriptEngine(call.words)
        count = 0
        for role in ROLES:
            live = StreamingTranscriber(engine, role)
            for end in range(8000, len(pcm[role]), 8000):
                count += len(live.update(pcm[role][:end], masks[role][:end]))
            count += len(live.flush(pcm[role], masks[role]))
        return count

    t_stream, streamed_count = _best_of(1, stream)
    summary = report.summary()
    total = t_transcribe + t_render + t_leaks
    return {
        "benchmark": "speech",
        "audio_seconds": audio_s,
        "words": len(call.words),
        "utterances": len(utterances),
        "utterances_per_minute": round(len(utterances) / (audio_s / 60), 1),
        "streamed_utterances_match": streamed_count == len(utterances),
        "pci_words": summary["pci_words"],
        "pci_words_transcribed": summary["pci_words_transcribed"],
        "pci_words_visible": summary["pci_words_visible"],
        "transcribe_s": round(t_transcribe, 4),
        "render_s": round(t_render, 4),
        "leaks_s": round(t_leaks, 4),
        "stream_1s_s": round(t_stream, 4),
        "transcribe_x_realtime": round(audio_s / t_transcribe),
        "render_x_realtime": round(audio_s / t_render),
        "stream_1s_x_realtime": round(audio_s / t_stream),
        "total_x_realtime": round(audio_s / total),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
