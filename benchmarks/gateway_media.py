"""Speed of the whole in-process media plane, as a multiple of real time.

For each namespace, a stereo call (two tones plus noise, fixed seed) is encoded into the
platform's wire messages and played into a simulated gateway in virtual time: decoding,
call state, per-channel timelines and accounting, with streaming on for the middle third
of the call (Amazon Connect also writes every fragment into the Kinesis store and reads
it back through the streaming reader). Encoding is timed separately from playback.

    python benchmarks/gateway_media.py            # 10-minute call
    python benchmarks/gateway_media.py 1          # 1-minute call
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from mgsim.clock import VirtualClock
from mgsim.gateway import Gateway, StartParams
from mgsim.media import audiohook, kvs, siprec, twilio
from mgsim.media._base import StereoCall, Wire
from mgsim.media.tones import two_tone_call
from mgsim.sim.play import play

RATE = 8000
ARN = "arn:aws:kinesisvideo:us-east-1:123456789012:stream/mgsim-bench/1700000000000"
GUIDS = {
    "siprec": "0867617078-0032318833-2221801472-0002236962",
    "twilio": "CA" + "0123456789abcdef" * 2,
    "genesysaudiohook": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "amazonconnect": "1117e864-690f-4e1e-9dcf-6fbfcc288e41",
}


def _call(minutes: float) -> StereoCall:
    return two_tone_call(
        minutes * 60, seed=2024, tones=(330.0, 910.0), levels=(7000.0, 7000.0), noise=1200.0
    )


def _encode(namespace: str, call: StereoCall) -> Iterator[Wire]:
    guid = GUIDS[namespace]
    if namespace == "twilio":
        return twilio.encode(call, guid=guid)
    if namespace == "genesysaudiohook":
        return audiohook.encode(call, guid=guid)  # 200 ms frames, as Genesys sends
    if namespace == "siprec":
        return siprec.encode(call, guid=guid)
    return kvs.encode(call, guid=guid, stream_arn=ARN)  # 2 s fragments


def _one(namespace: str, call: StereoCall) -> dict[str, Any]:
    seconds = call.duration_ms / 1000
    t0 = time.perf_counter()
    wires = list(_encode(namespace, call))
    t1 = time.perf_counter()
    gw = Gateway(VirtualClock())
    guid = GUIDS[namespace]
    body = {"amazonConnectParams": {"streamArn": ARN}} if namespace == "amazonconnect" else {}
    third = seconds * 1000 / 3
    actions = {
        third: lambda: gw.start(namespace, guid, StartParams("c", "a", body=body)),
        2 * third: lambda: gw.stop(namespace, guid),
    }
    options = {"stream_arn": ARN} if namespace == "amazonconnect" else {}
    result = play(gw, namespace, wires, actions, session_options=options)
    t2 = time.perf_counter()
    if result.call is None or not result.balanced():
        raise RuntimeError(f"{namespace}: accounting does not balance: {result.accounting}")
    received = int(result.received["customer"].sum())
    if received != call.n_samples:
        raise RuntimeError(f"{namespace}: recovered {received} of {call.n_samples} samples")
    streamed = int(result.streamed["customer"].sum())
    return {
        "messages": len(wires),
        "encode_s": round(t1 - t0, 3),
        "play_s": round(t2 - t1, 3),
        "encode_x_realtime": round(seconds / (t1 - t0)),
        "play_x_realtime": round(seconds / (t2 - t1)),
        "x_realtime": round(seconds / (t2 - t0)),
        "us_per_message": round((t2 - t1) / len(wires) * 1e6, 1),
        "streamed_s": streamed / RATE,
    }


def run(minutes: float = 10) -> dict[str, Any]:
    """Encode and play a ``minutes``-long stereo call through each namespace."""
    call = _call(minutes)
    return {
        "benchmark": "gateway_media",
        "audio_seconds": call.duration_ms / 1000,
        "namespaces": {ns: _one(ns, call) for ns in GUIDS},
    }


if __name__ == "__main__":
    print(json.dumps(run(float(sys.argv[1]) if len(sys.argv) > 1 else 10), indent=2))
