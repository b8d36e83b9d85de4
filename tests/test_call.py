from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from mgsim.errors import ConfigError
from mgsim.media._base import StereoCall
from mgsim.sim.call import (
    SIDECAR_SCHEMA,
    Call,
    Segment,
    SensitiveSpan,
    Word,
    dumps_sidecar,
    list_samples,
    load_sample,
    make_long_call,
    samples_dir,
)
from mgsim.sim.sidecar_check import SidecarMismatch


def make_call(call_id: str = "c1", ms: int = 3000, *, seed: int = 0, odd: int = 0) -> Call:
    """A small call: customer says 'my code is one two', agent says 'thanks'."""
    rng = np.random.default_rng(seed)
    n = ms * 8 + odd
    # Faint line noise, and loud noise where the sidecar says there is sound: a call that
    # fits its sidecar (Call.load refuses one that does not).
    customer = rng.integers(-20, 20, n, dtype=np.int16)
    agent = rng.integers(-20, 20, n - 5, dtype=np.int16)
    for pcm, spans_ms in ((customer, [(100, 1200)]), (agent, [(1300, 1600), (1700, 2100)])):
        for lo, hi in spans_ms:
            piece = pcm[lo * 8 : hi * 8]
            piece[:] = rng.integers(-3000, 3000, len(piece), dtype=np.int16)
    audio = StereoCall(customer, agent)
    words = (
        Word("customer", "customer", "my", 100, 300),
        Word("customer", "customer", "code", 340, 600),
        Word("customer", "customer", "is", 640, 800),
        Word("customer", "customer", "one", 840, 1000),
        Word("customer", "customer", "two", 1040, 1200),
        Word("agent", "agent", "thanks", 1700, 2100),
    )
    spans = (SensitiveSpan("cvv", "customer", "one two", 840, 1200, (3, 4)),)
    segments = (
        Segment("speech", 100, 1200, speaker="customer", voice="customer"),
        Segment("hold", 1300, 1600, style="music"),
        Segment("speech", 1700, 2100, speaker="agent", voice="agent"),
    )
    meta = {"title": f"Call {call_id}", "direction": "inbound", "generator": {"x": 1}}
    return Call(call_id, audio, words, spans, segments, meta)


def assert_same(a: Call, b: Call) -> None:
    assert a.call_id == b.call_id
    assert np.array_equal(a.stereo_array(), b.stereo_array())
    assert (a.words, a.sensitive, a.segments, a.meta) == (b.words, b.sensitive, b.segments, b.meta)


@pytest.mark.parametrize("name", ["call.wav", "call.flac", "call", "call.json"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    call = make_call()
    audio_path, sidecar_path = call.save(tmp_path / name)
    assert sidecar_path.name == "call.json"
    assert audio_path.suffix in (".wav", ".flac")
    info = sf.info(str(audio_path))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_16")
    for path in (audio_path, sidecar_path):
        loaded = Call.load(path)
        # The shorter agent channel comes back padded to the customer's length.
        assert len(loaded.audio.agent) == len(call.audio.customer)
        assert_same(loaded, call)


def test_sidecar_matches_schema_and_keeps_extra_meta() -> None:
    call = make_call()
    call.meta["notes"] = "kept"
    sidecar = call.to_sidecar()
    jsonschema.validate(sidecar, SIDECAR_SCHEMA)
    assert list(sidecar)[:9] == [
        "call_id",
        "title",
        "direction",
        "rate",
        "channels",
        "duration_ms",
        "words",
        "sensitive",
        "segments",
    ]
    assert sidecar["channels"] == {"customer": 0, "agent": 1}
    assert sidecar["notes"] == "kept"
    assert sidecar["segments"][1] == {
        "kind": "hold",
        "start_ms": 1300,
        "end_ms": 1600,
        "style": "music",
    }
    assert json.loads(dumps_sidecar(sidecar)) == sidecar


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.update(direction="sideways"), "sideways"),
        (lambda d: d.update(rate=16000), "8000"),
        (lambda d: d["words"][0].pop("text"), "'text' is a required property"),
        (lambda d: d["sensitive"][0].update(word_indexes=[99]), "past the last word"),
        (lambda d: d["segments"][0].update(kind="music"), "'music' is not one of"),
        # Hand edits: a word with spaces would skip redaction; spans must not overlap and
        # must be runs of words, or a leak report counts words twice or nonsense.
        (
            lambda d: d["words"][3].update(text="4111 1111"),
            "words/3/text: '4111 1111' is not one word",
        ),
        (
            lambda d: d["sensitive"].append({**d["sensitive"][0], "word_indexes": [4]}),
            "sensitive span 1 ('cvv') overlaps sensitive span 0: both hold word 4 ('two')",
        ),
        (
            lambda d: d["sensitive"][0].update(word_indexes=[1, 4]),
            "word_indexes [1, 4] are not consecutive and ascending",
        ),
        (
            lambda d: d["sensitive"][0].update(word_indexes=[4, 3]),
            "not consecutive and ascending",
        ),
        (
            lambda d: d["sensitive"][0].update(word_indexes=[4, 5]),
            "word 5 ('thanks') is the agent's",
        ),
    ],
)
def test_invalid_sidecars_are_rejected(tmp_path: Path, change: object, fragment: str) -> None:
    _, sidecar_path = make_call().save(tmp_path / "c.wav")
    data = json.loads(sidecar_path.read_text())
    change(data)  # type: ignore[operator]
    sidecar_path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"c\.json") as info:
        Call.load(sidecar_path)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"call_id": "c1", ', "not valid JSON: Expecting property name"),
        (b"[1, 2]", "a sidecar is a JSON object, not list"),
        ('{"call_id": "é"}'.encode("latin-1"), "not UTF-8 text"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_corrupt_sidecars_are_clear_errors(tmp_path: Path, content: bytes, fragment: str) -> None:
    _, sidecar_path = make_call().save(tmp_path / "c.wav")
    sidecar_path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"c\.json: ") as info:
        Call.load(sidecar_path)
    assert fragment in str(info.value)


def test_a_sidecar_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    call = make_call()
    _, sidecar_path = call.save(tmp_path / "c.wav")
    sidecar_path.write_bytes(b"\xef\xbb\xbf" + sidecar_path.read_bytes())
    assert_same(Call.load(sidecar_path), call)


@pytest.mark.parametrize("garbage", [b"", b"RIFF\x00\x00\x00\x00WAVEjunk", b"\x00" * 4096])
def test_garbage_audio_is_a_clear_error(tmp_path: Path, garbage: bytes) -> None:
    audio_path, _ = make_call().save(tmp_path / "c.wav")
    audio_path.write_bytes(garbage)
    with pytest.raises(ConfigError, match=r"c\.wav: not a readable audio file"):
        Call.load(audio_path)


def test_a_path_with_a_space_loads(tmp_path: Path) -> None:
    call = make_call()
    audio_path, _ = call.save(tmp_path / "my calls" / "card payment.wav")
    assert_same(Call.load(audio_path), call)


def test_load_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Call.load(tmp_path / "missing.wav")
    with pytest.raises(ConfigError, match=r"expected a \.wav"):
        Call.load(tmp_path / "x.mp3")
    audio_path, _ = make_call().save(tmp_path / "r.wav")
    # Any rate is resampled and a mono file is the customer's channel, but 100 ms of audio
    # is not the 3 s call its sidecar describes.
    sf.write(str(audio_path), np.zeros((1600, 2), dtype=np.int16), 16000)
    with pytest.raises(
        SidecarMismatch, match=r"durations differ: .* 3\.00 s, the audio is 0\.10 s"
    ):
        Call.load(audio_path)
    sf.write(str(audio_path), np.zeros(800, dtype=np.int16), 8000)
    with pytest.raises(SidecarMismatch, match="durations differ"):
        Call.load(audio_path)
    data = json.loads(audio_path.with_suffix(".json").read_text())
    data["channels"] = {"customer": 2, "agent": 1}
    audio_path.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="do not fit"):
        Call.load(audio_path)


def test_concat_shifts_everything() -> None:
    a, b = make_call("a", 3000, odd=3), make_call("b", 2000, seed=1)
    joined = Call.concat([a, b], call_id="ab", gap_ms=500)
    # a is 3000.375 ms long, so it is padded to 3001 ms; b starts after the gap.
    offset = 3001 + 500
    assert joined.meta["parts"] == [
        {"call_id": "a", "offset_ms": 0},
        {"call_id": "b", "offset_ms": offset},
    ]
    assert joined.duration_ms == offset + 2000
    assert joined.words[:6] == a.words
    assert [w.start_ms - offset for w in joined.words[6:]] == [w.start_ms for w in b.words]
    assert [w.end_ms - offset for w in joined.words[6:]] == [w.end_ms for w in b.words]
    span_b = joined.sensitive[1]
    assert span_b.word_indexes == (9, 10)
    assert [joined.words[i].text for i in span_b.word_indexes] == ["one", "two"]
    assert (span_b.start_ms, span_b.end_ms) == (840 + offset, 1200 + offset)
    assert joined.segments[3].start_ms == 100 + offset
    stereo = joined.stereo_array()
    assert np.array_equal(stereo[offset * 8 : offset * 8 + 16000], b.stereo_array())
    assert not stereo[3001 * 8 : offset * 8].any()
    assert joined.title == "Call a + Call b"


def test_concat_needs_calls() -> None:
    with pytest.raises(ConfigError):
        Call.concat([])
    with pytest.raises(ConfigError):
        Call.concat([make_call()], gap_ms=-1)


@pytest.mark.parametrize(
    ("end_ms", "n_words", "n_spans", "last_segment_end"),
    [(3000, 6, 1, 2100), (1900, 5, 1, 1900), (1100, 4, 0, 1100), (0, 0, 0, None)],
)
def test_truncated(end_ms: int, n_words: int, n_spans: int, last_segment_end: int | None) -> None:
    cut = make_call().truncated(end_ms)
    assert cut.duration_ms == min(end_ms, 3000)
    assert len(cut.words) == n_words and len(cut.sensitive) == n_spans
    assert all(w.end_ms <= end_ms for w in cut.words)
    ends = [s.end_ms for s in cut.segments]
    assert (ends[-1] if ends else None) == last_segment_end


@pytest.mark.parametrize("minutes", [0.1, 0.25])
def test_make_long_call_from_given_calls(minutes: float) -> None:
    parts = [make_call("a", 3000), make_call("b", 2000, seed=1)]
    long = make_long_call(minutes, calls=parts)
    target = round(minutes * 60_000)
    assert long.duration_ms == target
    for part in long.meta["parts"]:
        source = parts[0] if part["call_id"] == "a" else parts[1]
        shifted = [
            (w.text, w.start_ms - part["offset_ms"])
            for w in long.words
            if part["offset_ms"] <= w.start_ms < part["offset_ms"] + source.duration_ms
        ]
        expected = [(w.text, w.start_ms) for w in source.words][: len(shifted)]
        assert shifted == expected
    assert all(w.end_ms <= target for w in long.words)
    with pytest.raises(ConfigError):
        make_long_call(0, calls=parts)


def test_make_long_call_ten_minutes_from_samples() -> None:
    long = make_long_call(minutes=10)
    assert long.duration_ms == 600_000
    assert long.audio.n_samples == 600_000 * 8
    sources = {p.stem: Call.load(p) for p in list_samples()}
    assert len(long.meta["parts"]) > len(sources)  # the samples repeat
    for part in long.meta["parts"][: len(sources) + 1]:
        source = sources[part["call_id"]]
        offset = part["offset_ms"]
        inside = [w for w in long.words if offset <= w.start_ms < offset + source.duration_ms]
        assert [(w.text, w.start_ms - offset, w.end_ms - offset) for w in inside] == [
            (w.text, w.start_ms, w.end_ms) for w in source.words[: len(inside)]
        ]
        n = min(source.audio.n_samples, 600_000 * 8 - offset * 8)
        assert np.array_equal(
            long.stereo_array()[offset * 8 : offset * 8 + n], source.stereo_array()[:n]
        )
    for span in long.sensitive:
        assert " ".join(long.words[i].text for i in span.word_indexes) == span.text
        assert span.start_ms == long.words[span.word_indexes[0]].start_ms


def test_samples_directory_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (samples_dir() / "scripts").is_dir()
    monkeypatch.setenv("MGSIM_SAMPLES", str(tmp_path))
    assert samples_dir() == tmp_path
    assert list_samples() == []
    make_call("only").save(tmp_path / "only.wav")
    (tmp_path / "stray.wav").write_bytes(b"")  # no sidecar: not a sample
    assert list_samples() == [tmp_path / "only.wav"]
    assert load_sample("only").call_id == "only"
    with pytest.raises(ConfigError, match="no sample call named 'nope'"):
        load_sample("nope")
    monkeypatch.setenv("MGSIM_SAMPLES", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="MGSIM_SAMPLES"):
        list_samples()
