"""Masking audio at the source: the fail-closed step of a PCI guard.

When an integration cannot get stop-streaming confirmed before a sensitive moment, the safe
move is not to hope: it tells its platform to replace the call's audio with silence, as
PCI audio-masking at an SBC or in the contact platform does. Nothing sensitive then reaches
the gateway, whatever state its control plane is in.

Both participants are masked, not only the caller: the mask stands in for the stop the
gateway did not confirm, and a stop ends both participants' streams; an agent reading a
card number back is as sensitive as the caller reading it. The cost is the agent's words
inside the mask, which :func:`mgsim.sim.explain.lost_words` reports as *clipped*.

:func:`silence` rewrites one wire message so that it carries digital silence while every
other field (sequence numbers, timestamps, positions, fragment tags) stays as it was, so
the platform's session continues undisturbed.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace

from mgsim.media._base import Wire
from mgsim.media.kvs_mkv import Block, build_fragment, parse_fragment
from mgsim.media.rtp import unpack

__all__ = ["silence"]

ULAW_SILENCE = 0xFF


def silence(namespace: str, wire: Wire) -> Wire:
    """``wire`` with its audio replaced by silence; control messages come back unchanged.

    >>> w = Wire(0.0, "rtp:0", bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9]) + b"\\x10" * 4)
    >>> silence("siprec", w).data[12:]
    b'\\xff\\xff\\xff\\xff'
    """
    data = wire.data
    if namespace == "siprec":
        if not wire.channel.startswith("rtp:") or not isinstance(data, bytes):
            return wire
        header = len(data) - len(unpack(data).payload)
        return replace(wire, data=data[:header] + bytes([ULAW_SILENCE]) * (len(data) - header))
    if namespace == "genesysaudiohook":
        if not isinstance(data, bytes):
            return wire  # JSON control messages
        return replace(wire, data=bytes([ULAW_SILENCE]) * len(data))
    if namespace == "twilio":
        if not isinstance(data, str) or '"media"' not in data:
            return wire
        message = json.loads(data)
        if message.get("event") != "media":
            return wire
        n = len(base64.b64decode(message["media"]["payload"]))
        message["media"]["payload"] = base64.b64encode(bytes([ULAW_SILENCE]) * n).decode()
        return replace(wire, data=json.dumps(message, separators=(",", ":")))
    if namespace == "amazonconnect":
        if not isinstance(data, bytes):
            return wire
        fragment = parse_fragment(data)
        blocks = tuple(
            Block(b.track, b.timecode, bytes(len(b.payload)), b.keyframe) for b in fragment.blocks
        )
        return replace(wire, data=build_fragment(replace(fragment, blocks=blocks)))
    raise ValueError(f"unknown namespace {namespace!r}")
