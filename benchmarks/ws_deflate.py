"""What permessage-deflate (RFC 7692) costs on the audio WebSockets, and what it saves.

The frames are the ones mgsim's platforms send for the ``card_payment`` sample: AudioHook
binary frames (200 ms of stereo µ-law, 3,200 bytes) and Twilio ``media`` text messages
(20 ms of µ-law in base64 inside JSON, about 300 bytes). Each is run through websockets'
own ``PerMessageDeflate`` extension as negotiated by default (context takeover both ways,
window 15 bits), compressing as the sender does and decompressing as the server does, and
through a connection without the extension. Reported per platform: the bytes on the wire
with and without deflate, and the CPU time per frame of each side (µs, best of ``repeat``),
against the baseline of framing the message without the extension.

Usage::

    python benchmarks/ws_deflate.py
"""

from __future__ import annotations

import sys
import time
from typing import Any

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from mgsim.media import audiohook, twilio
from mgsim.sim.call import load_sample


def _frames(platform: str) -> list[Frame]:
    call = load_sample("card_payment").audio
    if platform == "genesysaudiohook":
        wires = audiohook.encode(call, guid="3f1c2d4e-0000-4000-8000-000000000001")
        return [Frame(Opcode.BINARY, w.data) for w in wires if isinstance(w.data, bytes)]
    wires = twilio.encode(call, guid="CA" + "0" * 32)
    return [
        Frame(Opcode.TEXT, str(w.data).encode())
        for w in wires
        if '"event":"media"' in str(w.data)
    ]


def _cpu_per_frame(work: Any, frames: list[Frame], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        work(frames)
        best = min(best, time.process_time() - started)
    return best / len(frames) * 1e6


def _measure(platform: str, repeat: int) -> dict[str, Any]:
    frames = _frames(platform)
    raw = sum(len(f.data) for f in frames)

    def compress(batch: list[Frame]) -> list[Frame]:
        sender = PerMessageDeflate(False, False, 15, 15)
        return [sender.encode(f) for f in batch]

    compressed = compress(frames)

    def decompress(batch: list[Frame]) -> None:
        receiver = PerMessageDeflate(False, False, 15, 15)
        for f in batch:
            receiver.decode(f, max_size=1 << 20)

    def plain(batch: list[Frame]) -> None:
        for f in batch:  # what a frame costs to serialize without the extension
            f.serialize(mask=False, extensions=[])

    return {
        "frames": len(frames),
        "bytes_plain": raw,
        "bytes_deflate": sum(len(f.data) for f in compressed),
        "deflate_ratio": round(sum(len(f.data) for f in compressed) / raw, 3),
        "us_per_frame": {
            "frame_plain": round(_cpu_per_frame(plain, frames, repeat), 2),
            "compress": round(_cpu_per_frame(compress, frames, repeat), 2),
            "decompress": round(_cpu_per_frame(decompress, compressed, repeat), 2),
        },
    }


def run(repeat: int = 5) -> dict[str, Any]:
    """Measure both platforms' frames; see the module docstring."""
    return {platform: _measure(platform, repeat) for platform in ("genesysaudiohook", "twilio")}


if __name__ == "__main__":
    import json

    print(json.dumps(run(*(int(a) for a in sys.argv[1:])), indent=2))
