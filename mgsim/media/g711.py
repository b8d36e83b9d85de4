"""G.711 µ-law (PCMU): 16-bit linear PCM to 8-bit codes and back, with lookup tables.

Every platform here except Amazon Connect carries µ-law, so this is the one codec mgsim
needs. Both directions are a single numpy table lookup: encoding indexes a 65,536-entry
table with the int16 sample viewed as uint16, decoding a 256-entry table with the code.

The tables are built once from the G.711 formula (integer math in int32):

* encode: ``m = min(|s|, 32635) + 0x84``; the exponent is the highest set bit of ``m >> 7``,
  the mantissa ``(m >> (exponent + 3)) & 0x0F``, and the code is the complement of
  ``sign | exponent << 4 | mantissa`` (sign ``0x80`` for negative samples);
* decode: complement the code, then ``((mantissa << 3) + 0x84 << exponent) - 0x84``, negated
  when the sign bit is set. Full scale is ±32124 and silence encodes to ``0xFF``.

Unlike the removed stdlib ``audioop``, which quantizes from 14-bit input and so moves the
three negative samples just inside each step boundary (-1..-3, -9..-11, ...; 381 in all) one
step away from zero, the encoder works from all 16 bits. Decoding agrees exactly.

>>> import numpy as np
>>> ulaw_encode(np.array([0, 1000, -1000], dtype=np.int16)).hex()
'ffce4e'
>>> ulaw_decode(bytes.fromhex("ffce4e")).tolist()
[0, 988, -988]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError

__all__ = [
    "ULAW_MAX",
    "ULAW_SILENCE",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_encode_array",
]

ULAW_SILENCE = 0xFF
"""The code of a zero sample (``0x7F``, "negative zero", also decodes to 0)."""

ULAW_MAX = 32124
"""Largest magnitude a µ-law code decodes to."""

_BIAS = 0x84
_CLIP = 32635


def _build_encode_table() -> npt.NDArray[np.uint8]:
    # Index i is the int16 sample whose bit pattern, read as uint16, equals i.
    samples = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(samples < 0, 0x80, 0).astype(np.int32)
    m = np.minimum(np.abs(samples), _CLIP) + _BIAS
    # m >> 7 lies in 1..255; the exponent is its highest set bit, 0..7.
    exponent = np.zeros_like(m)
    for bit in range(1, 8):
        exponent += (m >> (7 + bit)) > 0
    mantissa = (m >> (exponent + 3)) & 0x0F
    table: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


def _build_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    table: npt.NDArray[np.int16] = np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)
    return table


_ENCODE = _build_encode_table()
_DECODE = _build_decode_table()
_ENCODE.flags.writeable = False
_DECODE.flags.writeable = False


def ulaw_encode_array(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Encode int16 samples to µ-law codes, keeping the array's shape.

    Raises :class:`~mgsim.errors.ConfigError` unless ``pcm`` is an int16 numpy array.

    >>> ulaw_encode_array(np.array([0, -1], dtype=np.int16)).tolist()
    [255, 127]
    """
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        kind = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
        raise ConfigError(f"µ-law encoding needs an int16 numpy array, got {kind}")
    codes: npt.NDArray[np.uint8] = _ENCODE[pcm.view(np.uint16)]
    return codes


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode int16 samples to µ-law bytes (one byte per sample, C order).

    >>> ulaw_encode(np.zeros(3, dtype=np.int16))
    b'\\xff\\xff\\xff'
    """
    return ulaw_encode_array(pcm).tobytes()


def ulaw_decode(
    data: bytes | bytearray | memoryview | npt.NDArray[np.uint8],
) -> npt.NDArray[np.int16]:
    """Decode µ-law codes to a new, writable int16 array.

    Byte-like input gives a 1-D array; a uint8 array keeps its shape. Anything else raises
    :class:`~mgsim.errors.ConfigError`.

    >>> ulaw_decode(b"\\x00\\x80\\xff").tolist()
    [-32124, 32124, 0]
    """
    if type(data) is bytes:  # the usual case, one frame of a wire message: no other checks
        return _DECODE.take(np.frombuffer(data, dtype=np.uint8))
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ConfigError(f"µ-law decoding needs a uint8 array, got {data.dtype}")
        codes = data
    elif isinstance(data, bytes | bytearray | memoryview):
        try:
            codes = np.frombuffer(data, dtype=np.uint8)
        except (ValueError, BufferError) as exc:  # e.g. a strided memoryview
            raise ConfigError(f"µ-law decoding needs contiguous bytes: {exc}") from exc
    else:
        raise ConfigError(f"µ-law decoding needs bytes or a uint8 array, got {type(data).__name__}")
    return _DECODE[codes]
