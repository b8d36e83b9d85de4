from __future__ import annotations

import doctest
import warnings
from types import ModuleType

import numpy as np
import pytest

from mgsim.errors import ConfigError
from mgsim.media import g711
from mgsim.media.g711 import ULAW_MAX, ULAW_SILENCE, ulaw_decode, ulaw_encode, ulaw_encode_array

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


def ref_encode(sample: int) -> int:
    """Scalar G.711 µ-law encoder written straight from the formula."""
    sign = 0x80 if sample < 0 else 0
    m = min(abs(sample), 32635) + 0x84
    exponent = (m >> 7).bit_length() - 1
    mantissa = (m >> (exponent + 3)) & 0x0F
    return ~(sign | exponent << 4 | mantissa) & 0xFF


def ref_decode(code: int) -> int:
    u = ~code & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


def test_doctests() -> None:
    assert doctest.testmod(g711).failed == 0


@pytest.mark.parametrize("code", range(256))
def test_decode_every_code_matches_formula(code: int) -> None:
    assert ulaw_decode(bytes([code])).tolist() == [ref_decode(code)]


def test_encode_full_int16_range_matches_formula() -> None:
    expected = bytes(ref_encode(int(s)) for s in ALL_INT16)
    assert ulaw_encode(ALL_INT16) == expected


def test_reencoding_a_decoded_code_is_stable() -> None:
    decoded = ulaw_decode(ALL_CODES)
    assert np.array_equal(ulaw_decode(ulaw_encode(decoded)), decoded)
    # Every code but "negative zero" (0x7F, decodes to 0 like 0xFF) maps back to itself.
    recoded = ulaw_encode(decoded)
    assert [c for c in range(256) if recoded[c] != c] == [0x7F]


@pytest.mark.parametrize(
    ("sample", "code"),
    [(0, ULAW_SILENCE), (-1, 0x7F), (32767, 0x80), (-32768, 0x00), (32124, 0x80), (1, 0xFF)],
)
def test_known_codes(sample: int, code: int) -> None:
    assert ulaw_encode(np.array([sample], dtype=np.int16)) == bytes([code])


def test_full_scale_and_monotonic() -> None:
    decoded = ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int32)
    assert decoded.max() == ULAW_MAX and decoded.min() == -ULAW_MAX
    assert np.all(np.diff(decoded) >= 0)
    # Quantization error grows with magnitude but never exceeds half the widest step.
    assert np.abs(decoded - ALL_INT16.astype(np.int32)).max() <= 1024 + 644


@pytest.mark.parametrize(
    "data",
    [
        ALL_CODES,
        bytearray(ALL_CODES),
        memoryview(ALL_CODES),
        np.frombuffer(ALL_CODES, dtype=np.uint8),
    ],
    ids=["bytes", "bytearray", "memoryview", "ndarray"],
)
def test_decode_accepts_every_input_kind(data: bytes | bytearray | memoryview) -> None:
    out = ulaw_decode(data)
    assert out.dtype == np.int16 and out.shape == (256,)
    assert out.tolist() == [ref_decode(c) for c in range(256)]
    out[0] = 1  # callers own the result
    assert ulaw_decode(data)[0] == ref_decode(0)


def test_shapes_are_kept_for_arrays() -> None:
    pcm = np.array([[0, 1000], [-1000, 5]], dtype=np.int16)
    codes = ulaw_encode_array(pcm)
    assert codes.dtype == np.uint8 and codes.shape == (2, 2)
    assert ulaw_decode(codes).shape == (2, 2)
    assert ulaw_encode(pcm) == codes.tobytes()


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(4, dtype=np.int32),
        np.zeros(4, dtype=np.float64),
        [0, 1, 2],
        b"\x00\x01",
    ],
    ids=["int32", "float64", "list", "bytes"],
)
def test_encode_rejects_non_int16(bad: object) -> None:
    with pytest.raises(ConfigError, match="int16"):
        ulaw_encode(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [np.zeros(4, dtype=np.int16), "abc", [1, 2], memoryview(b"abcd")[::2]],
    ids=["int16-array", "str", "list", "strided-memoryview"],
)
def test_decode_rejects_other_inputs(bad: object) -> None:
    with pytest.raises(ConfigError):
        ulaw_decode(bad)  # type: ignore[arg-type]


def test_decode_agrees_with_audioop() -> None:
    audioop = load_audioop()
    if audioop is None:
        pytest.skip("audioop is not available on this Python")
    theirs = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype="<i2")
    assert np.array_equal(ulaw_decode(ALL_CODES), theirs)


def test_encode_agrees_with_audioop_but_for_tiny_negative_rounding() -> None:
    audioop = load_audioop()
    if audioop is None:
        pytest.skip("audioop is not available on this Python")
    ours = np.frombuffer(ulaw_encode(ALL_INT16), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2), dtype=np.uint8)
    differ = ALL_INT16[ours != theirs].astype(np.int32)

    # audioop drops the two low bits with an arithmetic shift, which rounds negative
    # samples toward minus infinity: it encodes s as we encode 4 * floor(s / 4).
    floored = (ALL_INT16.astype(np.int32) // 4 * 4).astype(np.int16)
    assert np.array_equal(theirs, np.frombuffer(ulaw_encode(floored), dtype=np.uint8))

    # So exactly the negative samples whose magnitude, rounded up to a multiple of 4,
    # lands on the next quantization step are the ones that differ.
    def crosses_step(sample: int) -> bool:
        if sample >= 0 or sample % 4 == 0:
            return False
        rounded = min(-(sample // 4) * 4, 32635) + 0x84
        step = 8 << ((rounded >> 7).bit_length() - 1)
        return rounded % step == 0

    expected = [s for s in range(-32768, 0) if crosses_step(s)]
    assert differ.tolist() == expected
    # Three samples below each of the 127 step boundaries reachable before clipping:
    # the difference is not confined to tiny samples, but it is always one step.
    assert expected[-1] == -1 and len(expected) == 127 * 3

    # ...and the two codes are neighbouring quantization levels.
    levels = np.unique(ulaw_decode(ALL_CODES))
    ours_level = np.searchsorted(levels, ulaw_decode(ours[ours != theirs]))
    theirs_level = np.searchsorted(levels, ulaw_decode(theirs[ours != theirs]))
    assert np.all(np.abs(ours_level - theirs_level) == 1)
