"""Synthesis of a stereo call and its sidecar from a :mod:`call script <mgsim.sim.script>`.

Speech comes from the ``espeak-ng`` program (run as a subprocess), one run per turn with a
long word gap (``-g``) so each word comes out separated by silence while keeping the turn's
intonation. The words are cut apart by energy, resampled to 8 kHz and laid out again with
short natural gaps, so every word's start and end are known to the millisecond. IVR prompts,
hold music (seeded chords or beeps) and ringback go on the agent channel; seeded line noise
at about -60 dBFS goes on both. The same script and the same espeak-ng version always give
the same samples.

>>> call = synthesize(parse_script("agent: Hello there."))    # doctest: +SKIP
>>> [(w.text, w.start_ms) for w in call.words]                 # doctest: +SKIP
[('Hello', 400), ('there', 812)]
"""

from __future__ import annotations

import html
import shutil
import struct
import subprocess
from dataclasses import dataclass
from math import ceil, gcd
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mgsim.errors import MgsimError
from mgsim.media._base import SAMPLE_RATE, StereoCall
from mgsim.sim.call import Call, Segment, SensitiveSpan, Word
from mgsim.sim.script import Hold, Script, Silence, Token, Transfer, Turn, load_script

__all__ = [
    "ESPEAK_TIMEOUT_S",
    "VOICES",
    "SynthError",
    "Voice",
    "espeak_version",
    "resample_poly",
    "synthesize",
    "synthesize_file",
]

FloatArray = npt.NDArray[np.float64]

ESPEAK = "espeak-ng"
ESPEAK_TIMEOUT_S = 60.0
"""Longest one espeak-ng run may take (a turn takes well under a second); past it, the run
is stopped and synthesis fails with :class:`SynthError`."""
_MS = SAMPLE_RATE // 1000  # samples per millisecond
_FRAME = 5 * _MS  # energy frames of 5 ms
_TRIM_DBFS = -45.0  # a word starts/ends where its 5 ms energy crosses this (noise is -60)
_SPLIT_GAP_MS = 200  # quiet runs at least this long separate words (stop closures are shorter)
_WORD_GAP = 40  # espeak -g, in 10 ms units: gaps far longer than _SPLIT_GAP_MS
_SPEECH_PEAK = 0.5  # each turn is scaled to this peak (-6 dBFS)
_NOISE_DBFS = -60.0
_FADE_MS = 2
_LEAD_MS, _TAIL_MS = 400, 600
_DIRECTIVE_GAP_MS = 300


class SynthError(MgsimError):
    """espeak-ng is missing or failed, or its output could not be used."""


@dataclass(frozen=True, slots=True)
class Voice:
    """An espeak-ng voice (``voice+variant``), its speed (words/min) and pitch (0-99)."""

    name: str
    espeak: str
    speed: int
    pitch: int

    def describe(self) -> str:
        return f"{self.espeak} -s {self.speed} -p {self.pitch}"


VOICES: dict[str, Voice] = {
    "customer": Voice("customer", "en-us+f3", 165, 62),
    "agent": Voice("agent", "en+m3", 185, 40),
    "agent2": Voice("agent2", "en-gb-x-rp+m7", 178, 28),
    "ivr": Voice("ivr", "en-us+f4", 172, 50),
}
"""Voices by role: the customer slower and higher, two agents, a recorded-prompt IVR."""


def espeak_version(binary: str = ESPEAK) -> str | None:
    """The installed espeak-ng version (``"1.51"``), or None when it is not installed."""
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=ESPEAK_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise SynthError(f"{binary} --version did not answer within {exc.timeout:g} s") from None
    for word in out.stdout.replace(":", " ").split():
        if word[:1].isdigit():
            return word
    return out.stdout.strip() or None


def synthesize_file(path: str | Path, *, binary: str = ESPEAK) -> Call:
    """Parse a script file and synthesise it."""
    return synthesize(load_script(path), binary=binary)


def synthesize(script: Script, *, binary: str = ESPEAK) -> Call:
    """Synthesise ``script`` into a :class:`~mgsim.sim.call.Call` (audio plus sidecar data).

    Raises :class:`SynthError` when espeak-ng is not installed or fails.
    """
    version = espeak_version(binary)
    if version is None:
        raise SynthError(f"{binary} is not installed (apt-get install espeak-ng)")
    return _Builder(script, binary, version).build()


class _Builder:
    def __init__(self, script: Script, binary: str, version: str) -> None:
        self.script = script
        self.binary = binary
        self.version = version
        self.layout_rng = np.random.default_rng([script.seed, 1])
        self.cursor = _LEAD_MS  # ms; everything starts on a whole millisecond
        self.placed: list[tuple[int, int, FloatArray]] = []  # (channel, start sample, audio)
        self.words: list[Word] = []
        self.spans: list[SensitiveSpan] = []
        self.segments: list[Segment] = []

    def build(self) -> Call:
        previous: Turn | Hold | Silence | Transfer | None = None
        for index, event in enumerate(self.script.events):
            if previous is not None:
                self.cursor += self.gap_before(previous, event)
            if isinstance(event, Turn):
                self.turn(event)
            elif isinstance(event, Hold):
                rng = np.random.default_rng([self.script.seed, 2, index])
                n = event.duration_ms * _MS
                audio = _hold_music(n, rng) if event.style == "music" else _hold_beeps(n)
                self.directive("hold", event.duration_ms, audio, style=event.style)
            elif isinstance(event, Silence):
                self.directive("silence", event.duration_ms, None)
            else:
                audio = _ringback(event.duration_ms * _MS)
                self.directive("transfer", event.duration_ms, audio, voice=event.to_voice)
            previous = event
        return self.finish()

    def gap_before(self, previous: Turn | Hold | Silence | Transfer, event: object) -> int:
        if not (isinstance(previous, Turn) and isinstance(event, Turn)):
            return _DIRECTIVE_GAP_MS
        low, high = (200, 400) if previous.speaker == event.speaker else (300, 650)
        return int(self.layout_rng.integers(low, high + 1))

    def directive(self, kind: str, ms: int, audio: FloatArray | None, **labels: str) -> None:
        start = self.cursor
        if audio is not None:
            self.placed.append((1, start * _MS, audio))  # the agent channel
        self.cursor = start + ms
        self.segments.append(Segment(kind, start, self.cursor, **labels))

    def turn(self, turn: Turn) -> None:
        voice = VOICES[turn.voice]
        pieces = self.speak(turn.tokens, voice)
        channel = 0 if turn.speaker == "customer" else 1
        base = len(self.words)
        start_ms = self.cursor
        for i, (token, audio) in enumerate(zip(turn.tokens, pieces, strict=True)):
            if i:
                self.cursor += self.word_gap(turn.tokens[i - 1])
            begin = self.cursor
            end = begin + -(-len(audio) // _MS)
            self.placed.append((channel, begin * _MS, audio))
            self.words.append(Word(turn.speaker, turn.voice, token.text, begin, end))
            self.cursor = end
        self.add_spans(turn, base)
        kind = "ivr" if turn.kind == "ivr" else "speech"
        self.segments.append(
            Segment(kind, start_ms, self.cursor, speaker=turn.speaker, voice=turn.voice)
        )

    def add_spans(self, turn: Turn, base: int) -> None:
        """The turn's sensitive spans over its words, which start at ``self.words[base]``."""
        for span in turn.spans:
            idx = tuple(range(base + span.first, base + span.last + 1))
            text = " ".join(self.words[i].text for i in idx)
            first, last = self.words[idx[0]], self.words[idx[-1]]
            self.spans.append(
                SensitiveSpan(span.label, turn.speaker, text, first.start_ms, last.end_ms, idx)
            )

    def word_gap(self, previous: Token) -> int:
        if any(c in previous.after for c in ".?!"):
            low, high = 260, 360
        elif any(c in previous.after for c in ",;:—–-"):
            low, high = 140, 220
        else:
            low, high = 15, 45
        return int(self.layout_rng.integers(low, high + 1))

    def speak(self, tokens: tuple[Token, ...], voice: Voice) -> list[FloatArray]:
        """One audio piece per token, scaled for the turn and trimmed to its speech.

        The whole turn is spoken once with a long word gap, which keeps its intonation. espeak
        glues some unstressed words to the next one even then ("the front"), so those groups
        are taken from a second rendering with an explicit break after every word.
        """
        text = " ".join(t.spoken for t in tokens)
        gapped = _normalised([_run_espeak(self.binary, text, voice, word_gap=_WORD_GAP)])[0]
        runs = _word_runs(gapped)
        if len(runs) == len(tokens):
            return [_fade(gapped[s:e]) for s, e in runs]
        ssml = ' <break time="400ms"/> '.join(html.escape(t.spoken, quote=False) for t in tokens)
        broken = _normalised([_run_espeak(self.binary, ssml, voice, word_gap=0, ssml=True)])[0]
        single = _word_runs(broken)
        if len(single) != len(tokens):
            return [_fade(p) for p in self.speak_alone(tokens, voice)]
        groups = _group_runs([e - s for s, e in runs], [e - s for s, e in single])
        if groups is None:
            return [_fade(broken[s:e]) for s, e in single]
        pieces: list[FloatArray] = []
        for (s, e), size in zip(runs, groups, strict=True):
            if size == 1:
                pieces.append(gapped[s:e])
            else:
                pieces += [broken[a:b] for a, b in single[len(pieces) : len(pieces) + size]]
        return [_fade(p) for p in pieces]

    def speak_alone(self, tokens: tuple[Token, ...], voice: Voice) -> list[FloatArray]:
        """Each token spoken on its own: espeak read some token as several words (hyphens,
        abbreviations), and this always gives one piece per token."""
        alone = _normalised([_run_espeak(self.binary, t.spoken, voice, word_gap=0) for t in tokens])
        pieces = []
        for token, piece in zip(tokens, alone, strict=True):
            runs = _word_runs(piece)
            if not runs:
                raise SynthError(f"espeak-ng spoke {token.text!r} too quietly to place it")
            pieces.append(piece[runs[0][0] : runs[-1][1]])
        return pieces

    def finish(self) -> Call:
        total_ms = self.cursor + _TAIL_MS
        n = total_ms * _MS
        mix = np.zeros((2, n), dtype=np.float64)
        for channel, start, audio in self.placed:
            mix[channel, start : start + len(audio)] += audio
        noise_rng = np.random.default_rng([self.script.seed, 3])
        mix += noise_rng.normal(0.0, 10 ** (_NOISE_DBFS / 20), size=mix.shape)
        pcm = np.clip(np.round(mix * 32767.0), -32768, 32767).astype(np.int16)
        stereo = StereoCall(pcm[0].copy(), pcm[1].copy())
        generator: dict[str, Any] = {
            "espeak_ng": self.version,
            "tool": "mgsim.sim.synth",
            "seed": self.script.seed,
            "voices": {name: v.describe() for name, v in VOICES.items()},
        }
        if self.script.source != "<script>":
            generator["script"] = self.script.source
        meta = {
            "title": self.script.title,
            "direction": self.script.direction,
            "generator": generator,
        }
        return Call(
            self.script.call_id,
            stereo,
            tuple(self.words),
            tuple(self.spans),
            tuple(self.segments),
            meta,
        )


# -- espeak-ng -------------------------------------------------------------------------------


def _run_espeak(
    binary: str, text: str, voice: Voice, *, word_gap: int, ssml: bool = False
) -> FloatArray:
    """Speak ``text`` and return it at 8 kHz as floats in [-1, 1]."""
    cmd = [binary, "-v", voice.espeak, "-s", str(voice.speed), "-p", str(voice.pitch)]
    cmd += ["-g", str(word_gap), "--stdout", *(["-m"] if ssml else [])]
    try:
        # Text goes on stdin so a word starting with '-' is never read as an option.
        out = subprocess.run(
            cmd, input=text.encode(), capture_output=True, check=True, timeout=ESPEAK_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise SynthError(
            f"{binary} did not finish {text[:60]!r} within {exc.timeout:g} s; it was stopped"
        ) from None
    except FileNotFoundError as exc:
        raise SynthError(f"{binary} is not installed (apt-get install espeak-ng)") from exc
    except subprocess.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace").strip()
        raise SynthError(f"{binary} failed on {text!r}: {err}") from exc
    rate, samples = _parse_wav(out.stdout)
    return resample_poly(samples, SAMPLE_RATE, rate)


def _parse_wav(data: bytes) -> tuple[int, FloatArray]:
    # espeak-ng streams its WAV to stdout with placeholder sizes, so read the chunks by hand
    # and take everything after the data header.
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthError("espeak-ng did not write a WAV file")
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[pos + 8 : pos + 16])
            bits = struct.unpack("<H", data[pos + 22 : pos + 24])[0]
            if (fmt, channels, bits) != (1, 1, 16):
                raise SynthError(f"unexpected espeak-ng format {fmt}/{channels}ch/{bits}bit")
        elif tag == b"data":
            body = data[pos + 8 :]
            pcm = np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2")
            if not rate:
                raise SynthError("espeak-ng WAV has no fmt chunk")
            return rate, pcm.astype(np.float64) / 32768.0
        pos += 8 + size + (size & 1)
    raise SynthError("espeak-ng WAV has no data chunk")


# -- signal processing -----------------------------------------------------------------------


def resample_poly(x: FloatArray, to_rate: int, from_rate: int) -> FloatArray:
    """Resample ``x`` from ``from_rate`` to ``to_rate`` with a polyphase Kaiser-sinc filter.

    Flat within 0.2 dB to 85% of the lower Nyquist frequency (3.4 kHz at 8 kHz), -6 dB at
    91%, and more than 80 dB down from the Nyquist frequency on, so nothing above 4 kHz
    folds into the band. The output is not delayed.

    >>> y = resample_poly(np.ones(22050), 8000, 22050)
    >>> len(y), round(float(y[4000]), 3)
    (8000, 1.0)
    """
    g = gcd(to_rate, from_rate)
    up, down = to_rate // g, from_rate // g
    x = np.asarray(x, dtype=np.float64)
    if up == down:
        return x.copy()
    nyquist = min(to_rate, from_rate) / 2
    transition = 0.175 * nyquist  # Hz, centred on the cut-off
    taps = 2 * ceil(72 * from_rate / (2.285 * 2 * np.pi * transition) / 2)  # Kaiser's formula
    n_taps = taps * up
    cutoff = (nyquist - transition / 2) / (from_rate * up)  # cycles per up-sampled sample
    centre = n_taps // 2
    t = np.arange(n_taps) - centre
    window = np.kaiser(n_taps + 1, 7.86)[:n_taps]  # symmetric about the integer centre
    h = 2 * cutoff * np.sinc(2 * cutoff * t) * window * up
    bank = h.reshape(taps, up).T  # bank[phase, j] = h[phase + j * up]
    padded = np.concatenate([np.zeros(taps), x, np.zeros(taps)])
    n_out = -(-len(x) * up // down)
    out = np.empty(n_out)
    for lo in range(0, n_out, 4096):  # blocks keep the gathered matrix small
        pos = np.arange(lo, min(lo + 4096, n_out), dtype=np.int64) * down + centre
        base, phase = pos // up, pos % up
        idx = np.clip(base[:, None] - np.arange(taps)[None, :] + taps, 0, len(padded) - 1)
        out[lo : lo + len(pos)] = np.einsum("ij,ij->i", padded[idx], bank[phase])
    return out


def _frame_db(x: FloatArray) -> FloatArray:
    n = len(x) // _FRAME
    frames = x[: n * _FRAME].reshape(n, _FRAME)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    out: FloatArray = 20 * np.log10(np.maximum(rms, 1e-12))
    return out


def _active_runs(x: FloatArray) -> list[tuple[int, int]]:
    """Frame runs above the trim level, merging runs split by short quiet stretches."""
    db = _frame_db(x)
    if not len(db):
        return []
    active = db > _TRIM_DBFS
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    runs: list[tuple[int, int]] = []
    for s, e in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if runs and (s - runs[-1][1]) * 5 < _SPLIT_GAP_MS:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    return runs


def _word_runs(x: FloatArray) -> list[tuple[int, int]]:
    """Sample ranges of the words of an utterance spoken with gaps between words."""
    return [(s * _FRAME, e * _FRAME) for s, e in _active_runs(x)]


def _group_runs(run_lengths: list[int], word_lengths: list[int]) -> list[int] | None:
    """How many words each run holds, when some runs hold several words.

    Aligns the runs to the words (their lengths from a one-word-per-run rendering) so that
    each run's length best matches the words it takes; None when that is impossible.

    >>> _group_runs([100, 300, 100], [100, 150, 140, 100])
    [1, 2, 1]
    """
    n_runs, n_words = len(run_lengths), len(word_lengths)
    if not 0 < n_runs <= n_words:
        return None
    inf = float("inf")
    # best[j][i]: cost of putting the first i words into the first j runs.
    best = [[inf] * (n_words + 1) for _ in range(n_runs + 1)]
    take = [[0] * (n_words + 1) for _ in range(n_runs + 1)]
    best[0][0] = 0.0
    for j in range(1, n_runs + 1):
        for i in range(j, n_words - (n_runs - j) + 1):
            for size in range(1, min(4, i - j + 2)):
                prev = best[j - 1][i - size]
                if prev == inf:
                    continue
                words = sum(word_lengths[i - size : i])
                cost = prev + abs(np.log(max(run_lengths[j - 1], 1) / max(words, 1)))
                if cost < best[j][i]:
                    best[j][i], take[j][i] = cost, size
    if best[n_runs][n_words] == inf:
        return None
    sizes, i = [], n_words
    for j in range(n_runs, 0, -1):
        sizes.append(take[j][i])
        i -= take[j][i]
    return sizes[::-1]


def _normalised(pieces: list[FloatArray]) -> list[FloatArray]:
    """Scale the pieces of one turn together so the loudest sample is at the speech peak."""
    peak = max((float(np.max(np.abs(p))) for p in pieces if len(p)), default=0.0)
    if peak <= 0.0:
        raise SynthError("espeak-ng produced silence")
    return [p * (_SPEECH_PEAK / peak) for p in pieces]


def _fade(x: FloatArray) -> FloatArray:
    n = min(_FADE_MS * _MS, len(x) // 2)
    if n:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _tone(freqs: list[float], n: int, amp: float) -> FloatArray:
    t = np.arange(n) / SAMPLE_RATE
    out: FloatArray = sum((np.sin(2 * np.pi * f * t) for f in freqs), np.zeros(n)) * amp
    return out


def _envelope(n: int, attack: int, release: int, decay_to: float = 1.0) -> FloatArray:
    env = np.ones(n)
    attack, release = min(attack, n // 2), min(release, n // 2)
    if decay_to != 1.0:
        env = decay_to + (1 - decay_to) * np.exp(-np.arange(n) / (0.35 * SAMPLE_RATE))
    if attack:
        env[:attack] *= np.linspace(0.0, 1.0, attack)
    if release:
        env[-release:] *= np.linspace(1.0, 0.0, release)
    return env


_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (0, 5, 1, 4), (0, 4, 5, 3))


def _hold_music(n: int, rng: np.random.Generator) -> FloatArray:
    """Seeded chord progression with a plucked melody: recognisably 'hold music'."""
    root = float(rng.choice([196.0, 220.0, 246.94, 261.63]))
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chord_len = int(rng.integers(14, 19)) * SAMPLE_RATE // 10
    note_len = chord_len // 4
    out = np.zeros(n)
    for k, start in enumerate(range(0, n, chord_len)):
        degree = progression[k % len(progression)]
        semis = [_MAJOR[(degree + s) % 7] + 12 * ((degree + s) // 7) for s in (0, 2, 4)]
        freqs = [root * 2 ** (s / 12) for s in semis]
        length = min(chord_len, n - start)
        pad = _tone([*freqs, freqs[0] / 2], length, 0.08)
        pad += _tone([2 * f for f in freqs], length, 0.015)
        out[start : start + length] += pad * _envelope(length, 240, 400, decay_to=0.5)
        for j in range(4):
            s = start + j * note_len
            if s >= n:
                break
            m = min(note_len, n - s)
            f = 2 * freqs[int(rng.integers(3))]
            pluck = _tone([f], m, 0.12) * np.exp(-np.arange(m) / (0.12 * SAMPLE_RATE))
            out[s : s + m] += pluck * _envelope(m, 40, 120)
    peak = float(np.max(np.abs(out))) or 1.0
    return out * (0.25 / peak) * _envelope(n, 400, 400)


def _hold_beeps(n: int) -> FloatArray:
    """A short 440 Hz beep every two seconds."""
    return _cadence(n, [440.0], on_ms=250, period_ms=2000, amp=0.15)


def _ringback(n: int) -> FloatArray:
    """North American ringback: 440 + 480 Hz, two seconds on, four off."""
    return _cadence(n, [440.0, 480.0], on_ms=2000, period_ms=6000, amp=0.08)


def _cadence(n: int, freqs: list[float], *, on_ms: int, period_ms: int, amp: float) -> FloatArray:
    out = np.zeros(n)
    for start in range(0, n, period_ms * _MS):
        m = min(on_ms * _MS, n - start)
        out[start : start + m] = _tone(freqs, m, amp) * _envelope(m, 80, 80)
    return out
