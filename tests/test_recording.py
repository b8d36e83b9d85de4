"""A user's own recording in: every file kind, rate, depth and channel layout, and every
refusal names the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgsim.errors import ConfigError
from mgsim.sim.recording import RecordingError, load_recording

RATE = 8000


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def stereo(rate: int) -> np.ndarray:
    # Customer a 400 Hz tone on the left, agent a 1000 Hz tone on the right.
    return np.stack([tone(400, 1.0, rate), tone(1000, 1.0, rate, 0.25)], axis=1)


CASES = [
    ("wav", "PCM_16", 8000),
    ("wav", "PCM_24", 44100),
    ("wav", "PCM_32", 48000),
    ("wav", "FLOAT", 16000),
    ("wav", "FLOAT", 8000),  # float at 8 kHz: libsndfile alone would truncate it to zeros
    ("wav", "DOUBLE", 8000),
    ("wav", "ULAW", 8000),
    ("wav", "PCM_U8", 11025),
    ("flac", "PCM_16", 22050),
    ("flac", "PCM_24", 96000),
    ("ogg", "VORBIS", 32000),
]


@pytest.mark.parametrize(("ext", "subtype", "rate"), CASES)
def test_any_format_rate_and_depth_becomes_8k_stereo(
    tmp_path: Path, ext: str, subtype: str, rate: int
) -> None:
    path = tmp_path / f"call.{ext}"
    sf.write(str(path), stereo(rate), rate, subtype=subtype)
    rec = load_recording(path)
    assert rec.audio.rate == RATE
    assert abs(rec.audio.n_samples - RATE) <= 2  # one second, whatever the source rate
    assert peak_hz(rec.audio.customer) == pytest.approx(400, abs=2)
    assert peak_hz(rec.audio.agent) == pytest.approx(1000, abs=2)
    # A real resampler keeps the level: a 0.5 tone stays near 0.5 full scale (Vorbis and
    # 8-bit are lossy, hence the tolerance).
    mid = rec.audio.customer[1000:7000].astype(np.float64) / 32768
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    assert rec.source["source_rate"] == rate
    assert rec.source["customer_channel"] == 0


def test_resampling_removes_what_8k_cannot_carry(tmp_path: Path) -> None:
    # A 6 kHz tone is above 8 kHz's Nyquist limit: a naive decimation would fold it to
    # 2 kHz; a band-limited resampler removes it.
    path = tmp_path / "high.wav"
    sf.write(str(path), tone(6000, 1.0, 48000), 48000, subtype="PCM_16")
    rec = load_recording(path)
    rms = np.sqrt(np.mean((rec.audio.customer.astype(np.float64) / 32768) ** 2))
    assert rms < 0.005


def test_customer_channel_flag_swaps_the_participants(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    sf.write(str(path), stereo(RATE), RATE)
    rec = load_recording(path, customer_channel=1)
    assert peak_hz(rec.audio.customer) == pytest.approx(1000, abs=2)
    assert peak_hz(rec.audio.agent) == pytest.approx(400, abs=2)
    assert rec.source["customer_channel"] == 1


def test_two_mono_legs(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "a.wav"), tone(400, 1.0, 16000), 16000)
    sf.write(str(tmp_path / "b.flac"), tone(1000, 0.5, 44100), 44100)
    rec = load_recording(customer=tmp_path / "a.wav", agent=tmp_path / "b.flac")
    assert peak_hz(rec.audio.customer) == pytest.approx(400, abs=2)
    assert len(rec.audio.customer) == len(rec.audio.agent) == RATE
    assert not rec.audio.agent[4100:].any()  # the shorter leg is padded with silence
    assert any("differ in length" in n for n in rec.notes)
    assert rec.source["agent"].endswith("b.flac")


def test_mono_file_is_the_customer(tmp_path: Path) -> None:
    path = tmp_path / "mono.wav"
    sf.write(str(path), tone(400, 1.0, RATE), RATE)
    rec = load_recording(path)
    assert peak_hz(rec.audio.customer) == pytest.approx(400, abs=2)
    assert not rec.audio.agent.any()
    assert rec.source["mono"] is True and "mono" in rec.notes[0]


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def truncated_wav(tmp_path: Path) -> Path:
    good = tmp_path / "good.wav"
    sf.write(str(good), stereo(RATE), RATE)
    return write_bytes(tmp_path / "cut.wav", good.read_bytes()[:30])


BAD = [
    (lambda p: p / "missing.wav", "missing.wav: no such file"),
    (lambda p: p, "not a file"),
    (
        lambda p: write_bytes(p / "junk.wav", bytes(range(256)) * 4),
        "junk.wav: not a readable audio",
    ),
    (lambda p: write_bytes(p / "notes.ogg", b"just some text\n"), "notes.ogg: not a readable"),
    (lambda p: write_bytes(p / "empty.flac", b""), "empty.flac: not a readable"),
    (truncated_wav, "cut.wav: "),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_files_are_named_with_their_problem(tmp_path: Path, make: object, message: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(RecordingError, match=message) as info:
        load_recording(path)
    assert isinstance(info.value, ConfigError)  # the CLI prints it as one line, exit 2


def test_layout_refusals(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "four.wav"), np.zeros((800, 4)), RATE)
    with pytest.raises(RecordingError, match=r"four\.wav: 4 channels"):
        load_recording(tmp_path / "four.wav")
    sf.write(str(tmp_path / "zero.wav"), np.zeros((0, 2)), RATE)
    with pytest.raises(RecordingError, match=r"zero\.wav: no audio in it"):
        load_recording(tmp_path / "zero.wav")
    sf.write(str(tmp_path / "st.wav"), stereo(RATE), RATE)
    sf.write(str(tmp_path / "m.wav"), tone(400, 1, RATE), RATE)
    with pytest.raises(RecordingError, match=r"st\.wav: stereo, but a leg must be mono"):
        load_recording(customer=tmp_path / "st.wav", agent=tmp_path / "m.wav")
    with pytest.raises(RecordingError, match="the agent leg is missing"):
        load_recording(customer=tmp_path / "m.wav")
    with pytest.raises(RecordingError, match="not both"):
        load_recording(tmp_path / "st.wav", customer=tmp_path / "m.wav")
    with pytest.raises(RecordingError, match="must be 0 or 1"):
        load_recording(tmp_path / "st.wav", customer_channel=2)
