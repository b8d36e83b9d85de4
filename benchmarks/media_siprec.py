"""Throughput of the SIPREC encoder and recording-server session on one long stereo call.

Plays a ``minutes``-long call (two tones plus seeded noise) through :func:`encode` (INVITE,
ACK, 20 ms PCMU RTP on two m-lines, BYE), feeds every message to a fresh
:class:`SiprecSession`, checks that every sample came back, and reports the best of several
runs as multiples of real time. The target is at least 1000x for encode and decode together.
``loss`` and ``reorder`` exercise the receiver's gap bookkeeping.

    python benchmarks/media_siprec.py
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from mgsim.media._base import AudioChunk, StereoCall, Wire
from mgsim.media.siprec import SiprecSession, encode

RATE = 8000
GUID = "0867617078-0032318833-2221801472-0002236962"


def _call(seconds: int) -> StereoCall:
    rng = np.random.default_rng(4242)
    t = np.arange(seconds * RATE) / RATE

    def voice(freq: float) -> np.ndarray[Any, np.dtype[np.int16]]:
        x = 6000 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 1000, t.size)
        return np.clip(x, -32768, 32767).astype(np.int16)

    return StereoCall(voice(440), voice(1000))


def run(
    minutes: float = 10, repeats: int = 5, loss: float = 0.0, reorder: float = 0.0
) -> dict[str, Any]:
    """Time encode and decode of a ``minutes``-long call; return seconds and x real time."""
    seconds = round(minutes * 60)
    call = _call(seconds)
    best_encode = best_decode = float("inf")
    samples = 0
    wires: list[Wire] = []
    for _ in range(repeats):
        start = time.perf_counter()
        wires = list(encode(call, guid=GUID, seed=1, loss=loss, reorder=reorder))
        mid = time.perf_counter()
        session = SiprecSession()
        samples = 0
        for wire in wires:
            for event in session.feed(wire):
                if isinstance(event, AudioChunk):
                    samples += len(event.pcm)
        session.close()
        end = time.perf_counter()
        best_encode, best_decode = min(best_encode, mid - start), min(best_decode, end - mid)
    lost = sum(s["lost"] for s in session.stats().values())
    if not loss:
        assert samples == 2 * call.n_samples, "the session did not recover every sample"
    total = best_encode + best_decode
    return {
        "benchmark": "media_siprec",
        "audio_seconds": seconds,
        "messages": len(wires),
        "rtp_packets": sum(1 for w in wires if w.channel != "sip"),
        "packets_lost": lost,
        "encode_s": round(best_encode, 6),
        "decode_s": round(best_decode, 6),
        "encode_x_realtime": round(seconds / best_encode),
        "decode_x_realtime": round(seconds / best_decode),
        "x_realtime": round(seconds / total),
        "us_per_packet": round(total / max(1, len(wires)) * 1e6, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
    print(json.dumps(run(loss=0.01, reorder=0.01)))
