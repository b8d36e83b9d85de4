from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mgsim.sim import synth
from mgsim.sim.call import Call, load_sample
from mgsim.sim.script import load_script, parse_script
from mgsim.sim.synth import VOICES, SynthError, espeak_version, resample_poly, synthesize

ESPEAK = espeak_version()
needs_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)

SCRIPT = """\
# title: Tiny
# seed: 7
[ivr] Welcome to Acme Bank.
[hold 1.5s music]
agent: Hi, this is Sam. Can I have the card number?
customer: Sure, it's {card_number: four one one one}. My e-mail is on file, Mr. Smith.
[transfer agent2 2s]
[silence 500ms]
agent: Thanks, that's all.
"""


def _sine(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


@pytest.mark.parametrize(("to_rate", "from_rate"), [(8000, 22050), (8000, 16000), (8000, 8000)])
def test_resample_keeps_length_and_in_band_tones(to_rate: int, from_rate: int) -> None:
    y = resample_poly(_sine(1000.0, from_rate), to_rate, from_rate)
    assert len(y) == to_rate
    middle = y[to_rate // 4 : 3 * to_rate // 4]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(np.sqrt(0.5), rel=0.01)
    expected = _sine(1000.0, to_rate)[to_rate // 4 : 3 * to_rate // 4]
    assert np.max(np.abs(middle - expected)) < 0.01  # no delay: the filter is centred


@pytest.mark.parametrize("freq", [4500.0, 6000.0, 10000.0])
def test_resample_removes_tones_above_the_new_nyquist(freq: float) -> None:
    y = resample_poly(_sine(freq, 22050), 8000, 22050)
    rms = np.sqrt(np.mean(y[2000:6000] ** 2))
    assert 20 * np.log10(rms / np.sqrt(0.5)) < -60


@pytest.mark.parametrize(
    ("runs", "words", "groups"),
    [
        ([100, 200], [100, 200], [1, 1]),
        ([100, 300, 100], [100, 150, 140, 100], [1, 2, 1]),
        ([250, 100], [120, 130, 100], [2, 1]),
        ([100, 100, 100], [100, 100], None),
    ],
)
def test_group_runs(runs: list[int], words: list[int], groups: list[int] | None) -> None:
    assert synth._group_runs(runs, words) == groups


def test_hold_music_is_seeded_and_bounded() -> None:
    n = 3 * 8000
    a = synth._hold_music(n, np.random.default_rng([1, 2]))
    b = synth._hold_music(n, np.random.default_rng([1, 2]))
    c = synth._hold_music(n, np.random.default_rng([9, 2]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(a) == n and 0.2 < np.max(np.abs(a)) <= 0.25 + 1e-9


def test_ringback_cadence() -> None:
    ring = synth._ringback(8 * 8000)
    on = np.sqrt(np.mean(ring[: 2 * 8000] ** 2))
    assert on > 0.05
    assert not ring[2 * 8000 : 6 * 8000].any()  # four seconds off
    assert ring[6 * 8000 : 8 * 8000].any()


def test_voices_are_distinct() -> None:
    assert set(VOICES) == {"customer", "agent", "agent2", "ivr"}
    assert len({v.describe() for v in VOICES.values()}) == 4
    assert VOICES["customer"].speed < VOICES["agent"].speed
    assert VOICES["customer"].pitch > VOICES["agent"].pitch


def test_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(SynthError, match="not installed"):
        synthesize(parse_script("agent: hi"), binary="no-such-espeak-binary")


def test_an_espeak_run_over_its_time_limit_is_a_synth_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in that answers --version and then hangs, as a wedged espeak-ng would.
    fake = tmp_path / "espeak-hangs"
    fake.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "eSpeak NG text-to-speech: 1.51"; '
        "exit 0; fi\nexec sleep 30\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(synth, "ESPEAK_TIMEOUT_S", 0.5)
    with pytest.raises(SynthError, match=r"did not finish 'hi' within 0\.5 s; it was stopped"):
        synthesize(parse_script("agent: hi"), binary=str(fake))


@pytest.fixture(scope="module")
def tiny() -> Call:
    if ESPEAK is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return synthesize(parse_script(SCRIPT, call_id="tiny"))


@needs_espeak
def test_synthesis_is_deterministic(tiny: Call) -> None:
    again = synthesize(parse_script(SCRIPT, call_id="tiny"))
    assert np.array_equal(again.stereo_array(), tiny.stereo_array())
    assert again.to_sidecar() == tiny.to_sidecar()
    reseeded = synthesize(parse_script("# seed: 8\n" + SCRIPT.replace("# seed: 7\n", "")))
    assert [w.text for w in reseeded.words] == [w.text for w in tiny.words]
    assert not np.array_equal(reseeded.stereo_array(), tiny.stereo_array())


@needs_espeak
def test_words_follow_the_script(tiny: Call) -> None:
    script = parse_script(SCRIPT)
    expected = [(t.speaker, t.voice, tok.text) for t in script.turns for tok in t.tokens]
    assert [(w.speaker, w.voice, w.text) for w in tiny.words] == expected
    # Hyphenated words and abbreviations are still one word each.
    assert "e-mail" in [w.text for w in tiny.words]
    assert [s.kind for s in tiny.segments] == [
        "ivr",
        "hold",
        "speech",
        "speech",
        "transfer",
        "silence",
        "speech",
    ]
    assert tiny.segments[4].voice == "agent2" and tiny.segments[1].style == "music"
    assert tiny.meta["generator"]["espeak_ng"] == ESPEAK


@needs_espeak
def test_timings_agree_with_the_audio(tiny: Call) -> None:
    assert tiny.timing_problems() == []
    starts = [w.start_ms for w in tiny.words]
    assert starts == sorted(starts)
    assert all(isinstance(w.start_ms, int) and w.end_ms > w.start_ms for w in tiny.words)
    assert tiny.duration_ms == tiny.audio.n_samples // 8
    # The customer never sounds on the agent channel and the other way round.
    customer_words = [w for w in tiny.words if w.speaker == "customer"]
    for w in customer_words:
        seg = tiny.audio.agent[w.start_ms * 8 : w.end_ms * 8].astype(float)
        assert np.sqrt(np.mean(seg**2)) < 100  # line noise only (about -60 dBFS = 33)


@needs_espeak
def test_sensitive_span_covers_its_words(tiny: Call) -> None:
    (span,) = tiny.sensitive
    words = [tiny.words[i] for i in span.word_indexes]
    assert (span.label, span.speaker, span.text) == ("card_number", "customer", "four one one one")
    assert [w.text for w in words] == ["four", "one", "one", "one"]
    assert (span.start_ms, span.end_ms) == (words[0].start_ms, words[-1].end_ms)


@needs_espeak
def test_turn_gaps_are_natural(tiny: Call) -> None:
    agent_turn = [w for w in tiny.words if w.voice == "agent"]
    gaps = [b.start_ms - a.end_ms for a, b in itertools.pairwise(agent_turn)]
    assert min(gaps) >= 15 and max(gaps) <= 360


@needs_espeak
def test_committed_sample_regenerates_identically() -> None:
    committed = load_sample("card_payment")
    recorded = committed.meta["generator"]["espeak_ng"]
    if recorded != ESPEAK:
        pytest.skip(f"samples were made with espeak-ng {recorded}, this is {ESPEAK}")
    script = load_script(Path(__file__).parents[1] / "sample_audio/scripts/card_payment.txt")
    fresh = synthesize(script)
    assert np.array_equal(fresh.stereo_array(), committed.stereo_array())
    assert fresh.to_sidecar() == committed.to_sidecar()
