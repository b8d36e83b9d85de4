"""Listen to a call: WAV bytes of a participant or of the stereo call, and a player.

>>> from mgsim.sim.call import load_sample
>>> wav_bytes(load_sample("card_payment"), "agent", end_ms=10)[:4]
b'RIFF'
"""

from __future__ import annotations

import io
import wave
from typing import Literal

import ipywidgets as w
import numpy as np

from mgsim.media._base import SAMPLE_RATE
from mgsim.sim.call import Call

__all__ = ["Role", "audio_player", "wav_bytes"]

Role = Literal["customer", "agent", "stereo"]


def wav_bytes(
    call: Call, role: Role = "stereo", *, start_ms: float = 0.0, end_ms: float | None = None
) -> bytes:
    """A WAV file (8 kHz, 16-bit) of one participant or the stereo call, optionally a slice.

    >>> from mgsim.sim.call import load_sample
    >>> data = wav_bytes(load_sample("card_payment"), "customer", end_ms=1000)
    >>> data[:4], len(data)
    (b'RIFF', 16044)
    """
    per_ms = SAMPLE_RATE // 1000
    a = max(0, int(start_ms * per_ms))
    b = call.audio.n_samples if end_ms is None else min(call.audio.n_samples, int(end_ms * per_ms))
    if role == "stereo":
        pcm = call.stereo_array()[a:b]
        channels = 2
    elif role in ("customer", "agent"):
        pcm = (call.audio.customer if role == "customer" else call.audio.agent)[a:b]
        channels = 1
    else:
        raise ValueError(f"role must be customer, agent or stereo, not {role!r}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())
    return buf.getvalue()


def audio_player(
    call: Call, role: Role = "stereo", *, start_ms: float = 0.0, end_ms: float | None = None
) -> w.Audio:
    """An ``ipywidgets.Audio`` player for :func:`wav_bytes` (stereo: customer left)."""
    return w.Audio(
        value=wav_bytes(call, role, start_ms=start_ms, end_ms=end_ms),
        format="wav",
        autoplay=False,
        loop=False,
    )
