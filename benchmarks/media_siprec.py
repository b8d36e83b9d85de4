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

from mgsim.media._base import AudioChunk, StereoCall, Wire
from mgsim.media.siprec import SiprecSession, encode
from mgsim.media.tones import two_tone_call

RATE = 8000
GUID = "0867617078-0032318833-2221801472-0002236962"


def _call(seconds: int) -> StereoCall:
    return two_tone_call(seconds, seed=4242)


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
