"""A synthetic stereo call for benchmarks and tests: one tone per participant plus noise.

>>> call = two_tone_call(1.0, seed=1)
>>> len(call.customer), call.customer.dtype.name
(8000, 'int16')
"""

from __future__ import annotations

import numpy as np

from mgsim.media._base import SAMPLE_RATE, StereoCall

__all__ = ["two_tone_call"]


def two_tone_call(
    seconds: float,
    *,
    seed: int,
    tones: tuple[float, float] = (440.0, 1000.0),
    levels: tuple[float, float] = (6000.0, 6000.0),
    noise: float = 1000.0,
) -> StereoCall:
    """``seconds`` of a customer tone and an agent tone (Hz, peak levels) with seeded Gaussian
    noise of standard deviation ``noise``, clipped to int16. The same arguments always give
    the same samples."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(seed)

    def voice(freq: float, level: float) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
        x = level * np.sin(2 * np.pi * freq * t) + rng.normal(0, noise, n)
        return np.clip(x, -32768, 32767).astype(np.int16)

    customer = voice(tones[0], levels[0])
    agent = voice(tones[1], levels[1])
    return StereoCall(customer, agent)
