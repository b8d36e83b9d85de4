"""Throughput of the AudioHook encoder and server session on one long stereo call.

Plays a ``minutes``-long call (two tones plus seeded noise) through :func:`encode` with the
Genesys default 200 ms frames and pings every 5 s, feeds every message to a fresh
:class:`AudioHookSession`, and reports the best of several runs as multiples of real time.
The target is at least 1000x for encode and decode together.

    python benchmarks/media_audiohook.py
"""

from __future__ import annotations

import json
import time
from typing import Any

from mgsim.media._base import AudioChunk, StereoCall, Wire
from mgsim.media.audiohook import AudioHookSession, encode
from mgsim.media.tones import two_tone_call

RATE = 8000
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def _call(seconds: int) -> StereoCall:
    return two_tone_call(seconds, seed=4242)


def run(minutes: float = 10, repeats: int = 5, frame_ms: int = 200) -> dict[str, Any]:
    """Time encode and decode of a ``minutes``-long call; return seconds and x real time."""
    seconds = round(minutes * 60)
    call = _call(seconds)
    best_encode = best_decode = float("inf")
    samples = 0
    wires: list[Wire] = []
    for _ in range(repeats):
        start = time.perf_counter()
        wires = list(encode(call, guid=GUID, frame_ms=frame_ms))
        mid = time.perf_counter()
        session = AudioHookSession()
        samples = 0
        for wire in wires:
            for event in session.feed(wire):
                if isinstance(event, AudioChunk):
                    samples += len(event.pcm)
        end = time.perf_counter()
        best_encode, best_decode = min(best_encode, mid - start), min(best_decode, end - mid)
    assert samples == 2 * call.n_samples, "the session did not recover every sample"
    total = best_encode + best_decode
    return {
        "benchmark": "media_audiohook",
        "audio_seconds": seconds,
        "frame_ms": frame_ms,
        "messages": len(wires),
        "encode_s": round(best_encode, 6),
        "decode_s": round(best_decode, 6),
        "encode_x_realtime": round(seconds / best_encode),
        "decode_x_realtime": round(seconds / best_decode),
        "x_realtime": round(seconds / total),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
