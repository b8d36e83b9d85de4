"""Throughput of the µ-law codec against the stdlib ``audioop`` (when it is present).

Encodes and decodes 10 minutes of 8 kHz audio (a tone plus noise, fixed seed) several times
and keeps the best run of each codec.

    python benchmarks/media_g711.py
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mgsim.media.g711 import ulaw_decode, ulaw_encode

RATE = 8000


def _signal(seconds: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    rng = np.random.default_rng(711)
    t = np.arange(seconds * RATE) / RATE
    x = 8000 * np.sin(2 * np.pi * 440 * t) + rng.normal(0, 1500, t.size)
    return np.clip(x, -32768, 32767).astype(np.int16)


def _best_of(repeats: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(seconds: int = 600, repeats: int = 5) -> dict[str, Any]:
    """Time encode+decode of ``seconds`` of audio; return samples/s and real-time multiples."""
    pcm = _signal(seconds)
    n = pcm.size

    def ours() -> None:
        ulaw_decode(ulaw_encode(pcm))

    result: dict[str, Any] = {
        "benchmark": "media_g711",
        "audio_seconds": seconds,
        "samples": n,
    }
    t_ours = _best_of(repeats, ours)
    result["mgsim_s"] = round(t_ours, 6)
    result["mgsim_msamples_per_s"] = round(n / t_ours / 1e6, 1)
    result["mgsim_x_realtime"] = round(seconds / t_ours)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            audioop = None  # type: ignore[assignment]
    if audioop is not None:
        raw = pcm.astype("<i2").tobytes()

        def theirs() -> None:
            audioop.ulaw2lin(audioop.lin2ulaw(raw, 2), 2)

        t_theirs = _best_of(repeats, theirs)
        result["audioop_s"] = round(t_theirs, 6)
        result["audioop_msamples_per_s"] = round(n / t_theirs / 1e6, 1)
        result["speedup_vs_audioop"] = round(t_theirs / t_ours, 2)
    return result


if __name__ == "__main__":
    print(json.dumps(run()))
