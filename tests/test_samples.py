"""The committed sample calls: schema, timings against the audio, and what each must contain."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path
from types import ModuleType

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from mgsim.errors import ConfigError
from mgsim.media.g711 import ulaw_decode
from mgsim.sim.call import SIDECAR_SCHEMA, Call, list_samples, samples_dir
from mgsim.sim.script import LABELS, load_script
from mgsim.sim.sidecar_check import frame_levels
from mgsim.sim.synth import VOICES

ROOT = samples_dir()
SCRIPTS = sorted((ROOT / "scripts").glob("*.txt"))
NAMES = [p.stem for p in SCRIPTS]
NATURAL = ["natural_card_payment", "natural_identity_check"]
DIGITS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


def digits(text: str) -> str:
    return "".join(DIGITS[w] for w in text.split())


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@pytest.fixture(scope="module", params=NAMES)
def sample(request: pytest.FixtureRequest) -> Call:
    return Call.load(ROOT / f"{request.param}.wav")


def test_there_are_at_least_five_samples_one_per_script() -> None:
    assert len(NAMES) >= 5
    assert [p.stem for p in list_samples()] == NAMES


def test_committed_files_fit_the_budget() -> None:
    total = sum(p.stat().st_size for p in ROOT.iterdir() if p.suffix in (".wav", ".json"))
    assert total < 12_000_000


@pytest.mark.parametrize("name", NAMES)
def test_audio_format(name: str) -> None:
    info = sf.info(str(ROOT / f"{name}.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "PCM_16")
    assert 40 <= info.duration <= 90


@pytest.mark.parametrize("name", NAMES)
def test_sidecar_schema(name: str) -> None:
    sidecar = json.loads((ROOT / f"{name}.json").read_text(encoding="utf-8"))
    jsonschema.validate(sidecar, SIDECAR_SCHEMA)
    assert sidecar["call_id"] == name
    assert sidecar["rate"] == 8000
    assert sidecar["channels"] == {"customer": 0, "agent": 1}
    if name in NATURAL:
        assert sidecar["voice"] == "piper en_US-joe-medium"
        assert sidecar["generator"]["piper_tts"] == "1.8.0"
    else:
        assert "voice" not in sidecar  # no voice field: espeak-ng's formant voices
        assert sidecar["generator"]["espeak_ng"]
    assert {w["voice"] for w in sidecar["words"]} <= set(VOICES)
    assert {s["label"] for s in sidecar["sensitive"]} <= set(LABELS)
    info = sf.info(str(ROOT / f"{name}.wav"))
    assert sidecar["duration_ms"] == info.frames // 8


def test_timings_agree_with_the_audio_within_50_ms(sample: Call) -> None:
    assert sample.timing_problems(threshold_dbfs=-50.0, tolerance_ms=50) == []


def test_words_are_ordered_and_inside_the_call(sample: Call) -> None:
    for a, b in itertools.pairwise(sample.words):
        assert a.start_ms < a.end_ms <= b.start_ms
    assert all(w.speaker == "agent" for w in sample.words if w.voice in ("agent", "agent2", "ivr"))
    assert all(w.speaker == "customer" for w in sample.words if w.voice == "customer")
    assert sample.words[-1].end_ms < sample.duration_ms
    for seg in sample.segments:
        assert 0 <= seg.start_ms < seg.end_ms <= sample.duration_ms


def test_words_and_spans_match_the_script(sample: Call) -> None:
    script = load_script(ROOT / "scripts" / f"{sample.call_id}.txt")
    assert (sample.title, sample.direction) == (script.title, script.direction)
    expected_words = [(t.speaker, t.voice, tok.text) for t in script.turns for tok in t.tokens]
    assert [(w.speaker, w.voice, w.text) for w in sample.words] == expected_words
    expected_spans = []
    for turn in script.turns:
        for span in turn.spans:
            words = [tok.text for tok in turn.tokens[span.first : span.last + 1]]
            expected_spans.append((span.label, turn.speaker, " ".join(words)))
    assert [(s.label, s.speaker, s.text) for s in sample.sensitive] == expected_spans


def test_sensitive_spans_cover_exactly_their_words(sample: Call) -> None:
    for span in sample.sensitive:
        idx = list(span.word_indexes)
        assert idx == list(range(idx[0], idx[-1] + 1))
        words = [sample.words[i] for i in idx]
        assert " ".join(w.text for w in words) == span.text
        assert {w.speaker for w in words} == {span.speaker}
        assert (span.start_ms, span.end_ms) == (words[0].start_ms, words[-1].end_ms)
        # No word outside the span falls inside its time range.
        inside = [
            i
            for i, w in enumerate(sample.words)
            if w.end_ms > span.start_ms and w.start_ms < span.end_ms
        ]
        assert inside == idx


@pytest.mark.parametrize("name", NATURAL)
def test_natural_voice_samples_crossed_a_telephone_line(name: str) -> None:
    call = _load(name)
    assert set(_make_samples().NATURAL_VOICE) == set(NATURAL)
    codes = set(ulaw_decode(bytes(range(256))).tolist())
    for pcm in (call.audio.customer, call.audio.agent):
        # Every sample is a G.711 µ-law level: the audio went through the codec.
        assert set(np.unique(pcm).tolist()) <= codes
        power = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
        band = power[(freqs >= 300) & (freqs <= 3400)].mean()
        # Outside the voice band only µ-law quantisation noise is left.
        assert power[(freqs > 20) & (freqs < 150)].mean() < band / 1000
        assert power[freqs > 3700].mean() < band / 1000
    # The customer is on the noisier line (-57 dBFS against -62 dBFS).
    floors = [np.percentile(frame_levels(p), 10) for p in (call.audio.customer, call.audio.agent)]
    assert floors[0] > floors[1] + 3


def test_natural_card_payment_reads_a_valid_card_in_groups() -> None:
    call = _load("natural_card_payment")
    (card,) = _spans(call, "card_number")
    assert len(digits(card)) == 16 and luhn_ok(digits(card))
    assert [len(digits(s)) for s in _spans(call, "cvv")] == [3]
    assert _spans(call, "expiry") == ["eleven twenty nine"]
    script = (ROOT / "scripts" / "natural_card_payment.txt").read_text(encoding="utf-8")
    assert "five four one two, seven five three four, one two nine eight, six six zero one" in (
        script
    )


def test_natural_identity_check_has_ssn_and_phone() -> None:
    call = _load("natural_identity_check")
    (ssn,) = _spans(call, "ssn")
    (phone,) = _spans(call, "phone")
    assert len(digits(ssn)) == 9 and len(digits(phone)) == 10
    assert digits(ssn).startswith("9")  # 9xx is never issued as an SSN


def _spans(call: Call, label: str) -> list[str]:
    return [s.text for s in call.sensitive if s.label == label]


def _load(name: str) -> Call:
    return Call.load(ROOT / f"{name}.wav")


@pytest.mark.parametrize("name", ["card_payment", "transfer_payment"])
def test_card_payments_read_a_valid_card(name: str) -> None:
    call = _load(name)
    (card,) = _spans(call, "card_number")
    number = digits(card)
    assert len(number) == 16 and luhn_ok(number)
    (cvv,) = _spans(call, "cvv")
    assert len(digits(cvv)) == 3
    (expiry,) = _spans(call, "expiry")
    assert 2 <= len(expiry.split()) <= 4
    assert all(s.speaker == "customer" for s in call.sensitive)


def test_account_verification_has_ssn_and_phone() -> None:
    call = _load("account_verification")
    (ssn,) = _spans(call, "ssn")
    (phone,) = _spans(call, "phone")
    assert len(digits(ssn)) == 9 and len(digits(phone)) == 10


def test_ivr_hold_and_silence_come_before_the_agent() -> None:
    call = _load("ivr_hold")
    kinds = [s.kind for s in call.segments]
    first_speech = kinds.index("speech")
    assert {"ivr", "hold", "silence"} <= set(kinds[:first_speech])
    assert call.sensitive == ()
    assert {w.voice for w in call.words if w.start_ms < call.segments[first_speech].start_ms} == {
        "ivr"
    }


def test_outbound_call_starts_with_the_agent() -> None:
    call = _load("outbound_fraud_alert")
    assert call.direction == "outbound"
    assert call.words[0].speaker == "agent"
    assert _spans(call, "phone")


def test_transfer_hands_over_to_agent2_who_takes_the_payment() -> None:
    call = _load("transfer_payment")
    (transfer,) = [s for s in call.segments if s.kind == "transfer"]
    assert transfer.voice == "agent2"
    agent_voices_before = {w.voice for w in call.words if w.end_ms <= transfer.start_ms}
    agent_voices_after = {w.voice for w in call.words if w.start_ms >= transfer.end_ms}
    assert agent_voices_before == {"agent", "customer"}
    assert agent_voices_after == {"agent2", "customer"}
    assert all(s.start_ms > transfer.end_ms for s in call.sensitive)


def _make_samples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "make_samples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_samples_check_passes(capsys: pytest.CaptureFixture[str]) -> None:
    # Compares every sidecar with its script; re-synthesises only with the recorded espeak-ng.
    assert _make_samples().main(["--check", "ivr_hold"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok   ivr_hold")


def test_make_samples_check_catches_a_drifted_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _make_samples()
    for suffix in (".wav", ".json"):
        (tmp_path / f"ivr_hold{suffix}").write_bytes((ROOT / f"ivr_hold{suffix}").read_bytes())
    (tmp_path / "scripts").mkdir()
    script = (ROOT / "scripts" / "ivr_hold.txt").read_text(encoding="utf-8")
    (tmp_path / "scripts" / "ivr_hold.txt").write_text(
        script.replace("paperless", "electronic"), encoding="utf-8"
    )
    monkeypatch.setattr(module, "HERE", tmp_path)
    monkeypatch.setattr(module, "SCRIPTS", tmp_path / "scripts")
    assert module.main(["--check"]) == 1
    assert "FAIL ivr_hold: sidecar words/spans/segments differ" in capsys.readouterr().out


def test_make_samples_check_compares_a_natural_voice_sample(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # With the recorded piper-tts, onnxruntime and voice installed (make setup installs the
    # samples extra) the call is synthesised again and must match; otherwise it says why not.
    module = _make_samples()
    assert module.main(["--check", "natural_identity_check"]) == 0
    out = capsys.readouterr().out
    if module.natural_versions() is None:
        pytest.skip("piper-tts is not installed (pip install -e '.[samples]'): " + out)
    assert out.startswith("ok   natural_identity_check: ")
    assert "audio not compared" in out or "synthesis" in out


def test_make_samples_check_catches_drifted_natural_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _make_samples()
    if module.natural_versions() is None:
        pytest.skip("piper-tts is not installed (pip install -e '.[samples]')")
    name = "natural_identity_check"
    call = _load(name)
    if module.natural_versions() != {
        k: call.meta["generator"][k] for k in ("piper_tts", "onnxruntime", "voice_package")
    }:
        pytest.skip("installed piper-tts/onnxruntime/voice differ from the recorded ones")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / f"{name}.txt").write_bytes(
        (ROOT / "scripts" / f"{name}.txt").read_bytes()
    )
    stereo = call.stereo_array().copy()
    stereo[8000:16000] //= 4  # a second of quieter line noise: the timings still fit
    sf.write(str(tmp_path / f"{name}.wav"), stereo, 8000, subtype="PCM_16")
    (tmp_path / f"{name}.json").write_bytes((ROOT / f"{name}.json").read_bytes())
    monkeypatch.setattr(module, "HERE", tmp_path)
    monkeypatch.setattr(module, "SCRIPTS", tmp_path / "scripts")
    assert module.main(["--check"]) == 1
    assert f"FAIL {name}: regenerated audio differs" in capsys.readouterr().out


def test_sidecar_voice_field_is_kept_and_must_be_text() -> None:
    call = _load("natural_card_payment")
    assert call.meta["voice"] == "piper en_US-joe-medium"
    assert "voice" not in _load("card_payment").meta
    sidecar = json.loads((ROOT / "natural_card_payment.json").read_text(encoding="utf-8"))
    for bad in (5, ""):
        with pytest.raises(ConfigError, match="invalid sidecar"):
            Call.from_sidecar({**sidecar, "voice": bad}, call.audio)
