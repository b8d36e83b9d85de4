"""A sidecar that does not describe its audio is refused, each way it can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgsim import cli
from mgsim.sim.call import Call, list_samples, load_sample
from mgsim.sim.sidecar_check import SidecarMismatch, sidecar_problems

SAMPLES = Path(__file__).resolve().parents[1] / "sample_audio"


@pytest.mark.parametrize("path", list_samples(), ids=lambda p: p.stem)
def test_every_sample_fits_its_sidecar(path: Path) -> None:
    call = Call.load(path)
    assert sidecar_problems(call, stated_duration_ms=call.duration_ms) == []


def copy_card(tmp_path: Path) -> tuple[Path, np.ndarray, dict]:  # type: ignore[type-arg]
    wav = tmp_path / "card.wav"
    shutil.copy(SAMPLES / "card_payment.json", tmp_path / "card.json")
    stereo = load_sample("card_payment").stereo_array()
    return wav, stereo, json.loads((tmp_path / "card.json").read_text())


def test_the_issue_case_a_short_wav_with_the_card_sidecar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wav, stereo, _ = copy_card(tmp_path)
    sf.write(str(wav), stereo[: 10 * 8000], 8000, subtype="PCM_16")
    with pytest.raises(SidecarMismatch, match=r"durations differ: the sidecar says 51\.75 s"):
        Call.load(wav)
    # From the CLI: one line, exit 2, no verdict (it used to say "no card data visible").
    code = cli.main(["call", "--namespace", "twilio", "--audio", str(wav)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("mgsim: ") and err.count("\n") == 1
    assert "words past the end of the audio (10.00 s)" in err


def test_words_past_the_end(tmp_path: Path) -> None:
    wav, stereo, data = copy_card(tmp_path)
    sf.write(str(wav), stereo[: 40 * 8000], 8000)
    data["duration_ms"] = 40_000  # the duration was edited to fit, the words were not
    (tmp_path / "card.json").write_text(json.dumps(data))
    with pytest.raises(SidecarMismatch, match=r"words past the end of the audio \(40\.00 s\)"):
        Call.load(wav)


def test_silence_where_the_sidecar_has_words(tmp_path: Path) -> None:
    wav, stereo, _ = copy_card(tmp_path)
    quiet = stereo.copy()
    quiet[20_000 * 8 : 27_000 * 8, 0] = np.random.default_rng(0).integers(-8, 8, 7000 * 8)
    sf.write(str(wav), quiet, 8000)
    silent = r"silence where the sidecar has words: 1[67] of 62 customer words"
    with pytest.raises(SidecarMismatch, match=silent):
        Call.load(wav)


def test_speech_where_the_sidecar_has_silence(tmp_path: Path) -> None:
    wav, stereo, data = copy_card(tmp_path)
    sf.write(str(wav), stereo, 8000)
    # Drop the customer's words of the card number (and the spans that point at them).
    kept = [
        w
        for w in data["words"]
        if not (w["speaker"] == "customer" and 20_000 < w["start_ms"] < 27_000)
    ]
    data["words"] = kept
    data["sensitive"] = []
    (tmp_path / "card.json").write_text(json.dumps(data))
    with pytest.raises(
        SidecarMismatch, match="speech where the sidecar has silence: the customer channel"
    ):
        Call.load(wav)
    assert Call.load(wav, check=False).words  # the checks can be skipped on purpose


def test_sound_segments_explain_sound_without_words(tmp_path: Path) -> None:
    wav, stereo, data = copy_card(tmp_path)
    sf.write(str(wav), stereo, 8000)
    data["words"] = [
        w
        for w in data["words"]
        if not (w["speaker"] == "customer" and 20_000 < w["start_ms"] < 27_000)
    ]
    data["sensitive"] = []
    data["segments"].append(
        {"kind": "sound", "start_ms": 20_000, "end_ms": 27_000, "speaker": "customer"}
    )
    (tmp_path / "card.json").write_text(json.dumps(data))
    assert Call.load(wav).segments[-1].kind == "sound"


def test_a_sidecar_that_is_not_json(tmp_path: Path) -> None:
    wav, stereo, _ = copy_card(tmp_path)
    sf.write(str(wav), stereo, 8000)
    (tmp_path / "card.json").write_text("{ not json")
    with pytest.raises(Exception, match=r"card\.json: not valid JSON"):
        Call.load(wav)
    (tmp_path / "card.json").write_bytes(
        b"\xef\xbb\xbf" + (SAMPLES / "card_payment.json").read_bytes()
    )
    assert Call.load(wav).call_id == "card_payment"  # a byte-order mark is fine
