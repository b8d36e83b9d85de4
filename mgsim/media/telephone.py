"""A telephone channel for clean 8 kHz speech: band limit, line noise and a G.711 round trip.

Speech that a recognizer hears on a real call has crossed a telephone network: the handset
and the network pass only about 300 to 3,400 Hz (the G.712 voice band), the line adds a
little noise, and the audio is µ-law coded at 8 kHz on the way. :func:`telephone_channel`
does the same to one channel of a synthetic call, so recognition can be measured on audio
closer to a real call than clean synthesis:

* **line noise**: seeded white noise at ``noise_dbfs`` (RMS, before the band limit, which
  takes about 1 dB off it);
* **band limit**: a zero-phase filter applied in the frequency domain (numpy's FFT): unity
  gain from ``low_hz`` to ``high_hz``, raised-cosine edges falling to zero 100 Hz below
  ``low_hz`` and 200 Hz above ``high_hz``. Zero phase keeps every sound where it was, so
  word times measured before the channel still hold after it;
* **G.711**: the result is rounded to 16-bit PCM, µ-law encoded and decoded again with
  :mod:`mgsim.media.g711`, exactly what a PCMU leg does to it.

>>> import numpy as np
>>> t = np.arange(8000) / 8000
>>> out = telephone_channel(0.5 * np.sin(2 * np.pi * 100 * t), np.random.default_rng(1))
>>> bool(np.abs(out[2000:6000]).max() < 200)   # 100 Hz hum is below the voice band
True
>>> out = telephone_channel(0.5 * np.sin(2 * np.pi * 1000 * t), np.random.default_rng(1))
>>> round(float(np.abs(out[2000:6000]).max()) / 16384, 1)   # 1 kHz passes
1.0
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError
from mgsim.media._base import SAMPLE_RATE
from mgsim.media.g711 import ulaw_decode, ulaw_encode_array

__all__ = ["VOICE_BAND_HZ", "band_limit", "telephone_channel"]

VOICE_BAND_HZ = (300.0, 3400.0)
"""The telephone voice band (ITU-T G.712)."""
_LOW_EDGE_HZ = 100.0
_HIGH_EDGE_HZ = 200.0


def band_limit(
    x: npt.NDArray[np.float64], low_hz: float = 300.0, high_hz: float = 3400.0
) -> npt.NDArray[np.float64]:
    """``x`` (8 kHz floats) with only the band ``low_hz``..``high_hz`` kept, zero phase."""
    if not 0 < low_hz < high_hz < SAMPLE_RATE / 2 - _HIGH_EDGE_HZ:
        raise ConfigError(
            f"band {low_hz:g}-{high_hz:g} Hz does not fit below "
            f"{SAMPLE_RATE / 2 - _HIGH_EDGE_HZ:g} Hz"
        )
    n = len(x)
    if n == 0:
        return np.zeros(0)
    # Zero padding well past the filter's impulse response keeps the FFT's circular
    # convolution from wrapping the end of the call onto its start.
    size = 1 << int(np.ceil(np.log2(n + SAMPLE_RATE)))
    freqs = np.fft.rfftfreq(size, 1 / SAMPLE_RATE)
    gain = np.ones(len(freqs))
    below = freqs < low_hz
    rise = np.clip((freqs[below] - (low_hz - _LOW_EDGE_HZ)) / _LOW_EDGE_HZ, 0.0, 1.0)
    gain[below] = 0.5 - 0.5 * np.cos(np.pi * rise)
    above = freqs > high_hz
    fall = np.clip((freqs[above] - high_hz) / _HIGH_EDGE_HZ, 0.0, 1.0)
    gain[above] = 0.5 + 0.5 * np.cos(np.pi * fall)
    out: npt.NDArray[np.float64] = np.fft.irfft(np.fft.rfft(x, size) * gain, size)[:n]
    return out


def telephone_channel(
    x: npt.NDArray[np.float64],
    rng: np.random.Generator,
    *,
    noise_dbfs: float = -60.0,
    band_hz: tuple[float, float] = VOICE_BAND_HZ,
) -> npt.NDArray[np.int16]:
    """One channel (8 kHz floats in [-1, 1]) as it arrives after a telephone line: line
    noise from ``rng``, the voice band, then 16-bit PCM through a µ-law encode and decode."""
    noisy = np.asarray(x, dtype=np.float64) + rng.normal(0.0, 10 ** (noise_dbfs / 20), len(x))
    banded = band_limit(noisy, *band_hz)
    pcm = np.clip(np.round(banded * 32767.0), -32768, 32767).astype(np.int16)
    return ulaw_decode(ulaw_encode_array(pcm))
