"""A user's own recording as the two 8 kHz channels a call needs.

Any file libsndfile reads (through soundfile) loads: WAV, FLAC and OGG/Vorbis are tested,
at any sample rate (resampled to 8 kHz by soxr, its high-quality setting) and any bit depth
(16/24/32-bit integer or float). The two participants come from

* a **stereo** file, the customer on channel ``customer_channel`` (0 or 1) and the agent on
  the other;
* two **mono legs**, one file per participant (``customer=`` and ``agent=``);
* a **mono** file alone, taken as the customer's channel with a silent agent channel
  (``mono`` in :attr:`Recording.notes` says so: a mixed recording puts the agent's words on
  the customer's channel too).

A file that cannot be read gets a :class:`RecordingError` naming the file and the problem
(missing, not audio, corrupt, empty, too many channels), never a traceback.

>>> rec = load_recording("sample_audio/card_payment.wav")                 # doctest: +SKIP
>>> rec.audio.rate, rec.source["customer_channel"]                       # doctest: +SKIP
(8000, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

from mgsim.errors import ConfigError
from mgsim.media._base import SAMPLE_RATE, StereoCall

__all__ = ["Recording", "RecordingError", "load_recording", "read_mono_or_stereo"]

Int16Array = npt.NDArray[np.int16]


class RecordingError(ConfigError):
    """A recording could not be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Recording:
    """Both participants at 8 kHz, and where they came from.

    ``source`` is what a sidecar's ``recording`` key stores (file names as given, channel
    choice, original rate and format), so the call can be loaded again the same way.
    """

    audio: StereoCall
    source: dict[str, Any]
    notes: tuple[str, ...] = field(default=())


def read_mono_or_stereo(path: str | Path) -> tuple[Int16Array, dict[str, Any]]:
    """``path`` as an ``(n, channels)`` int16 array at 8 kHz, plus what the file was."""
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise RecordingError(
            f"{p}: not a readable audio file ({_reason(exc)}); mgsim reads WAV, FLAC and OGG"
        ) from exc
    described = {
        "rate": int(info.samplerate),
        "channels": int(info.channels),
        "format": str(info.format),
        "subtype": str(info.subtype),
    }
    if info.channels > 2:
        raise RecordingError(
            f"{p}: {info.channels} channels; a call is mono, stereo (customer and agent) or "
            "two mono legs"
        )
    if info.samplerate <= 0:
        raise RecordingError(f"{p}: invalid sample rate {info.samplerate}")
    try:
        # libsndfile scales integer PCM to int16 exactly but truncates float samples (0.3
        # would read as 0), so only integer files at 8 kHz skip the float path.
        if info.samplerate == SAMPLE_RATE and info.subtype.startswith(("PCM_", "ULAW", "ALAW")):
            data = sf.read(str(p), dtype="int16", always_2d=True)[0]
        else:
            raw = sf.read(str(p), dtype="float32", always_2d=True)[0]
            data = _to_8k(raw, int(info.samplerate))
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise RecordingError(f"{p}: corrupt or truncated audio ({_reason(exc)})") from exc
    if not len(data):
        raise RecordingError(f"{p}: no audio in it (0 samples)")
    return np.ascontiguousarray(data), described


def _to_8k(x: npt.NDArray[np.float32], rate: int) -> Int16Array:
    import soxr

    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    y = x if rate == SAMPLE_RATE else soxr.resample(x, rate, SAMPLE_RATE, quality="HQ")
    y = np.asarray(y).reshape(len(y), -1)
    return np.clip(np.rint(y * 32768.0), -32768, 32767).astype(np.int16)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    # libsndfile prefixes its message with the path; the caller names the file already.
    for sep in (": ", "\n"):
        if sep in text and text.split(sep, 1)[0].startswith("Error opening"):
            text = text.split(sep, 1)[1]
    return text or type(exc).__name__


def load_recording(
    path: str | Path | None = None,
    *,
    customer_channel: int = 0,
    customer: str | Path | None = None,
    agent: str | Path | None = None,
) -> Recording:
    """Load a recording: one file (``path``) or two mono legs (``customer`` and ``agent``).

    See the module docstring for what each form means.
    """
    if path is not None and (customer is not None or agent is not None):
        raise RecordingError("give one recording or two mono legs (customer and agent), not both")
    if path is None:
        if customer is None or agent is None:
            missing = "agent" if agent is None else "customer"
            raise RecordingError(f"two legs need both files: the {missing} leg is missing")
        return _legs(Path(customer), Path(agent))
    if customer_channel not in (0, 1):
        raise RecordingError(f"customer channel must be 0 or 1, got {customer_channel}")
    data, info = read_mono_or_stereo(path)
    source = {"customer": str(path), "customer_channel": customer_channel, **_orig(info)}
    if data.shape[1] == 1:
        mono = data[:, 0].copy()
        note = f"{path}: mono, taken as the customer's channel; the agent's is silent"
        return Recording(StereoCall(mono, np.zeros_like(mono)), {**source, "mono": True}, (note,))
    return Recording(
        StereoCall(
            np.ascontiguousarray(data[:, customer_channel]),
            np.ascontiguousarray(data[:, 1 - customer_channel]),
        ),
        source,
    )


def _orig(info: dict[str, Any]) -> dict[str, Any]:
    return {"source_rate": info["rate"], "format": f"{info['format']}/{info['subtype']}"}


def _legs(customer: Path, agent: Path) -> Recording:
    legs = {}
    notes = []
    for role, p in (("customer", customer), ("agent", agent)):
        data, info = read_mono_or_stereo(p)
        if data.shape[1] != 1:
            raise RecordingError(
                f"{p}: stereo, but a leg must be mono (give a stereo file alone, choosing "
                "the customer's channel)"
            )
        legs[role] = (data[:, 0], info)
    n_c, n_a = len(legs["customer"][0]), len(legs["agent"][0])
    n = max(n_c, n_a)
    if n_c != n_a:
        # Legs recorded separately rarely end on the same sample; both start at 0.
        notes.append(
            f"legs differ in length ({n_c / SAMPLE_RATE:.2f} s and {n_a / SAMPLE_RATE:.2f} s); "
            "the shorter is padded with silence"
        )
    audio = {r: np.pad(x, (0, n - len(x))) for r, (x, _) in legs.items()}
    source = {
        "customer": str(customer),
        "agent": str(agent),
        "source_rate": {r: info["rate"] for r, (_, info) in legs.items()},
        "format": {r: f"{info['format']}/{info['subtype']}" for r, (_, info) in legs.items()},
    }
    return Recording(StereoCall(audio["customer"], audio["agent"]), source, tuple(notes))
