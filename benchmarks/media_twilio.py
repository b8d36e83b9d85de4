"""Speed of the Twilio Media Streams encoder and decoder, as a multiple of real time.

Encodes a stereo call (two tones plus noise, fixed seed) into Twilio messages and decodes
them again, as one gateway session would; the target is at least 300x real time.

    python benchmarks/media_twilio.py
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from mgsim.media._base import AudioChunk, StereoCall
from mgsim.media.twilio import TwilioDecoder, encode

RATE = 8000
TARGET_X_REALTIME = 300


def _call(minutes: float) -> StereoCall:
    rng = np.random.default_rng(2024)
    t = np.arange(int(minutes * 60 * RATE)) / RATE

    def voice(freq: float) -> np.ndarray[Any, np.dtype[np.int16]]:
        x = 7000 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 1200, t.size)
        return np.clip(x, -32768, 32767).astype(np.int16)

    return StereoCall(voice(330), voice(910))


def run(minutes: float = 10, repeats: int = 3) -> dict[str, Any]:
    """Time encode, decode and both for ``minutes`` of stereo audio (best of ``repeats``)."""
    call = _call(minutes)
    seconds = call.duration_ms / 1000
    best_enc = best_dec = float("inf")
    messages = samples = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        wires = list(encode(call, guid="CA" + "0123456789abcdef" * 2))
        t1 = time.perf_counter()
        dec = TwilioDecoder()
        samples = 0
        for wire in wires:
            for event in dec.feed(wire):
                if isinstance(event, AudioChunk):
                    samples += len(event.pcm)
        dec.close()
        t2 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
        messages = len(wires)
    if samples != 2 * call.n_samples:
        raise RuntimeError(f"decoded {samples} samples, expected {2 * call.n_samples}")
    total = best_enc + best_dec
    return {
        "benchmark": "media_twilio",
        "audio_seconds": seconds,
        "messages": messages,
        "encode_s": round(best_enc, 4),
        "decode_s": round(best_dec, 4),
        "total_s": round(total, 4),
        "us_per_message": round(total / messages * 1e6, 2),
        "encode_x_realtime": round(seconds / best_enc),
        "decode_x_realtime": round(seconds / best_dec),
        "x_realtime": round(seconds / total),
        "target_x_realtime": TARGET_X_REALTIME,
        "meets_target": seconds / total >= TARGET_X_REALTIME,
    }


if __name__ == "__main__":
    print(json.dumps(run()))
