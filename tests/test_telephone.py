"""The telephone channel of the natural-voice samples, and Piper synthesis of a script."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest

from mgsim.errors import ConfigError
from mgsim.media.g711 import ulaw_decode
from mgsim.media.telephone import band_limit, telephone_channel
from mgsim.sim.script import parse_script
from mgsim.sim.synth import SynthError

RATE = 8000


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:  # type: ignore[type-arg]
    return 0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)


@pytest.mark.parametrize(
    ("hz", "gain"), [(100, 0.0), (250, 0.5), (300, 1.0), (1000, 1.0), (3400, 1.0), (3750, 0.0)]
)
def test_band_limit_keeps_the_voice_band(hz: float, gain: float) -> None:
    out = band_limit(tone(hz))
    # Whole cycles in the middle, away from the ends of the tone.
    ratio = np.sqrt(np.mean(out[2000:6000] ** 2)) / np.sqrt(np.mean(tone(hz)[2000:6000] ** 2))
    assert ratio == pytest.approx(gain, abs=0.02)


def test_band_limit_has_zero_phase() -> None:
    click = np.zeros(RATE)
    click[4000] = 1.0
    out = band_limit(click)
    assert int(np.argmax(np.abs(out))) == 4000
    assert np.allclose(out[3000:4000], out[4001:5001][::-1])  # symmetric about the click


def test_band_limit_refuses_a_band_outside_8_khz() -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        band_limit(tone(1000), 300, 3900)
    with pytest.raises(ConfigError, match="does not fit"):
        band_limit(tone(1000), 3400, 300)


def test_telephone_channel_is_seeded_and_mu_law() -> None:
    a = telephone_channel(tone(1000), np.random.default_rng(7))
    b = telephone_channel(tone(1000), np.random.default_rng(7))
    c = telephone_channel(tone(1000), np.random.default_rng(8))
    assert a.dtype == np.int16 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert set(np.unique(a).tolist()) <= set(ulaw_decode(bytes(range(256))).tolist())
    quiet = telephone_channel(np.zeros(RATE), np.random.default_rng(7), noise_dbfs=-50)
    level = 20 * np.log10(np.sqrt(np.mean((quiet / 32768.0) ** 2)))
    assert -53 < level < -49  # the band limit takes about 1 dB off white noise


SCRIPT = """# title: Tiny
agent: Thanks for calling, how can I help?
customer: My card is {card_number: four one one one, one one one one}. Thanks.
"""


def test_natural_voice_synthesis_fits_its_audio() -> None:
    pytest.importorskip("piper", reason="piper-tts is not installed (pip install -e '.[samples]')")
    from mgsim.sim.natural_voice import synthesize_natural
    from mgsim.sim.sidecar_check import sidecar_problems

    script = parse_script(SCRIPT, call_id="tiny")
    call = synthesize_natural(script)
    assert [w.text for w in call.words][:3] == ["Thanks", "for", "calling"]
    assert call.meta["voice"] == "piper en_US-joe-medium"
    assert call.timing_problems(threshold_dbfs=-50.0, tolerance_ms=50) == []
    assert sidecar_problems(call, stated_duration_ms=call.duration_ms) == []
    (span,) = call.sensitive
    assert span.text == "four one one one one one one one"
    assert call.words[span.word_indexes[0]].start_ms == span.start_ms
    again = synthesize_natural(script)
    assert np.array_equal(again.stereo_array(), call.stereo_array())
    assert again.to_sidecar() == call.to_sidecar()


def test_natural_voice_without_piper_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from mgsim.sim.natural_voice import synthesize_natural

    real_import = builtins.__import__

    def no_piper(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "piper":
            raise ImportError("No module named 'piper'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_piper)
    with pytest.raises(SynthError, match=r"pip install -e '\.\[samples\]'"):
        synthesize_natural(parse_script(SCRIPT, call_id="tiny"))


def test_doctests() -> None:
    import doctest

    from mgsim.media import telephone

    result = doctest.testmod(telephone)
    assert result.attempted > 0 and result.failed == 0
