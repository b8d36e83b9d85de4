from __future__ import annotations

import doctest
import functools
import itertools

import numpy as np
import numpy.typing as npt
import pytest

from mgsim.errors import ConfigError
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.speech import engine as engine_module
from mgsim.speech.engine import (
    ROLES,
    ScriptEngine,
    StreamingTranscriber,
    Utterance,
    Word,
    punch_holes,
    streamed_mask,
)

SAMPLES = [p.stem for p in list_samples()]
BoolArray = npt.NDArray[np.bool_]


@functools.cache
def sample(name: str) -> Call:
    return load_sample(name)


def pcm_of(call: Call, role: str) -> npt.NDArray[np.int16]:
    pcm: npt.NDArray[np.int16] = getattr(call.audio, role)
    return pcm


def run(call: Call, masks: dict[str, BoolArray], **kw: float) -> list[Utterance]:
    engine = ScriptEngine(call.words, **kw)
    out: list[Utterance] = []
    for role in ROLES:
        out += engine.transcribe(role, pcm_of(call, role), masks[role])
    return out


def full(call: Call) -> dict[str, BoolArray]:
    return {r: np.ones(len(pcm_of(call, r)), bool) for r in ROLES}


def kept(utterances: list[Utterance]) -> set[int]:
    return {w.index for u in utterances for w in u.words if w.index is not None}


def test_samples_are_there() -> None:
    assert len(SAMPLES) >= 5 and "card_payment" in SAMPLES


@pytest.mark.parametrize("name", SAMPLES)
def test_full_mask_transcribes_every_word_once(name: str) -> None:
    call = sample(name)
    utts = run(call, full(call))
    indexes = [w.index for u in utts for w in u.words]
    assert sorted(i for i in indexes if i is not None) == list(range(len(call.words)))
    for u in utts:
        assert u.words and u.start_ms == u.words[0].start_ms and u.end_ms == u.words[-1].end_ms
        for w in u.words:
            assert w.index is not None
            script = call.words[w.index]
            assert (script.speaker, script.text) == (u.role, w.text)
            assert (w.start_ms, w.end_ms) == (script.start_ms, script.end_ms)
        assert u.text == " ".join(w.text for w in u.words)


@pytest.mark.parametrize("name", SAMPLES)
def test_utterances_follow_turns_pauses_and_voices(name: str) -> None:
    call = sample(name)
    utts = run(call, full(call))
    per_minute = len(utts) / (call.duration_ms / 60_000)
    assert 5 <= per_minute <= 30  # the vendor sends about ten a minute
    for u in utts:
        idx = [w.index if w.index is not None else -1 for w in u.words]
        assert idx == list(range(idx[0], idx[-1] + 1)), "no other speaker inside an utterance"
        assert len({call.words[i].voice for i in idx}) == 1
        gaps = [b.start_ms - a.end_ms for a, b in itertools.pairwise(u.words)]
        assert all(g < 700 for g in gaps)
    for role in ROLES:
        mine = [u for u in utts if u.role == role]
        for a, b in itertools.pairwise(mine):
            last, first = a.words[-1].index, b.words[0].index
            assert last is not None and first is not None
            turn = first != last + 1
            voice = call.words[first].voice != call.words[last].voice
            assert turn or voice or b.start_ms - a.end_ms >= 700


def test_voice_change_splits_a_transfer() -> None:
    call = sample("transfer_payment")
    agents = [u for u in run(call, full(call)) if u.role == "agent"]
    voices = [{call.words[w.index].voice for w in u.words if w.index is not None} for u in agents]
    assert all(len(v) == 1 for v in voices)
    assert {"agent", "agent2"} <= set().union(*voices)


@pytest.mark.parametrize("name", [n for n in SAMPLES if sample(n).sensitive])
@pytest.mark.parametrize("margin_ms", [0, 250])
def test_sensitive_spans_masked_out_are_never_transcribed(name: str, margin_ms: int) -> None:
    call = sample(name)
    masks = full(call)
    for span in call.sensitive:
        cut = streamed_mask(
            len(masks[span.speaker]), [(span.start_ms - margin_ms, span.end_ms + margin_ms)]
        )
        masks[span.speaker] &= ~cut
    got = kept(run(call, masks))
    sensitive = {i for s in call.sensitive for i in s.word_indexes}
    assert not got & sensitive
    # Everything clear of the guard windows is still there; a word the window only grazes
    # follows the coverage rule.
    touched = {
        i
        for s in call.sensitive
        for i, w in enumerate(call.words)
        if w.speaker == s.speaker
        and w.end_ms > s.start_ms - margin_ms
        and w.start_ms < s.end_ms + margin_ms
    }
    assert set(range(len(call.words))) - touched <= got
    for role in ROLES:
        grazed = {i for i in touched if call.words[i].speaker == role} - sensitive
        assert got & grazed == _expected_kept(call, role, masks[role], 0.5) & grazed


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.49, 0.51, 0.8, 1.0])
def test_late_start_drops_earlier_words_and_cuts_by_coverage(fraction: float) -> None:
    call = sample("card_payment")
    target = 20  # a customer word well into the call
    customer = [i for i, w in enumerate(call.words) if w.speaker == "customer"]
    word = call.words[customer[target]]
    start = word.start_ms + fraction * (word.end_ms - word.start_ms)
    n = len(call.audio.customer)
    masks = full(call)
    masks["customer"] = streamed_mask(n, [(start, n / 8)])
    got = kept(run(call, masks))
    expected = customer[target:] if fraction < 0.5 else customer[target + 1 :]
    assert [i for i in customer if i in got] == expected
    assert all(i in got for i, w in enumerate(call.words) if w.speaker == "agent")


def _expected_kept(call: Call, role: str, mask: BoolArray, min_cov: float) -> set[int]:
    out = set()
    for i, w in enumerate(call.words):
        if w.speaker != role:
            continue
        a, b = round(w.start_ms * 8), round(w.end_ms * 8)
        if mask[a:b].sum() / max(b - a, 1) >= min_cov:
            out.add(i)
    return out


@pytest.mark.parametrize("name", SAMPLES)
def test_light_packet_loss_keeps_every_word(name: str) -> None:
    # One 20 ms packet lost in five: every word keeps about 80 % of its samples.
    call = sample(name)
    masks = {r: punch_holes(m, hole_ms=20, every_ms=100) for r, m in full(call).items()}
    assert run(call, masks) == run(call, full(call))


@pytest.mark.parametrize(("hole_ms", "every_ms"), [(20, 40), (60, 100), (30, 50)])
@pytest.mark.parametrize("min_cov", [0.5, 0.9])
def test_heavy_packet_loss_follows_the_coverage_rule(
    hole_ms: float, every_ms: float, min_cov: float
) -> None:
    call = sample("account_verification")
    masks = {r: punch_holes(m, hole_ms=hole_ms, every_ms=every_ms) for r, m in full(call).items()}
    got = kept(run(call, masks, min_coverage=min_cov))
    expected = set().union(*(_expected_kept(call, r, masks[r], min_cov) for r in ROLES))
    assert got == expected
    assert len(got) < len(call.words)


def test_min_coverage_one_drops_a_word_with_one_hole() -> None:
    words = [Word("customer", "four", 0, 300), Word("customer", "two", 350, 650)]
    mask = punch_holes(np.ones(8000, bool), hole_ms=20, every_ms=1000, phase_ms=100)
    strict = ScriptEngine(words, min_coverage=1.0)
    assert [u.text for u in strict.transcribe("customer", np.zeros(8000, np.int16), mask)] == [
        "two"
    ]
    lenient = ScriptEngine(words)
    assert [u.text for u in lenient.transcribe("customer", np.zeros(8000, np.int16), mask)] == [
        "four two"
    ]


def test_coverage_counts_samples_outside_the_arrays_as_not_streamed() -> None:
    engine = ScriptEngine([Word("agent", "a", 0, 100), Word("agent", "b", 100, 200)])
    cov = engine.coverage("agent", np.ones(1200, bool))  # 150 ms
    assert cov.tolist() == [1.0, 0.5]
    cov = engine.coverage("agent", np.ones(1200, bool), offset_ms=50)
    assert cov.tolist() == [0.5, 1.0]


def test_pause_splits_and_dropped_words_leave_a_pause() -> None:
    words = [Word("customer", t, 300 * i, 300 * i + 250) for i, t in enumerate("abcde")]
    words.append(Word("customer", "f", 2500, 2700))  # 1050 ms after "e"
    engine = ScriptEngine(words)
    n = 3000 * 8
    pcm = np.zeros(n, np.int16)
    assert [u.text for u in engine.transcribe("customer", pcm, np.ones(n, bool))] == [
        "a b c d e",
        "f",
    ]
    # Stopping over "b c d" (900 ms) leaves a pause of 650 ms + 300 ms: a new utterance.
    mask = ~streamed_mask(n, [(300, 1200)])
    assert [u.text for u in engine.transcribe("customer", pcm, mask)] == ["a", "e", "f"]


def test_long_monologue_is_cut_at_max_utterance_ms() -> None:
    words = [Word("agent", f"w{i}", 400 * i, 400 * i + 350) for i in range(100)]  # 40 s
    engine = ScriptEngine(words, max_utterance_ms=10_000)
    n = 41_000 * 8
    utts = engine.transcribe("agent", np.zeros(n, np.int16), np.ones(n, bool))
    assert sum(len(u.words) for u in utts) == 100
    assert all(u.end_ms - u.start_ms <= 10_000 for u in utts)
    assert len(utts) == 4


@pytest.mark.parametrize("name", ["card_payment", "transfer_payment"])
def test_segment_slice_with_offset_matches_the_windowed_mask(name: str) -> None:
    call = sample(name)
    engine = ScriptEngine(call.words)
    a, b = 10_000 * 8, 30_000 * 8
    for role in ROLES:
        pcm = pcm_of(call, role)
        windowed = engine.transcribe(role, pcm, streamed_mask(len(pcm), [(10_000, 30_000)]))
        sliced = engine.transcribe(role, pcm[a:b], np.ones(b - a, bool), offset_ms=10_000)
        assert sliced == windowed and sliced


@pytest.mark.parametrize("chunk_ms", [20, 1000, 7000])
@pytest.mark.parametrize("lossy", [False, True])
def test_streaming_transcriber_matches_one_shot(chunk_ms: int, lossy: bool) -> None:
    call = sample("card_payment")
    engine = ScriptEngine(call.words)
    for role in ROLES:
        pcm = pcm_of(call, role)
        mask = np.ones(len(pcm), bool)
        if lossy:
            mask = punch_holes(mask, hole_ms=60, every_ms=100)
        one_shot = engine.transcribe(role, pcm, mask)
        live = StreamingTranscriber(engine, role)
        got: list[Utterance] = []
        step = chunk_ms * 8
        for end in range(step, len(pcm), step):
            new = live.update(pcm[:end], mask[:end])
            assert all(u.end_ms + live.settle_ms <= end / 8 for u in new)
            got += new
        got += live.flush(pcm, mask)
        assert got == one_shot
        assert live.flush(pcm, mask) == []


def test_streaming_transcriber_needs_a_settle_time() -> None:
    class Bare:
        def transcribe(
            self, role: str, pcm: object, streamed: object, *, offset_ms: float = 0.0
        ) -> list[Utterance]:
            return []

    with pytest.raises(ConfigError):
        StreamingTranscriber(Bare(), "agent")
    assert StreamingTranscriber(Bare(), "agent", settle_ms=900).settle_ms == 900.0


@pytest.mark.parametrize(
    ("pcm", "mask", "role"),
    [
        (np.zeros(10, np.int16), np.ones(11, bool), "agent"),
        (np.zeros(10, np.int16), np.ones(10, np.uint8), "agent"),
        (np.zeros(10, np.int16), np.ones((10, 1), bool), "agent"),
        (np.zeros(10, np.int16), np.ones(10, bool), "ivr"),
    ],
)
def test_bad_inputs_raise_config_error(pcm: np.ndarray, mask: np.ndarray, role: str) -> None:
    engine = ScriptEngine([Word("agent", "hi", 0, 1)])
    with pytest.raises(ConfigError):
        engine.transcribe(role, pcm, mask)


@pytest.mark.parametrize("kw", [{"min_coverage": 0.0}, {"min_coverage": 1.5}, {"pause_ms": 0}])
def test_bad_settings_raise_config_error(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        ScriptEngine([], **kw)


def test_empty_script_and_empty_audio() -> None:
    engine = ScriptEngine([])
    assert engine.transcribe("agent", np.zeros(0, np.int16), np.zeros(0, bool)) == []
    assert engine.settle_ms == engine.pause_ms


@pytest.mark.parametrize(
    ("windows", "expected"),
    [([], 0), ([(0, 1)], 8), ([(0.5, 1), (1, 2)], 12), ([(-5, 0.25)], 2), ([(1.5, 99)], 4)],
)
def test_streamed_mask_windows(windows: list[tuple[float, float]], expected: int) -> None:
    assert int(streamed_mask(16, windows).sum()) == expected


@pytest.mark.parametrize(("hole", "every", "kept_share"), [(20, 100, 0.8), (20, 40, 0.5)])
def test_punch_holes_share(hole: float, every: float, kept_share: float) -> None:
    mask = punch_holes(np.ones(80_000, bool), hole_ms=hole, every_ms=every)
    assert mask.mean() == pytest.approx(kept_share)
    with pytest.raises(ConfigError):
        punch_holes(mask, hole_ms=50, every_ms=20)


def test_doctests() -> None:
    assert doctest.testmod(engine_module).failed == 0


@pytest.mark.parametrize("text", ["my card is 4111 1111 1111 1111", "4111\t1111", "", "one\n"])
def test_a_word_that_is_not_one_word_is_refused(text: str) -> None:
    # Redaction reads word by word, so a card number inside one "word" would pass it.
    words = [Word("customer", "hello", 0, 300), Word("customer", text, 400, 900)]
    with pytest.raises(ConfigError, match=r"word 1 \(.*\) is not one word"):
        ScriptEngine(words)
