from __future__ import annotations

import doctest
import sys
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from mgsim.errors import ConfigError
from mgsim.sim.call import Call, load_sample
from mgsim.speech import sphinx
from mgsim.speech.engine import TranscriptionEngine, streamed_mask
from mgsim.speech.sphinx import SphinxEngine, speech_spans, upsample_2x
from mgsim.speech.wer import WordErrors, normalise_words, word_error_rate, word_errors

try:
    import pocketsphinx  # noqa: F401

    HAVE_SPHINX = True
except ImportError:
    HAVE_SPHINX = False

needs_sphinx = pytest.mark.skipif(
    not HAVE_SPHINX, reason="pocketsphinx is not installed (pip install 'mgsim[asr]')"
)

# Measured on card_payment's customer channel with the default settings: WER 1.00 (62
# reference words: 51 substituted, 11 right, 11 inserted). The bundled model hears the
# espeak-ng voices badly, so the rate alone cannot tell a working engine from a silent one
# (no words at all also scores 1.0): the test bounds it and requires some words right too.
CUSTOMER_WER_BOUND = 1.15
CUSTOMER_MIN_CORRECT = 6


def test_doctests() -> None:
    assert doctest.testmod(sphinx, optionflags=doctest.ELLIPSIS).failed == 0


# -- word error rate -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("a b c", "a b c", WordErrors(0, 0, 0, 3)),
        ("a b c", "a x c", WordErrors(1, 0, 0, 3)),
        ("a b c", "a c", WordErrors(0, 1, 0, 3)),
        ("a b c", "a b c d", WordErrors(0, 0, 1, 3)),
        ("a b c", "x a b c", WordErrors(0, 0, 1, 3)),
        ("a b c", "", WordErrors(0, 3, 0, 3)),
        ("", "a b", WordErrors(0, 0, 2, 0)),
        ("", "", WordErrors(0, 0, 0, 0)),
        ("a b c d", "b c d e", WordErrors(0, 1, 1, 4)),  # shift: not four substitutions
        ("a b", "x y z", WordErrors(2, 0, 1, 2)),
        ("It's twenty-seven.", "it's twenty seven", WordErrors(0, 0, 0, 3)),
        ("HELLO, World!", "hello world", WordErrors(0, 0, 0, 2)),
    ],
)
def test_word_errors(ref: str, hyp: str, expected: WordErrors) -> None:
    assert word_errors(ref.split(), hyp.split()) == expected


@pytest.mark.parametrize(
    ("ref", "hyp", "rate"),
    [
        ("one two three four", "one two three four", 0.0),
        ("one two three four", "one too three", 0.5),
        ("one", "one two three", 2.0),  # insertions can push the rate past 1
        ("", "", 0.0),
        ("", "noise", float("inf")),
        ("x", "", 1.0),
    ],
)
def test_word_error_rate(ref: str, hyp: str, rate: float) -> None:
    assert word_error_rate(ref.split(), hyp.split()) == pytest.approx(rate)


def test_word_errors_add_up_before_the_rate() -> None:
    total = word_errors(["a"], ["b"]) + word_errors(list("abcd"), list("abcd"))
    assert total == WordErrors(1, 0, 0, 5)
    assert total.errors == 1
    assert total.rate == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["Hi", "Sam"], ["hi", "sam"]),
        (["I'd", "rather-not"], ["i'd", "rather", "not"]),
        (["'quoted'", "--", "...", "end."], ["quoted", "end"]),
        (["4111-1111"], ["4111", "1111"]),
        ([], []),
    ],
)
def test_normalise_words(words: list[str], expected: list[str]) -> None:
    assert normalise_words(words) == expected


# -- resampling and utterance spans ----------------------------------------------------------


@pytest.mark.parametrize("freq", [200.0, 1000.0, 2500.0, 3300.0])
def test_upsample_2x_reproduces_tones_in_the_telephone_band(freq: float) -> None:
    n = 8000
    x = np.rint(12000 * np.sin(2 * np.pi * freq * np.arange(n) / 8000)).astype(np.int16)
    y = upsample_2x(x)
    assert len(y) == 2 * n and y.dtype == np.int16
    assert np.array_equal(y[0::2], x)
    exact = 12000 * np.sin(2 * np.pi * freq * np.arange(2 * n) / 16000)
    # Away from the ends (where the signal is taken as silent) the error is a few LSB.
    assert np.abs(y[100:-100] - exact[100:-100]).max() < 4


def test_upsample_2x_empty_and_clipping() -> None:
    assert len(upsample_2x(np.zeros(0, np.int16))) == 0
    loud = np.array([32767, -32768] * 50, np.int16)
    y = upsample_2x(loud)  # overshoot between full-scale samples must clip, not wrap
    assert y.min() == -32768 and y.max() == 32767


def _bursts(layout: list[tuple[str, int]]) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
    """Audio from ("tone" | "gap", ms) pieces; tones at -16 dBFS, gaps digital silence."""
    parts = []
    for kind, ms in layout:
        n = ms * 8
        if kind == "tone":
            parts.append(np.rint(8000 * np.sin(np.arange(n) * 0.7)).astype(np.int16))
        else:
            parts.append(np.zeros(n, np.int16))
    return np.concatenate(parts)


@pytest.mark.parametrize(
    ("layout", "expected_ms"),
    [
        # pauses >= 500 ms split, shorter ones do not; 150 ms padding either side
        (
            [("gap", 1000), ("tone", 300), ("gap", 1000), ("tone", 300), ("gap", 1000)],
            [(850, 1450), (2150, 2750)],
        ),
        ([("gap", 1000), ("tone", 300), ("gap", 300), ("tone", 300), ("gap", 1000)], [(850, 2050)]),
        # a 50 ms click is not speech
        ([("gap", 1000), ("tone", 50), ("gap", 1000)], []),
        # padding stops at the ends of the audio
        ([("tone", 300), ("gap", 100)], [(0, 400)]),
        ([("gap", 2000)], []),
    ],
)
def test_speech_spans(layout: list[tuple[str, int]], expected_ms: list[tuple[int, int]]) -> None:
    pcm = _bursts(layout)
    spans = speech_spans(pcm, np.ones(len(pcm), bool))
    assert [(s.start // 8, s.end // 8) for s in spans] == expected_ms


def test_speech_spans_are_trimmed_to_streamed_samples() -> None:
    pcm = _bursts([("gap", 1000), ("tone", 1000), ("gap", 1000)])
    mask = streamed_mask(len(pcm), [(1500, 3000)])
    assert [(s.start // 8, s.end // 8) for s in speech_spans(pcm, mask)] == [(1500, 2150)]
    assert speech_spans(pcm, np.zeros(len(pcm), bool)) == []


def test_speech_spans_do_not_move_when_the_audio_is_sliced() -> None:
    pcm = _bursts([("gap", 700), ("tone", 400), ("gap", 900), ("tone", 400), ("gap", 600)])
    whole = speech_spans(pcm, np.ones(len(pcm), bool))
    cut = 12003  # between the two utterances, not on a 10 ms frame boundary
    part = speech_spans(pcm[cut:], np.ones(len(pcm) - cut, bool), offset_ms=cut / 8)
    assert [(s.start + cut, s.end + cut) for s in part] == [(s.start, s.end) for s in whole[1:]]


# -- construction ----------------------------------------------------------------------------


def test_missing_pocketsphinx_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"pip install 'mgsim\[asr\]'"):
        SphinxEngine()


@pytest.mark.parametrize(
    "kwargs",
    [{"pause_ms": 0}, {"max_utterance_ms": -1}, {"pad_ms": -5}, {"min_speech_ms": -1}],
)
def test_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SphinxEngine(**kwargs)


@needs_sphinx
def test_bad_decoder_option() -> None:
    with pytest.raises(ConfigError, match="decoder_options"):
        SphinxEngine(decoder_options={"no_such_option": 1})


# -- decoding --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[SphinxEngine]:
    if not HAVE_SPHINX:
        pytest.skip("pocketsphinx is not installed (pip install 'mgsim[asr]')")
    yield SphinxEngine()


@pytest.fixture(scope="module")
def card_payment() -> Call:
    return load_sample("card_payment")


@needs_sphinx
def test_is_a_transcription_engine(engine: SphinxEngine) -> None:
    typed: TranscriptionEngine = engine
    assert typed is engine and engine.name == "sphinx"
    assert engine.settle_ms > engine.pause_ms


@needs_sphinx
@pytest.mark.slow
def test_customer_channel_word_error_rate(engine: SphinxEngine, card_payment: Call) -> None:
    pcm = card_payment.audio.customer
    utterances = engine.transcribe("customer", pcm, np.ones(len(pcm), bool))
    reference = [w.text for w in card_payment.words if w.speaker == "customer"]
    hypothesis = [w.text for u in utterances for w in u.words]
    errors = word_errors(reference, hypothesis)
    assert errors.rate < CUSTOMER_WER_BOUND
    correct = errors.reference_words - errors.substitutions - errors.deletions
    assert correct >= CUSTOMER_MIN_CORRECT
    # One utterance per customer turn (7 in the script), in time order, words inside.
    turns = {s.start_ms for s in card_payment.segments if s.speaker == "customer"}
    assert len(utterances) == len(turns)
    for u, turn in zip(utterances, sorted(turns), strict=True):
        assert u.role == "customer"
        assert u.start_ms == u.words[0].start_ms and u.end_ms == u.words[-1].end_ms
        assert abs(u.start_ms - turn) < 400
        assert all(a.end_ms <= b.start_ms for a, b in pairwise(u.words))
    assert all(a.end_ms <= b.start_ms for a, b in pairwise(utterances))


@needs_sphinx
@pytest.mark.parametrize("role", ["customer", "agent"])
def test_nothing_streamed_gives_nothing(
    engine: SphinxEngine, card_payment: Call, role: str
) -> None:
    pcm = getattr(card_payment.audio, role)
    assert engine.transcribe(role, pcm, np.zeros(len(pcm), bool)) == []


@needs_sphinx
@pytest.mark.slow
@pytest.mark.parametrize(
    "windows",
    [
        [(9000, 14000)],  # the agent's first question and the customer's answer
        [(20000, 23000), (30000, 32500)],  # part of the card number, then the expiry
    ],
)
def test_words_stay_inside_streamed_windows(
    engine: SphinxEngine, card_payment: Call, windows: list[tuple[int, int]]
) -> None:
    pcm = card_payment.audio.customer
    mask = streamed_mask(len(pcm), windows)
    words = [w for u in engine.transcribe("customer", pcm, mask) for w in u.words]
    assert words
    for w in words:
        assert any(a <= w.start_ms < w.end_ms <= b for a, b in windows), w
    for a, b in windows:  # every window with speech in it yields words
        spoken = [x for x in card_payment.words if x.speaker == "customer" and a < x.start_ms < b]
        assert not spoken or any(a <= w.start_ms < b for w in words)


@needs_sphinx
def test_same_words_from_a_slice_with_its_offset(engine: SphinxEngine, card_payment: Call) -> None:
    # The customer's expiry turn alone, once in the whole array and once as a slice.
    start_ms, end_ms = 28000, 33500
    pcm = card_payment.audio.customer
    whole = engine.transcribe("customer", pcm, streamed_mask(len(pcm), [(start_ms, end_ms)]))
    piece = pcm[start_ms * 8 : end_ms * 8]
    sliced = engine.transcribe(
        "customer", piece, np.ones(len(piece), bool), offset_ms=float(start_ms)
    )
    assert whole and sliced == whole


@needs_sphinx
def test_what_came_before_does_not_change_the_words(
    engine: SphinxEngine, card_payment: Call
) -> None:
    pcm = card_payment.audio.customer
    expiry = streamed_mask(len(pcm), [(29000, 32500)])
    first = engine.transcribe("customer", pcm, expiry)
    engine.transcribe("agent", card_payment.audio.agent, streamed_mask(len(pcm), [(0, 2500)]))
    assert first and engine.transcribe("customer", pcm, expiry) == first


@needs_sphinx
@pytest.mark.parametrize(
    ("role", "pcm_len", "mask_len", "dtype"),
    [
        ("caller", 800, 800, np.int16),
        ("customer", 800, 400, np.int16),
        ("customer", 800, 800, np.float32),
    ],
)
def test_bad_arguments(
    engine: SphinxEngine, role: str, pcm_len: int, mask_len: int, dtype: type
) -> None:
    with pytest.raises(ConfigError):
        engine.transcribe(role, np.zeros(pcm_len, dtype), np.ones(mask_len, bool))
