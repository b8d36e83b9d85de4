"""Speed of the Twilio Media Streams encoder and decoder, as a multiple of real time.

Encodes a stereo call (two tones plus noise, fixed seed) into Twilio messages and decodes
them again, as one gateway session would; the target is at least 300x real time.

    python benchmarks/media_twilio.py
"""

from __future__ import annotations

import json
import time
from typing import Any

from mgsim.media._base import AudioChunk, StereoCall
from mgsim.media.tones import two_tone_call
from mgsim.media.twilio import TwilioDecoder, encode

RATE = 8000
TARGET_X_REALTIME = 300


def _call(minutes: float) -> StereoCall:
    return two_tone_call(
        minutes * 60, seed=2024, tones=(330.0, 910.0), levels=(7000.0, 7000.0), noise=1200.0
    )


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
