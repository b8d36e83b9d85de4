"""Does a sidecar belong to its audio? The checks :meth:`mgsim.sim.call.Call.load` makes.

A sidecar that describes other audio would make every verdict wrong: the guard would stop
streaming around spans that are not there and the leak analysis would find nothing to leak
(a 10 s recording with the 52 s card-payment sidecar read "no card data visible"). So a call
is refused with :class:`SidecarMismatch` when

* ``duration_ms`` differs from the audio's length by more than ``DURATION_TOLERANCE_MS``;
* a word, sensitive span or segment ends past the end of the audio;
* a word lies where its speaker's channel is silent (**silence where it has words**), or
* a channel has speech-level sound for at least ``MIN_SOUND_MS`` where the sidecar has no
  word, no IVR, hold, transfer or ``sound`` segment (**speech where it has silence**).

Loudness is judged on 10 ms frames relative to each channel's own noise floor (its 10th
percentile frame level), so a noisy real line and the samples' -60 dBFS line noise are judged
alike: sound is at least ``SOUND_ABOVE_FLOOR_DB`` above the floor and at least
``SOUND_MIN_DBFS`` (-50 dBFS; a recording with stretches of digital silence would otherwise
hear its line noise as sound). Word times are allowed ``WORD_TOLERANCE_MS`` either way (a
recognizer's times are not exact).
These are consistency checks, not proof: a sidecar whose words were edited to other words at
the same times passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from mgsim.errors import ConfigError

if TYPE_CHECKING:
    from mgsim.sim.call import Call

__all__ = [
    "DURATION_TOLERANCE_MS",
    "MIN_SOUND_MS",
    "SidecarMismatch",
    "frame_levels",
    "sidecar_problems",
    "silent_words",
    "sound_frames",
    "unexplained_sound",
]

DURATION_TOLERANCE_MS = 100
WORD_TOLERANCE_MS = 250
MIN_SOUND_MS = 500
SOUND_ABOVE_FLOOR_DB = 12.0
SOUND_MIN_DBFS = -50.0
_FRAME_MS = 10
_FRAME = 8 * _FRAME_MS
_ALLOWED_SEGMENTS = ("ivr", "hold", "transfer", "sound")


class SidecarMismatch(ConfigError):
    """The sidecar does not describe this audio; the message says how."""


def frame_levels(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Level of each whole 10 ms frame in dBFS."""
    n = len(pcm) // _FRAME
    x = pcm[: n * _FRAME].astype(np.float64).reshape(n, _FRAME) / 32768.0
    levels: npt.NDArray[np.float64] = 20 * np.log10(np.sqrt(np.mean(x**2, axis=1)) + 1e-9)
    return levels


def sound_frames(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """Per 10 ms frame: True where the channel has sound above its own noise floor."""
    levels = frame_levels(pcm)
    if not len(levels):
        return np.zeros(0, dtype=bool)
    floor = float(np.percentile(levels, 10))
    out: npt.NDArray[np.bool_] = levels > max(floor + SOUND_ABOVE_FLOOR_DB, SOUND_MIN_DBFS)
    return out


def _runs(flags: npt.NDArray[np.bool_], bridge: int) -> list[tuple[int, int, int]]:
    """(first, last + 1, frames set) of runs of set frames, bridging gaps up to ``bridge``."""
    idx = np.flatnonzero(flags)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > bridge + 1)
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [len(idx) - 1]])
    return [
        (int(idx[a]), int(idx[b]) + 1, int(b - a + 1)) for a, b in zip(firsts, lasts, strict=True)
    ]


def sidecar_problems(call: Call, *, stated_duration_ms: float | None = None) -> list[str]:
    """Every way the sidecar of ``call`` disagrees with its audio (empty when it fits);
    ``stated_duration_ms`` is the sidecar's ``duration_ms``."""
    audio_ms = call.audio.n_samples / 8
    stated = stated_duration_ms
    problems: list[str] = []
    if stated is not None and abs(stated - audio_ms) > DURATION_TOLERANCE_MS:
        problems.append(
            f"durations differ: the sidecar says {stated / 1000:.2f} s, the audio is "
            f"{audio_ms / 1000:.2f} s"
        )
    limit = audio_ms + DURATION_TOLERANCE_MS
    late = [w for w in call.words if w.end_ms > limit]
    if late:
        w = late[0]
        problems.append(
            f"{len(late)} words past the end of the audio ({audio_ms / 1000:.2f} s), the first "
            f"{w.text!r} at {w.start_ms / 1000:.2f} s"
        )
    for s in call.sensitive:
        if s.end_ms > limit:
            problems.append(f"sensitive span {s.label!r} ends past the end of the audio")
            break
    for seg in call.segments:
        if seg.end_ms > limit:
            problems.append(f"{seg.kind} segment ends past the end of the audio")
            break
    if problems:
        return problems  # energy checks on the wrong audio would only repeat the news
    for role, pcm in (("customer", call.audio.customer), ("agent", call.audio.agent)):
        problems += _channel_problems(call, role, pcm)
    return problems


def _channel_problems(call: Call, role: str, pcm: npt.NDArray[np.int16]) -> list[str]:
    sound = sound_frames(pcm)
    n = len(sound)
    allowed = np.zeros(n, dtype=bool)
    tol = WORD_TOLERANCE_MS // _FRAME_MS
    words = [w for w in call.words if w.speaker == role]
    silent = []
    for w in words:
        lo = max(0, int(w.start_ms) // _FRAME_MS - tol)
        hi = min(n, -(-int(w.end_ms) // _FRAME_MS) + tol)
        allowed[lo:hi] = True
        if hi > lo and not sound[lo:hi].any():
            silent.append(w)
    for seg in call.segments:
        # IVR, hold music and ringback are on the agent channel; a sound segment names its own.
        on = seg.speaker == role if seg.kind == "sound" else role == "agent"
        if on and seg.kind in _ALLOWED_SEGMENTS:
            allowed[int(seg.start_ms) // _FRAME_MS : -(-int(seg.end_ms) // _FRAME_MS)] = True
    problems = []
    if silent:
        w = silent[0]
        problems.append(
            f"silence where the sidecar has words: {len(silent)} of {len(words)} {role} words "
            f"lie where the {role} channel is silent, the first {w.text!r} at "
            f"{w.start_ms / 1000:.2f} s"
        )
    stray = [r for r in _runs(sound & ~allowed, 30) if r[2] * _FRAME_MS >= MIN_SOUND_MS]
    if stray:
        first, last, _ = stray[0]
        total = sum(r[2] for r in stray) * _FRAME_MS
        problems.append(
            f"speech where the sidecar has silence: the {role} channel has sound for "
            f"{total / 1000:.1f} s outside any word, the first from {first / 100:.2f} s to "
            f"{last / 100:.2f} s"
        )
    return problems


def silent_words(call: Call) -> list[int]:
    """Indexes of the words that lie where their speaker's channel is silent (what
    :func:`mgsim.sim.annotate.annotate` drops: a recognizer's words with no audio under them)."""
    out = []
    for role, pcm in (("customer", call.audio.customer), ("agent", call.audio.agent)):
        sound = sound_frames(pcm)
        n, tol = len(sound), WORD_TOLERANCE_MS // _FRAME_MS
        for i, w in enumerate(call.words):
            if w.speaker == role:
                lo = max(0, int(w.start_ms) // _FRAME_MS - tol)
                hi = min(n, -(-int(w.end_ms) // _FRAME_MS) + tol)
                if hi > lo and not sound[lo:hi].any():
                    out.append(i)
    return sorted(out)


def unexplained_sound(call: Call, role: str) -> list[tuple[float, float]]:
    """Stretches (ms) of ``role``'s channel with sound the sidecar does not explain; what
    :func:`mgsim.sim.annotate.annotate` marks as ``sound`` segments."""
    pcm = call.audio.customer if role == "customer" else call.audio.agent
    sound = sound_frames(pcm)
    allowed = np.zeros(len(sound), dtype=bool)
    tol = WORD_TOLERANCE_MS // _FRAME_MS
    for w in call.words:
        if w.speaker == role:
            lo = max(0, int(w.start_ms) // _FRAME_MS - tol)
            allowed[lo : -(-int(w.end_ms) // _FRAME_MS) + tol] = True
    return [
        (float(a * _FRAME_MS), float(b * _FRAME_MS))
        for a, b, frames in _runs(sound & ~allowed, 30)
        if frames * _FRAME_MS >= MIN_SOUND_MS // 2
    ]
