"""Speed of the Amazon Connect (KVS) fragment encoder and consumer, as a multiple of real time.

Encodes a stereo call (two tones plus noise, fixed seed) into 2-second Matroska fragments
with 20 ms SimpleBlocks, as Connect writes them, and decodes them again with one
:class:`~mgsim.media.kvs.KvsConsumer`; the target is at least 1000x real time. It also times
the store's ``put_media`` (parse, stamp the AWS tags, rebuild) for the same fragments.

    python benchmarks/media_kvs.py
"""

from __future__ import annotations

import json
import time
from typing import Any

from mgsim.media._base import AudioChunk, StereoCall
from mgsim.media.kvs import DEFAULT_EPOCH_MS, KinesisVideoStream, KvsConsumer, encode
from mgsim.media.tones import two_tone_call

RATE = 8000
TARGET_X_REALTIME = 1000
ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/bench-connect-i-contact-c/1700000000000"
CONTACT = "0f1e2d3c-4b5a-4697-8877-665544332211"


def _call(minutes: float) -> StereoCall:
    return two_tone_call(
        minutes * 60, seed=2024, tones=(330.0, 910.0), levels=(7000.0, 7000.0), noise=1200.0
    )


def run(minutes: float = 10, repeats: int = 3) -> dict[str, Any]:
    """Time encode, decode and both for ``minutes`` of stereo audio (best of ``repeats``)."""
    call = _call(minutes)
    seconds = call.duration_ms / 1000
    best_enc = best_dec = best_put = float("inf")
    fragments = nbytes = samples = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        wires = list(encode(call, guid=CONTACT, stream_arn=ARN))
        t1 = time.perf_counter()
        consumer = KvsConsumer(contact_id=CONTACT, stream_arn=ARN)
        samples = 0
        for wire in wires:
            for event in consumer.feed(wire):
                if isinstance(event, AudioChunk):
                    samples += len(event.pcm)
        consumer.close()
        t2 = time.perf_counter()
        stream = KinesisVideoStream(ARN)
        for wire in wires:
            stream.put_media(wire, DEFAULT_EPOCH_MS + int(wire.at_ms))
        t3 = time.perf_counter()
        best_enc, best_dec = min(best_enc, t1 - t0), min(best_dec, t2 - t1)
        best_put = min(best_put, t3 - t2)
        fragments = len(wires)
        nbytes = sum(len(w.data) for w in wires)
    if samples != 2 * call.n_samples:
        raise RuntimeError(f"decoded {samples} samples, expected {2 * call.n_samples}")
    total = best_enc + best_dec
    return {
        "benchmark": "media_kvs",
        "audio_seconds": seconds,
        "fragments": fragments,
        "simple_blocks": 2 * -(-call.n_samples // 160),
        "mkv_bytes": nbytes,
        "overhead_pct": round(100 * (nbytes / (4 * call.n_samples) - 1), 2),
        "encode_s": round(best_enc, 4),
        "decode_s": round(best_dec, 4),
        "total_s": round(total, 4),
        "put_media_s": round(best_put, 4),
        "us_per_fragment": round(total / fragments * 1e6, 1),
        "encode_x_realtime": round(seconds / best_enc),
        "decode_x_realtime": round(seconds / best_dec),
        "x_realtime": round(seconds / total),
        "target_x_realtime": TARGET_X_REALTIME,
        "meets_target": seconds / total >= TARGET_X_REALTIME,
    }


if __name__ == "__main__":
    print(json.dumps(run()))
